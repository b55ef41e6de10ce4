"""Where the LLM would go: a deterministic processor that answers the last user message with
canned text, streamed downstream as an LLM's response is (start, text, end), so the TTS service
and the assistant aggregator see what they would see from an LLM.

The replies are the words the sample bank domain's prompts say for the benchmark's script (the
same text to synthesise on both stacks), kept here as plain strings: this package does not read
voicebot's domain.  A tiny state (the open question, the account and card given) picks the answer
to a number, an amount or a yes/no.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from loguru import logger

from pipecat.frames.frames import (Frame, LLMContextFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame,
                                   LLMTextFrame)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

GREETING = "Thank you for calling Example Bank. How can I help you today?"
ANYTHING_ELSE = ("Is there anything else I can help you with? You can also press star for the menu, "
                 "or pound to end the call.")
ASK_ACCOUNT = "Please say or key in the last four digits of your account number."
ASK_CARD = "I can block your card right away. What are the last four digits of the card?"
NOT_UNDERSTOOD = "Sorry, I didn't catch that."
OPENING_HOURS = ("Our branches are open Monday to Friday from 9 a.m. to 5 p.m., and Saturday from 9 a.m. to 1 p.m. "
                 "Our phone line is open 24 hours a day, 7 days a week.")
ASK_AMOUNT = "How much would you like to pay towards your credit card?"
ASK_FROM = "Which account should I pay from, checking or savings? Press 1 for checking, 2 for savings."
DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "for": "4", "five": "5",
               "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
        "ten": 10, "hundred": 100}
NO = re.compile(r"\b(no|nope|not|don't|dont|cancel)\b")
YES = re.compile(r"\b(yes|yeah|yep|right|correct|go ahead)\b")


def _transactions() -> str:
    today = date.today()
    items = [(today - timedelta(days=1), "Corner Grocery", "a debit of $54.20"),
             (today - timedelta(days=2), "City Electric", "a debit of $120.00"),
             (today - timedelta(days=4), "Payroll deposit", "a credit of $2,100.00")]
    return "; ".join(f"{amount} for {what} on {when:%B} {when.day}" for when, what, amount in items)


def digits_in(text: str) -> str:
    words = re.findall(r"[a-z]+|\d", text.lower())
    return "".join(DIGIT_WORDS.get(w, w if w.isdigit() else "") for w in words)


def amount_in(text: str) -> float | None:
    """ "$50.", "50 dollars", "fifty dollars" → 50.0; None when there is no amount."""
    figures = re.search(r"(\d[\d,]*(?:\.\d{1,2})?)", text)
    if figures:
        return float(figures.group(1).replace(",", ""))
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in TENS or w in DIGIT_WORDS]
    if not words:
        return None
    return float(sum(TENS.get(w, 0) or int(DIGIT_WORDS.get(w, "0")) for w in words))


def spoken_digits(last4: str) -> str:
    return " ".join(last4)


class Responder:
    """Transcript in, reply text out, with the little state a number or a yes/no needs: which
    question is open, and the account and card given earlier (the bank domain keeps those)."""

    def __init__(self) -> None:
        self.pending: str | None = None
        self.account: str | None = None
        self.card: str | None = None
        self.amount: float | None = None

    def reply(self, heard: str) -> str:
        text = heard.lower().replace("’", "'")
        digits = digits_in(text)
        if self.pending == "confirm_card" and (NO.search(text) or YES.search(text)):
            self.pending = None
            if NO.search(text):
                return f"OK, I have not blocked the card. {ANYTHING_ELSE}"
            return (f"Done. Your debit card ending in {spoken_digits(self.card or '')} is now blocked, and a "
                    f"replacement will arrive within five working days. {ANYTHING_ELSE}")
        if self.pending == "confirm_payment" and (NO.search(text) or YES.search(text)):
            self.pending = None
            if NO.search(text):
                return f"OK, I have cancelled that payment. {ANYTHING_ELSE}"
            return f"Done. Your payment of ${self.amount:,.2f} is on its way. {ANYTHING_ELSE}"
        if self.pending == "amount" and amount_in(text) is not None:
            self.amount, self.pending = amount_in(text), "from_account"
            return ASK_FROM
        if self.pending == "from_account" and re.search(r"checking|savings", text):
            self.pending = "confirm_payment"
            source = "checking" if "checking" in text else "savings"
            return (f"So that's ${self.amount:,.2f} from your {source} account to your credit card. "
                    "Shall I go ahead?")
        if len(digits) >= 4 and self.pending in ("balance", "transactions"):
            self.account = digits[-4:]
            return self._account_answer()
        if len(digits) >= 4 and self.pending == "card":
            self.card = digits[-4:]
            return self._confirm_card()
        if "transaction" in text:
            self.pending = "transactions"
            return self._account_answer() if self.account else ASK_ACCOUNT
        if "balance" in text:
            self.pending = "balance"
            return self._account_answer() if self.account else ASK_ACCOUNT
        if "card" in text and re.search(r"lost|stolen|block", text):
            self.pending = "card"
            return self._confirm_card() if self.card else ASK_CARD
        if "pay" in text and "card" in text:
            self.pending = "amount"
            return ASK_AMOUNT
        if re.search(r"\bopen|hours\b", text):
            return f"{OPENING_HOURS} {ANYTHING_ELSE}"
        return NOT_UNDERSTOOD

    def _account_answer(self) -> str:
        asked, self.pending = self.pending, None
        last4 = spoken_digits(self.account or "")
        if asked == "balance":
            return f"Your balance is $2,450.75, in your checking account ending in {last4}. {ANYTHING_ELSE}"
        return f"On your checking account, your last 3 transactions were: {_transactions()}. {ANYTHING_ELSE}"

    def _confirm_card(self) -> str:
        self.pending = "confirm_card"
        return f"To confirm, you want me to block the card ending in {spoken_digits(self.card or '')}. Is that right?"


class CannedResponder(FrameProcessor):
    """Answers each ``LLMContextFrame`` from the user aggregator with ``Responder``'s text.

    ``turns`` keeps (heard, replied) for the benchmark to check what was understood."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.responder = Responder()
        self.turns: list[dict[str, str]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        if frame.speculation:  # only eager turn strategies speculate; an LLM would hold it back
            return
        heard = _last_user_text(frame.context.get_messages())
        reply = self.responder.reply(heard)
        self.turns.append({"heard": heard, "replied": reply})
        logger.info(f"responder: heard {heard!r} -> {reply[:60]!r}")
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(reply))
        await self.push_frame(LLMFullResponseEndFrame())


def _last_user_text(messages: list) -> str:  # type: ignore[type-arg]
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content or "")
    return ""
