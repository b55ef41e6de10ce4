"""The short dialog that sets up a callback: which number to call, and when.

A caller waiting in a queue presses the callback key or says "call me back" (or a closed
queue offers it), and ``calls.Call`` hands the caller's line here.  The bot offers the caller
ID read back digit by digit; the caller confirms (1 or "yes"), keys another number ending with
#, or says one; a new number is read back and confirmed in turn.  Given opening hours, the
caller may then pick a time ("tomorrow morning") instead of "as soon as possible".

It hears and speaks through a ``CallerLine`` (``caller_line.py``: keys and a ``LegTranscriber``
on the shared ASR, the shared TTS), as the post-call survey does, and like it never raises into
the call: the caller hanging up before a number is agreed, two failed answers or an error give
None.  A caller who hangs up once the number is agreed (often right after pressing 1) keeps the
callback, at the default time.

A phone number is personal data, so the record never holds one in full: keyed digits are
``[DTMF •]`` turns, said numbers and the bot's read-backs show ``••••`` and the last four
digits.  When no callback is set up, an event ``callback_not_arranged`` {"reason", "asked"}
says why; the callback itself is the caller's (``calls.py``) to record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from voicebot.caller_line import POLL_S, WORDS_GRACE_S, CallerLine, Gone, Key, Words, open_line
from voicebot.media import EdgeStream
from voicebot.nlu.dialog import MASK, MASK_KEY, mask_numbers
from voicebot.nlu.domain import Slot
from voicebot.nlu.entities import extract_digits, extract_yes_no
from voicebot.pipeline.call import Engines
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

TIMEOUT_S = 6.0  # after a question has been heard in full, silence this long is no answer
KEY_GAP_S = 4.0  # between the keys of a number: a longer pause ends the number, # or not
LONE_KEY_S = 1.2  # after a lone 1 or 2 at a confirmation: more keys make it a number, none a yes or no
MIN_DIGITS, MAX_DIGITS = 6, 15  # a number we can dial: shorter is an extension, longer is no E.164 number
ATTEMPTS = 2  # failed answers before giving up
MAX_QUESTIONS = 6  # a caller who keeps changing the number is not asked for ever

FAILED = "Sorry, I couldn't set up the callback."
DECLINED = "All right, no callback then."
CONFIRM = "Press 1 or say yes to confirm, or key in another number followed by the hash key."
ASK_NUMBER = "Please key in the number we should call, followed by the hash key, or say it."
NOT_A_NUMBER = "Sorry, that isn't a phone number I can call."
NOT_HEARD = "Sorry, I didn't get that."
KEEP_PLACE = ", and you keep your place in the queue"
ASAP_KEY = "1"

_PHONE = re.compile(r"\+?\d{%d,%d}" % (MIN_DIGITS, MAX_DIGITS))
_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s\-.()/]")
_PLUS = re.compile(r"\bplus\b|\+\s*\d", re.IGNORECASE)
_ASAP = re.compile(r"\b(as soon as|asap|a\.s\.a\.p|soon|right now|right away|straight away|any ?time|whenever|"
                   r"first available|earliest)\b", re.IGNORECASE)
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# mask_numbers' view of a phone number: every run of numbers masked, the last four digits shown
_PHONE_SLOT = Slot(type="digits", prompt="your phone number", sensitive=True, mask="last4")


@dataclass(frozen=True)
class CallbackChoice:
    """What the caller agreed to: the number to call and when."""

    number: str  # digits only (a leading + kept), validated by ``phone_number``
    due_at: float | None  # epoch of the chosen slot; None: as soon as an agent is free (keeps the queue place)
    by: str  # how the caller confirmed the number: "dtmf" | "speech"


class OpeningHours(Protocol):
    """What this dialog needs of a queue's opening hours (``voicebot.handoff.hours.Schedule``),
    so that it depends on no particular implementation."""

    def slot(self, words: str, t: float) -> float | None:
        """The epoch a caller's words ("tomorrow morning") name, as seen at ``t``; None if none."""
        ...

    def say_next_opening(self, t: float) -> str:
        """A sentence that says when the queue opens next after ``t``."""
        ...


@runtime_checkable
class _KnowsNextOpening(Protocol):
    """Hours that can also give the next opening as an epoch: a closed queue's default due time."""

    def next_opening(self, t: float) -> float | None: ...


@runtime_checkable
class _SaysTimes(Protocol):
    """Hours that can say a time in their own time zone: the read-back of a chosen slot."""

    def say_time(self, t: float, now: float) -> str: ...


# --------------------------------------------------------------------------- numbers (pure)

def phone_number(text: str | None) -> str | None:
    """A number we can call, from a caller ID (``+15551230000``, ``sip:+1555...@host``,
    ``"Ann" <tel:+1-555-123-0000>``) or from digits keyed or said: its digits, a leading +
    kept; None for ``anonymous``, ``unknown``, a SIP name, an extension or a number too short
    or too long to dial (6-15 digits)."""
    if not text:
        return None
    value = text.strip()
    if "<" in value and ">" in value:
        value = value[value.index("<") + 1:value.rindex(">")]
    value = _SCHEME.sub("", value.strip()).split("@")[0].split(";")[0]
    value = _SEPARATORS.sub("", value)
    return value if _PHONE.fullmatch(value) else None


def spoken_number(number: str) -> str:
    """A number as the bot reads it back: digit by digit, in groups as people say them.  A
    national number is grouped from the left, threes then fours ("zero two zero, seven nine
    four six, zero zero zero zero"); after a + the country code's length is unknown, so from
    the right ("plus one, five five five, one two three, zero zero zero zero")."""
    plus, digits = ("plus ", number[1:]) if number.startswith("+") else ("", number)
    n = len(digits)
    if n <= 4:
        cuts = [0, n]
    elif plus:
        cuts = [0, *range((n - 4) % 3, n - 4, 3), n - 4, n]
    else:
        fours = n % 3 if 4 * (n % 3) <= n else 0  # 11 digits: 3 + 4 + 4; 10: 3 + 3 + 4; 5: 3 + 2
        cuts = [*range(0, n - 4 * fours, 3), *range(n - 4 * fours, n, 4), n]
    groups = [digits[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    return plus + ", ".join(" ".join(_DIGIT_WORDS[int(d)] for d in group) for group in groups)


def masked_number(number: str) -> str:
    """A number as the record may show it: ``••••`` and its last four digits."""
    return MASK + number[-4:]


def say_time(t: float, now: float) -> str:
    """A slot in the server's local time ("tomorrow at 9 a.m.", "on Friday at 2:30 p.m."): the
    read-back when the opening hours cannot say it in their own zone."""
    when, today = datetime.fromtimestamp(t), datetime.fromtimestamp(now).date()
    days = (when.date() - today).days
    day = ("today" if days <= 0 else "tomorrow" if days == 1 else f"on {when:%A}" if days < 7
           else f"on {when:%A, %B} {when.day}")
    hour = when.hour % 12 or 12
    clock = f"{hour}" if when.minute == 0 else f"{hour}:{when.minute:02d}"
    return f"{day} at {clock} {'a.m.' if when.hour < 12 else 'p.m.'}"


# --------------------------------------------------------------------------- the dialog

async def arrange_callback(stream: EdgeStream, engines: Engines, caller_id: str, *,
                           schedule: OpeningHours | None = None, keep_place: bool = True,
                           store: RecordStore | None = None, call_id: str | None = None,
                           now: Callable[[], float] = time.time) -> CallbackChoice | None:
    """Agree a number (and, given ``schedule``, a time) with the caller on ``stream``; None when
    the caller left before agreeing a number, declined, or two answers failed.  ``keep_place`` False (a closed queue):
    the callback is at the next opening unless the caller picks a time."""
    offer: _Offer | None = None
    try:
        offer = _Offer(_Line(stream, engines, store, call_id), caller_id, schedule, keep_place, now)
        return await offer.run()
    except Exception:  # a failed offer must not fail the call: the caller goes on waiting
        log.exception("call %s: callback offer failed", call_id)
        if offer is not None:
            offer.not_arranged("error")
        return None


class _Line(CallerLine):
    """A ``CallerLine`` that keeps phone numbers out of the record and does not take words
    said over a question as answers (they may be the line's echo of "say yes")."""

    def __init__(self, stream: EdgeStream, engines: Engines, store: RecordStore | None, call_id: str | None) -> None:
        super().__init__(stream, engines, store, call_id or "callback", name="callback")
        self.shown: dict[str, str] = {}  # a number as the bot says it → as the record shows it
        self.deaf_until = 0.0  # wall clock: words that ended before this were said over a question
        self.private = True  # the caller may be saying a phone number: the record masks numbers

    async def ask(self, text: str, private: bool) -> None:
        """Say a question; the caller's words count once it has been heard.  ``private``: the
        answer may be a phone number."""
        self.deaf_until, self.private = math.inf, private
        await self.say(text)
        self.deaf_until = time.time() + self.stream.playout().pending_ms / 1000

    def interrupt(self) -> None:
        """The caller answered over the question: stop it, and listen from now."""
        self.stream.clear()
        self.deaf_until = time.time()

    def said(self, speaker: str, text: str, started: float, ended: float) -> None:
        kept = mask_numbers(text, _PHONE_SLOT) if self.private else text  # "tomorrow at nine" is no secret
        self.record(speaker, kept, started, ended)
        if ended >= self.deaf_until:
            self.heard.put_nowait(Words(text))

    def turn(self, text: str, speaker: str = "caller") -> None:
        for said, shown in self.shown.items():
            text = text.replace(said, shown)
        super().turn(text, speaker)


_Expect = Literal["confirm", "number", "when"]  # a number read back; a number asked for; a time


@dataclass(frozen=True)
class _Reply:
    """One answer, whatever way the caller gave it."""

    kind: Literal["yes", "no", "number", "asap", "slot", "unclear", "silent", "gone"]
    by: str = ""  # dtmf | speech
    digits: str = ""  # number: as keyed or said, not yet validated
    at: float | None = None  # slot: the epoch the schedule gave


class _Offer:
    """The dialog's steps on a ``_Line``: the number, then (given hours) the time."""

    def __init__(self, line: _Line, caller_id: str, schedule: OpeningHours | None, keep_place: bool,
                 now: Callable[[], float]) -> None:
        self.line = line
        self.caller_id = caller_id
        self.schedule = schedule
        self.keep_place = keep_place
        self.now = now
        self.asked = 0
        self.recorded = False

    async def run(self) -> CallbackChoice | None:
        if not open_line(self.line.stream):
            self.not_arranged("hung_up")
            return None
        line = self.line
        async with line.listening():
            agreed = await self._number()
            if agreed is None:
                return None
            number, by = agreed
            due, when = self._default_due()
            if self.schedule is not None and not line.stream.closed:
                picked = await self._when()
                if picked.kind == "slot" and picked.at is not None:
                    due, when = picked.at, self._say_slot(picked.at)
            await self._last_word(f"Thank you. We'll call you back {when.rstrip('.')}.")
            return CallbackChoice(number, due, by)

    def not_arranged(self, reason: str) -> None:
        """The record says why no callback was set up (once)."""
        if self.recorded:
            return
        self.recorded = True
        self.line.event("callback_not_arranged", {"reason": reason, "asked": self.asked})

    # ------------------------------------------------------------------ the steps

    async def _number(self) -> tuple[str, str] | None:
        """The number the caller confirmed, and how; None when there is none (said why)."""
        candidate = phone_number(self.caller_id)
        question = self._opening() + (self._read_back(candidate, first=True) if candidate else self._ask_number())
        failures = 0
        for _ in range(MAX_QUESTIONS):
            reply = await self._ask(question, "confirm" if candidate else "number")
            if reply.kind == "gone":
                self.not_arranged("hung_up")
                return None
            if reply.kind == "yes" and candidate:
                return candidate, reply.by
            if reply.kind == "no":
                if candidate is None:  # asked for a number, the caller said no: no callback wanted
                    return await self._give_up("declined", DECLINED)
                candidate, question = None, ASK_NUMBER
                continue
            if reply.kind == "number" and (new := phone_number(reply.digits)):
                candidate, question = new, self._read_back(new, first=False)
                continue
            failures += 1
            if failures >= ATTEMPTS:
                return await self._give_up("invalid" if reply.kind == "number" else "no_answer", FAILED)
            if reply.kind == "number":
                candidate, question = None, f"{NOT_A_NUMBER} {ASK_NUMBER}"
            else:
                question = f"{NOT_HEARD} {question.removeprefix(NOT_HEARD + ' ')}"
        return await self._give_up("no_answer", FAILED)

    async def _when(self) -> _Reply:
        """As soon as possible, or a slot the schedule understood.  Not understood twice, or the
        caller hung up (the number is agreed: the callback stands): as soon as possible."""
        soon = "as soon as possible" if self.keep_place else "as soon as we open"
        question = (f"Would you like us to call {soon}, or at another time, for example tomorrow morning?"
                    f" For {soon}, press {ASAP_KEY}.")
        for attempt in range(ATTEMPTS):
            reply = await self._ask(question if attempt == 0 else f"{NOT_HEARD} {question}", "when")
            if reply.kind in ("asap", "slot"):
                return reply
            if reply.kind == "gone":
                break
        return _Reply("asap")

    # ------------------------------------------------------------------ one question, one answer

    async def _ask(self, question: str, expect: _Expect) -> _Reply:
        """Ask and wait for the answer: keys (a number ends with # or a pause), or words.  Keys
        count while the question is still being synthesised: a long question on a busy CPU must
        not hold back a caller who already knows the answer."""
        self.asked += 1
        speaking = asyncio.create_task(self.line.ask(question, private=expect != "when"))
        try:
            return await self._answer(expect, speaking)
        finally:
            speaking.cancel()
            await asyncio.gather(speaking, return_exceptions=True)

    async def _answer(self, expect: _Expect, speaking: asyncio.Task[None]) -> _Reply:
        line = self.line
        wait_until: float | None = None  # monotonic, once the question is out: silence until then is no answer
        key_until = 0.0  # monotonic: the next key of a number, or the number is complete
        keys: list[tuple[str, float]] = []
        unclear = False
        while True:
            if wait_until is None and speaking.done():
                if not speaking.cancelled():
                    speaking.result()  # a voice that failed fails the offer (arrange_callback logs it)
                wait_until = time.monotonic() + line.stream.playout().pending_ms / 1000 + TIMEOUT_S
            until = key_until if keys else wait_until
            heard = await line.next(until if until is not None else time.monotonic() + POLL_S)
            if heard is None:
                if until is None:  # still asking
                    continue
                return self._keyed(keys, expect) if keys else _Reply("unclear" if unclear else "silent")
            if isinstance(heard, Gone):  # a lone 1 pressed just before hanging up still confirms
                lone_yes = expect == "confirm" and "".join(d for d, _ in keys) == "1"
                return self._keyed(keys, expect) if lone_yes else _Reply("gone")
            if isinstance(heard, Key):
                if heard.digit == "#" and keys:
                    return self._keyed(keys, expect)
                if heard.digit == "*":  # start the number again
                    keys.clear()
                if not heard.digit.isdigit():
                    continue
                if not keys:
                    self._interrupt(speaking)  # a key answers at once, over the question
                keys.append((heard.digit, time.time()))
                if expect == "when" and heard.digit == ASAP_KEY and len(keys) == 1:
                    return self._keyed(keys, expect)
                lone = expect == "confirm" and len(keys) == 1 and heard.digit in "12"
                key_until = time.monotonic() + (LONE_KEY_S if lone else KEY_GAP_S)
                continue
            if keys:  # words while keying: the keys are the answer
                continue
            if not isinstance(heard, Words):  # audio: only a line without ears queues it
                continue
            reply = _understood(heard.text, expect, self._slot)
            if reply is not None:
                self._interrupt(speaking)
                return reply
            unclear = True  # "hang on": a little longer for the answer before asking again
            if wait_until is not None:
                wait_until = max(wait_until, time.monotonic() + WORDS_GRACE_S)

    def _interrupt(self, speaking: asyncio.Task[None]) -> None:
        """The caller answered over the question: the rest of it is neither synthesised nor played."""
        speaking.cancel()
        self.line.interrupt()

    def _keyed(self, keys: list[tuple[str, float]], expect: _Expect) -> _Reply:
        """Keys as an answer, written down: a yes or no key as pressed, a number's digits masked."""
        digits = "".join(d for d, _ in keys)
        if expect == "when" or (expect == "confirm" and digits in ("1", "2")):
            self._key_turns(keys, masked=False)
            if expect == "when":
                return _Reply("asap", "dtmf") if digits == ASAP_KEY else _Reply("unclear")
            return _Reply("yes" if digits == "1" else "no", "dtmf")
        self._key_turns(keys, masked=True)
        return _Reply("number", "dtmf", digits)

    def _key_turns(self, keys: list[tuple[str, float]], masked: bool) -> None:
        for digit, at in keys:
            self.line.record("caller", f"[DTMF {MASK_KEY if masked else digit}]", at, at)

    # ------------------------------------------------------------------ words and endings

    def _read_back(self, number: str, first: bool) -> str:
        """The number to confirm, read digit by digit (and shown masked in the record)."""
        said = spoken_number(number)
        self.line.shown[said] = masked_number(number)
        if not first:
            return f"That's {said}. {CONFIRM}"
        if self.keep_place:
            return f"We can call you back at {said}{KEEP_PLACE}. {CONFIRM}"
        return f"We can call you back when we open, at {said}. {CONFIRM}"

    def _ask_number(self) -> str:
        return f"We can call you back{KEEP_PLACE if self.keep_place else ' when we open'}. {ASK_NUMBER}"

    def _opening(self) -> str:
        """A closed queue says when it opens before offering the callback."""
        if self.keep_place or self.schedule is None:
            return ""
        return self.schedule.say_next_opening(self.now()).strip() + " "

    def _default_due(self) -> tuple[float | None, str]:
        """When to call unless the caller picks a time, and how to say it."""
        if self.keep_place:
            return None, "as soon as an agent is free"
        if isinstance(self.schedule, _KnowsNextOpening):
            return self.schedule.next_opening(self.now()), "when we open"
        return None, "when we open"

    def _slot(self, words: str) -> float | None:
        return self.schedule.slot(words, self.now()) if self.schedule is not None else None

    def _say_slot(self, at: float) -> str:
        if isinstance(self.schedule, _SaysTimes):
            return self.schedule.say_time(at, self.now())
        return say_time(at, self.now())

    async def _give_up(self, reason: str, text: str) -> None:
        self.not_arranged(reason)
        await self._last_word(text)
        return None

    async def _last_word(self, text: str) -> None:
        """Say the outcome and wait until it has been heard: the caller may be hung up right after."""
        if self.line.stream.closed:
            return
        await self.line.say(text)
        await self.line.played()


def _understood(text: str, expect: _Expect, slot: Callable[[str], float | None]) -> _Reply | None:
    """Words as an answer, or None: a number said ("oh two oh seven..."), a yes or a no, or
    for the time question a slot the schedule knows (``slot``) or "as soon as possible"."""
    if expect == "when":  # a time first: "not now, tomorrow morning"
        at = slot(text)
        if at is not None:
            return _Reply("slot", "speech", at=at)
        return _Reply("asap", "speech") if _ASAP.search(text) else None
    digits = extract_digits(text) or ""
    if len(digits) >= 3:  # more than "one" or "no, two": a number
        return _Reply("number", "speech", ("+" if _PLUS.search(text) else "") + digits)
    answer = extract_yes_no(text)
    if expect == "confirm" and (answer is True or digits == "1"):
        return _Reply("yes", "speech")
    if answer is False or (expect == "confirm" and digits == "2"):
        return _Reply("no", "speech")
    return None
