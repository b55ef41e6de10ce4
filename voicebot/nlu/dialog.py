"""The dialog: a pure, synchronous state machine from caller events to bot actions.

``Dialog(domain, context).handle(event) -> list[Action]``.  No I/O: lookups are actions whose
answers come back as ``LookupResult`` events, time comes from the context.  Every call to
``handle`` appends a ``TurnTrace`` saying which rule fired and why, so an agent or a designer
can see what the bot understood.

What may be kept of a call is the dialog's to say, because only it knows what it is asking
for: ``Dialog.privacy`` is a live view that the record writer and the recorder ask at the
moment they write.  While a ``sensitive`` slot is being asked for, the recording is paused and
the caller's words and keys are kept masked (``••••``, or ``••••1234`` for a ``mask: last4``
slot); a sensitive value shows masked in every trace, and is never spoken except as the last
four digits of a ``last4`` slot (the domain's validation sees to that).  A recorded domain says
its consent prompt after the greeting on voice channels, and the caller can opt out by key or
words at any point while the bot has the call.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Union

from voicebot.nlu import entities
from voicebot.nlu.domain import DTMF_KEYS, OUT_OF_SCOPE, Slot, Step, TransferSpec
from voicebot.nlu.intents import IntentPrediction
from voicebot.nlu.nlu import Domain
from voicebot.nlu.turn_end import sounds_finished

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class CallStarted:
    pass


@dataclass(frozen=True)
class UserSaid:
    text: str
    confidence: float = 1.0
    language: str = "en"


@dataclass(frozen=True)
class DtmfPressed:
    digit: str


@dataclass(frozen=True)
class NoInput:
    pass


@dataclass(frozen=True)
class CallerHungUp:
    pass


@dataclass(frozen=True)
class LookupResult:
    name: str
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class TransferFailed:
    """The edge kept the caller when the transfer target did not answer (busy, no answer,
    refused): the call comes back to the bot instead of being dropped."""

    queue: str
    status: int | None = None  # the target's SIP status, when there was one


Event = Union[CallStarted, UserSaid, DtmfPressed, NoInput, CallerHungUp, LookupResult, TransferFailed]

# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Say:
    text: str
    interruptible: bool = True
    prompt: str | None = None  # the prompt id, so TTS can use its cache


@dataclass(frozen=True)
class Ask:
    """A question that waits for speech or DTMF of kind ``expect``."""

    text: str
    slot: str | None
    expect: str  # intent | digits | amount | date | yes_no | choice
    max_digits: int | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Transfer:
    queue: str
    priority: int
    skills: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class Lookup:
    name: str
    args: dict[str, str]


Action = Union[Say, Ask, Transfer, Hangup, Lookup]


@dataclass
class DialogContext:
    caller_number: str = ""
    caller_name: str = ""
    channel: str = "text"
    language: str = "en"
    today: date = field(default_factory=date.today)


@dataclass
class TurnTrace:
    """Why the bot did what it did on one event.  ``text`` and ``slots`` are as they may be
    kept (sensitive values masked); ``privacy`` is the dialog's live view, for the record
    writer that sees only traces."""

    event: str
    text: str | None
    intent: str | None
    confidence: float | None
    slots: dict[str, str]
    rule: str
    actions: list[Action]
    privacy: Privacy | None = field(default=None, repr=False, compare=False)


DEFAULT_TRANSFER_FAILED = "Sorry, nobody could take your call just now."
DEFAULT_OPTED_OUT = "All right, this call will not be recorded."
MASK = "••••"
MASK_KEY = "•"
_FIELD = re.compile(r"\{([^{}]*)\}")
_MAX_STEPS_PER_EVENT = 200
_NUMBER_WORDS = (set(entities.UNITS) | set(entities.TEENS) | set(entities.TENS) | set(entities.SCALES)
                 | {"double", "triple"} | {w for w, d in entities.HOMOPHONES.items() if d is not None})
_WORD = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)?")
_NUMBER_GAP = re.compile(r"[\s,.\-/]*")
_SPACES = re.compile(r"[^a-z0-9]+")


def mask_value(slot: Slot, value: Any) -> str:
    """A sensitive slot's value as it may be shown: ``••••``, or ``••••1234`` with ``mask: last4``."""
    if slot.mask == "last4":
        return MASK + re.sub(r"\D", "", str(value))[-4:]
    return MASK


def mask_numbers(text: str, slot: Slot) -> str:
    """Caller words with every run of numbers (digits or number words, "4 3 2 1", "seven
    three nine", "double four") masked; with ``mask: last4`` the last run shows the last four
    digits of them all.  The other words are kept, so an agent still reads "can I speak to
    someone"."""
    runs: list[list[int]] = []
    for match in _WORD.finditer(text):
        word = match.group().lower()
        if not (word[0].isdigit() or word in _NUMBER_WORDS):
            continue
        if runs and _NUMBER_GAP.fullmatch(text, runs[-1][1], match.start()):
            runs[-1][1] = match.end()
        else:
            runs.append([match.start(), match.end()])
    if not runs:
        return text
    last4 = ""
    if slot.mask == "last4":
        last4 = "".join(entities.extract_digits(text[a:b]) or "" for a, b in runs)[-4:]
    out, kept = [], 0
    for n, (start, end) in enumerate(runs):
        out += [text[kept:start], MASK + (last4 if n == len(runs) - 1 else "")]
        kept = end
    out.append(text[kept:])
    return "".join(out)


def _normalised(text: str) -> str:
    return f" {_SPACES.sub(' ', text.lower().replace(chr(0x2019), '').replace(chr(39), ''))} "


class Privacy:
    """What of a call may be kept, asked at the moment of keeping it.  The record writer
    (``pipeline.latency.TurnClock``) asks for every caller turn and key, the recorder
    (``records.recording``) for every 20 ms of audio; neither may cache the answers."""

    def __init__(self, dialog: Dialog) -> None:
        self._dialog = dialog

    @property
    def records(self) -> bool:
        """The domain records this call's channel (voice), and said so at the start."""
        return self._dialog.records

    @property
    def opted_out(self) -> bool:
        """The caller said no: nothing more may be recorded, and what was must go."""
        return self._dialog.opted_out

    @property
    def paused(self) -> bool:
        """A sensitive slot is being asked for: record silence."""
        return self._dialog.sensitive_slot() is not None

    def caller_text(self, text: str) -> str:
        """The caller's words as they may be kept (numbers masked while a sensitive slot is asked)."""
        slot = self._dialog.sensitive_slot()
        return text if slot is None else mask_numbers(text, slot)

    def caller_key(self, digit: str) -> str:
        """A key as it may be kept: ``•`` while a sensitive slot is asked for."""
        return digit if self._dialog.sensitive_slot() is None else MASK_KEY


class Dialog:
    def __init__(self, domain: Domain, context: DialogContext | None = None) -> None:
        self.domain = domain
        self.spec = domain.spec
        self.rules = domain.spec.settings.rules
        self.context = context or DialogContext()
        self.state = "idle"  # idle → top ⇄ slot/confirm/lookup → done
        self.flow: str | None = None
        self.steps: list[Step] = []
        self.pc = 0
        self.slots: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.misunderstandings = 0
        self.no_inputs = 0
        self.digit_buffer = ""
        self.pending: Ask | None = None
        self.offered_anything_else = False
        self.last_prediction: IntentPrediction | None = None
        self.transfer: Transfer | None = None
        self.trace: list[TurnTrace] = []
        self.transcript: list[tuple[str, str]] = []
        recording = self.spec.settings.recording
        self.records = recording.record and self.context.channel != "text"
        self.opted_out = False
        self._opt_out_phrases = [_normalised(p) for p in recording.opt_out_phrases]
        self.privacy = Privacy(self)
        self._predicted: tuple[str, IntentPrediction] | None = None  # the last text classified
        self._rule = ""
        self._out: list[Action] = []

    # ------------------------------------------------------------------ public

    @property
    def ended(self) -> bool:
        return self.state == "done"

    def slot_display(self) -> dict[str, str]:
        """The collected slots as words, sensitive ones masked: what a trace, a record or an
        agent may see."""
        return {name: self._display(name, value) for name, value in self.slots.items()}

    def sensitive_slot(self) -> Slot | None:
        """The sensitive slot the dialog is asking for right now, if any."""
        if self.state != "slot" or self.pending is None or self.pending.slot is None:
            return None
        slot = self.spec.slots.get(self.pending.slot)
        return slot if slot is not None and slot.sensitive else None

    def complete_turn(self, text: str) -> bool:
        """Is ``text`` (what the caller said up to a pause) a whole request, so the turn can end
        without the rest of the silence?  Only when the bot asked for a request, the text sounds
        finished (``turn_end``) and the classifier is at least ``early_end_threshold`` sure of an
        intent the dialog acts on; answers to slot questions always wait for the silence."""
        threshold = self.spec.settings.nlu.early_end_threshold
        if threshold is None or self.state != "top" or not sounds_finished(text):
            return False
        pred = self._predict(text)
        acted_on = pred.intent in self.spec.flows or pred.intent in (self.rules.agent_intent,
                                                                      self.rules.goodbye_intent)
        return acted_on and pred.confidence >= threshold

    def _predict(self, text: str) -> IntentPrediction:
        """The classifier's answer, kept for the text it last saw: a pause's guess that ended
        the turn is classified once, not again when it arrives as the turn's text."""
        if self._predicted is None or self._predicted[0] != text:
            self._predicted = (text, self.domain.classifier.predict(text))
        return self._predicted[1]

    def handle(self, event: Event) -> list[Action]:
        self._out = []
        self._rule = ""
        self.last_prediction = None
        text = event.text if isinstance(event, UserSaid) else None
        shown = self.privacy.caller_text(text) if text is not None else None  # before the event answers it
        key = self.privacy.caller_key(event.digit) if isinstance(event, DtmfPressed) else None
        if shown is not None:
            self.transcript.append(("caller", shown))
        elif key is not None:
            self.transcript.append(("caller", f"[DTMF {key}]"))
        if isinstance(event, TransferFailed) and self.transfer is not None:
            self._on_transfer_failed(event)
        elif self.state == "done":
            self._rule = "ignored:call_over"
        elif isinstance(event, (UserSaid, DtmfPressed)) and self._opts_out(event):
            self._opt_out("speech" if isinstance(event, UserSaid) else "dtmf")
        elif isinstance(event, CallStarted):
            self._on_start()
        elif isinstance(event, UserSaid):
            self._on_text(event.text)
        elif isinstance(event, DtmfPressed):
            self._on_dtmf(event.digit)
        elif isinstance(event, NoInput):
            self._on_no_input()
        elif isinstance(event, LookupResult):
            self._on_lookup_result(event)
        elif isinstance(event, CallerHungUp):
            self.state = "done"
            self._rule = "caller_hung_up"
        for action in self._out:
            if isinstance(action, (Say, Ask)):
                self.transcript.append(("bot", action.text))
        pred = self.last_prediction
        self.trace.append(TurnTrace(
            event=type(event).__name__, text=shown or key,
            intent=pred.intent if pred else None, confidence=pred.confidence if pred else None,
            slots=self.slot_display(), rule=self._rule, actions=list(self._out), privacy=self.privacy,
        ))
        return self._out

    # ------------------------------------------------------------------ events

    def _on_start(self) -> None:
        self._rule = "greeting"
        self._say("greeting")
        if self.records:
            self._say(self.spec.settings.recording.consent_prompt)
        self._ask_top(self.spec.settings.menu.prompt if self.spec.settings.menu else None)

    def _opts_out(self, event: UserSaid | DtmfPressed) -> bool:
        """The caller says no to the recording: by the key (unless it is being keyed as a digit
        or a slot's option) or by the words (anywhere in what they said)."""
        if not self.records or self.opted_out:
            return False
        recording = self.spec.settings.recording
        if isinstance(event, UserSaid):
            said = _normalised(event.text)
            return any(phrase in said for phrase in self._opt_out_phrases)
        if event.digit != recording.opt_out_dtmf:
            return False
        keyed = self.state == "slot" and self._current_slot().type in ("digits", "amount", "date")
        return not keyed and self._dtmf_option(event.digit) is None

    def _opt_out(self, how: str) -> None:
        """Stop recording (the recorder deletes what it has), say so, and ask again what was asked."""
        self.opted_out = True
        self._rule = f"global:recording_opt_out:{how}"
        prompt = self.spec.settings.recording.opted_out_prompt
        text = self.spec.prompts.get(prompt) if prompt else None
        self._out.append(Say(self._render(text or DEFAULT_OPTED_OUT), True, prompt if text else None))
        if self.state != "lookup":
            self._reask()

    def _on_transfer_failed(self, event: TransferFailed) -> None:
        """Say so, and offer the rest of the bot's help; asking for an agent again tries again."""
        self._rule = f"transfer_failed:{event.queue}"
        self.transfer = None
        self.flow, self.steps, self.pc = None, [], 0
        self.misunderstandings = self.no_inputs = 0
        text = self.spec.prompts.get("transfer_failed", DEFAULT_TRANSFER_FAILED)
        self._out.append(Say(self._render(text), True, "transfer_failed" if "transfer_failed" in self.spec.prompts else None))
        self.offered_anything_else = True
        self._ask_top("anything_else")

    def _on_text(self, text: str) -> None:
        if not text.strip():
            self._on_no_input()
            return
        pred = self._predict(text)
        self.last_prediction = pred
        confident = pred.intent != OUT_OF_SCOPE
        strong = confident and pred.confidence >= self.spec.settings.nlu.switch_threshold

        if self.state == "lookup":
            self._rule = "ignored:waiting_for_lookup"
            return
        # A human costs money and a wrong transfer costs the caller their place: a spoken
        # request for an agent must be clear; unclear callers reach one via not_understood.
        if pred.intent == self.rules.agent_intent and strong:
            self._transfer_to(self.rules.agent_transfer, "global:agent_request")
            return
        if self.state == "slot":
            value = self._extract(self._current_slot(), text)
            if value is not None:
                self._fill(self._current_slot_name(), value, "slot_filled")
                return
        elif self.state == "confirm":
            answer = entities.extract_yes_no(text)
            if answer is not None:
                self._confirm(answer)
                return
        elif self.state == "top":
            if self.offered_anything_else:
                # "yes" / "no thanks" answer the question; "yes, I lost my card" is a request.
                answer = entities.extract_yes_no(text)
                is_request = confident and pred.intent in self.spec.flows and pred.intent != self.rules.goodbye_intent
                if answer is False and not is_request:
                    self._goodbye("anything_else:no")
                    return
                if answer is True and not is_request:
                    self._understood()
                    self._rule = "anything_else:yes"
                    self._ask_top("what_else")
                    return
            menu = self.spec.settings.menu
            if menu is not None and pred.intent == OUT_OF_SCOPE:
                keys = sorted(menu.options)
                choice = entities.extract_choice(text, len(keys))
                if choice is not None:
                    self._start_flow(menu.options[keys[choice - 1]], text, f"menu:choice:{choice}")
                    return
        if pred.intent == self.rules.goodbye_intent and confident and self.state in ("top", "slot", "confirm"):
            if self.state == "top" or strong:
                self._goodbye("global:goodbye")
                return
        if pred.intent in self.spec.flows and confident:
            if self.state == "top":
                self._start_flow(pred.intent, text, f"intent:{pred.intent}")
                return
            if strong and pred.intent != self.flow:
                self._start_flow(pred.intent, text, f"flow_switch:{self.flow}->{pred.intent}")
                return
        self._misunderstood("out_of_scope" if self.state == "top" and pred.intent == OUT_OF_SCOPE else "not_understood")

    def _on_dtmf(self, digit: str) -> None:
        if digit not in DTMF_KEYS:
            self._rule = "ignored:invalid_dtmf"
            return
        if self.state == "lookup":
            self._rule = "ignored:waiting_for_lookup"
            return
        if self.state == "slot" and self._current_slot().type in ("digits", "amount", "date"):
            slot = self._current_slot()
            if digit == "#":
                self._commit_buffer()
            elif digit == "*" and slot.type != "amount":
                self.digit_buffer = ""
                self._rule = "dtmf:cleared"
            else:
                self.digit_buffer += "." if digit == "*" else digit
                self._rule = "dtmf:collecting"
                if slot.type == "digits" and len(self.digit_buffer) >= slot.max_length:
                    self._commit_buffer()
            return
        if digit == self.rules.agent_dtmf and not (self.state == "slot" and self._dtmf_option(digit)):
            self._transfer_to(self.rules.agent_transfer, "global:agent_dtmf")
            return
        if self.state == "slot":
            option = self._dtmf_option(digit)
            if option is not None:
                self._fill(self._current_slot_name(), option, "slot_filled:dtmf")
            elif self._current_slot().type == "yes_no" and digit in "12":
                self._fill(self._current_slot_name(), digit == "1", "slot_filled:dtmf")
            else:
                self._misunderstood("invalid_key")
        elif self.state == "confirm":
            if digit in "12":
                self._confirm(digit == "1")
            else:
                self._misunderstood("invalid_key")
        elif self.state == "top":
            menu = self.spec.settings.menu
            if menu is not None and digit in menu.options:
                self._start_flow(menu.options[digit], None, f"menu:dtmf:{digit}")
            elif self.offered_anything_else and digit == "#":
                self._goodbye("anything_else:dtmf_end")
            elif digit == "*" and menu is not None:
                self._understood()
                self._rule = "menu:repeat"
                self._ask_top(menu.prompt)
            else:
                self._misunderstood("invalid_key")

    def _on_no_input(self) -> None:
        if self.state == "lookup":
            self._rule = "ignored:waiting_for_lookup"
            return
        if self.digit_buffer:
            self._commit_buffer()  # the inter-digit timeout ends a keyed entry
            return
        self.no_inputs += 1
        if self.no_inputs >= self.rules.max_no_input:
            self._transfer_to(self.rules.no_input_transfer, "global:no_input")
            return
        self._rule = f"no_input:{self.no_inputs}"
        self._say("no_input")
        self._reask()

    def _on_lookup_result(self, event: LookupResult) -> None:
        step = self.steps[self.pc] if self.state == "lookup" and self.pc < len(self.steps) else None
        if step is None or step.lookup != event.name:
            self._rule = "ignored:unexpected_lookup_result"
            return
        if event.ok:
            self.result = dict(event.data)
            self._rule = f"lookup_ok:{event.name}"
            self.pc += 1
            self._run()
            return
        self.result = {"error": event.error or "failed", **event.data}
        self._rule = f"lookup_failed:{event.name}"
        if step.on_failure:
            self.steps, self.pc = list(step.on_failure), 0
            self._run()
        else:
            self._say("lookup_failed")
            self._transfer_to(self.rules.lookup_failed_transfer, self._rule, say=False)

    # ------------------------------------------------------------------ flows

    def _start_flow(self, intent: str, text: str | None, rule: str) -> None:
        self._understood()
        self._rule = rule
        self.flow = intent
        self.steps = list(self.spec.flows[intent].steps)
        self.pc = 0
        self.result = {}
        self.offered_anything_else = False
        for name in list(self.slots):
            if not self.spec.slots[name].type == "digits":
                del self.slots[name]  # keep identifying digits across flows; ask amounts anew
        if text:
            self._prefill(text)
        self._run()

    def _prefill(self, text: str) -> None:
        """Fill this flow's slots that the opening utterance already answered
        ("block my card ending 4 5 6 7"), so the caller never says it twice.  A sensitive slot
        is taken only when what was said shows no more than a ``last4`` slot may show."""
        for step in self.steps:
            if step.ask and step.ask not in self.slots:
                slot = self.spec.slots[step.ask]
                value = None
                if slot.type in ("digits", "amount", "date"):
                    value = self._extract(slot, text)
                elif slot.type == "choice":
                    value = self._choice_by_words(slot, text)  # "one" could be anything; "savings" is not
                if slot.sensitive and not (slot.mask == "last4" and value is not None and len(str(value)) <= 4):
                    continue  # a PIN or a whole card number is asked for on its own, with the recording paused
                if value is not None:
                    self.slots[step.ask] = value

    def _run(self) -> None:
        for _ in range(_MAX_STEPS_PER_EVENT):
            if self.state == "done":
                return
            if self.pc >= len(self.steps):
                self._flow_done()
                return
            step = self.steps[self.pc]
            kind = step.kind
            if kind == "say":
                self._say(step.say)  # type: ignore[arg-type]
                self.pc += 1
            elif kind == "ask":
                if step.ask in self.slots:
                    self.pc += 1
                    continue
                slot = self.spec.slots[step.ask]  # type: ignore[index]
                self.state = "slot"
                self._emit_ask(Ask(self._render(self.spec.prompts[slot.prompt]), step.ask, slot.type,
                                   max_digits=slot.max_length if slot.type == "digits" else None,
                                   prompt=slot.prompt))
                return
            elif kind == "confirm":
                self.state = "confirm"
                self._emit_ask(Ask(self._render(self.spec.prompts[step.confirm]), None, "yes_no",  # type: ignore[index]
                                   prompt=step.confirm))
                return
            elif kind == "lookup":
                self.state = "lookup"
                args = {k: self._render(v, spoken=False) for k, v in step.args.items()}
                self._out.append(Lookup(step.lookup, args))  # type: ignore[arg-type]
                return
            elif kind == "transfer":
                self._transfer_to(step.transfer, self._rule or f"flow:{self.flow}", say=False)  # type: ignore[arg-type]
                return
            elif kind == "hangup":
                self.state = "done"
                self._out.append(Hangup(step.hangup))  # type: ignore[arg-type]
                return
            elif kind == "goto":
                self.flow = step.goto
                self.steps = list(self.spec.flows[step.goto].steps)  # type: ignore[index]
                self.pc = 0
        log.error("flow %s ran %d steps without waiting: a goto loop?", self.flow, _MAX_STEPS_PER_EVENT)
        self._transfer_to(self.rules.lookup_failed_transfer, "error:flow_loop")

    def _flow_done(self) -> None:
        self.flow = None
        self.steps, self.pc = [], 0
        if self.rules.after_flow == "hangup":
            self._goodbye(self._rule or "flow_done")
            return
        self.offered_anything_else = True
        self._ask_top("anything_else")

    def _confirm(self, yes: bool) -> None:
        self._understood()
        self._rule = "confirm:yes" if yes else "confirm:no"
        step = self.steps[self.pc]
        if yes:
            self.pc += 1
        else:
            self.steps, self.pc = list(step.on_no), 0
        self._run()

    def _fill(self, name: str, value: Any, rule: str) -> None:
        self._understood()
        self.slots[name] = value
        self._rule = f"{rule}:{name}"
        self.pc += 1
        self._run()

    # ------------------------------------------------------------------ slots

    def _current_slot_name(self) -> str:
        return self.steps[self.pc].ask  # type: ignore[return-value]

    def _current_slot(self) -> Slot:
        return self.spec.slots[self._current_slot_name()]

    def _dtmf_option(self, digit: str) -> str | None:
        if self.state != "slot":
            return None
        return next((n for n, o in self._current_slot().options.items() if o.dtmf == digit), None)

    def _extract(self, slot: Slot, text: str) -> Any:
        if slot.type == "digits":
            digits = entities.extract_digits(text)
            if digits and slot.min_length <= len(digits) <= slot.max_length:
                return digits
            return None
        if slot.type == "amount":
            amount = entities.extract_amount(text)
            if amount is None:
                return None
            if (slot.min is not None and amount < Decimal(str(slot.min))) or (
                    slot.max is not None and amount > Decimal(str(slot.max))):
                return None
            return amount
        if slot.type == "date":
            return entities.extract_date(text, self.context.today)
        if slot.type == "yes_no":
            return entities.extract_yes_no(text)
        # choice: a synonym, or an ordinal ("the second one")
        named = self._choice_by_words(slot, text)
        if named is not None:
            return named
        choice = entities.extract_choice(text, len(slot.options))
        return list(slot.options)[choice - 1] if choice else None

    @staticmethod
    def _choice_by_words(slot: Slot, text: str) -> str | None:
        lowered = f" {' '.join(entities.tokens(text))} "
        for name, option in slot.options.items():
            if any(f" {word.lower()} " in lowered for word in option.say):
                return name
        return None

    def _commit_buffer(self) -> None:
        buffer, self.digit_buffer = self.digit_buffer, ""
        if buffer == self.rules.agent_dtmf:
            self._transfer_to(self.rules.agent_transfer, "global:agent_dtmf")
            return
        slot = self._current_slot()
        value: Any = None
        if slot.type == "digits" and slot.min_length <= len(buffer) <= slot.max_length:
            value = buffer
        elif slot.type == "amount" and re.fullmatch(r"\d+(\.\d{1,2})?", buffer):
            value = self._extract(slot, buffer)
        elif slot.type == "date" and re.fullmatch(r"\d{4}", buffer):
            value = entities.extract_date(f"{buffer[:2]}/{buffer[2:]}", self.context.today)
        if value is None:
            self._misunderstood("invalid_entry")
        else:
            self._fill(self._current_slot_name(), value, "slot_filled:dtmf")

    # ------------------------------------------------------------------ global rules

    def _understood(self) -> None:
        self.misunderstandings = 0
        self.no_inputs = 0

    def _misunderstood(self, why: str) -> None:
        self.misunderstandings += 1
        self.digit_buffer = ""
        if self.misunderstandings >= self.rules.max_misunderstandings:
            self._transfer_to(self.rules.not_understood_transfer, "global:not_understood")
            return
        self._rule = f"{why}:{self.misunderstandings}"
        self._say("out_of_scope" if why == "out_of_scope" else "not_understood")
        self._reask()

    def _transfer_to(self, spec: TransferSpec, rule: str, say: bool = True) -> None:
        self._rule = rule
        if say:
            self._say("transfer")
        self.transfer = Transfer(spec.queue, spec.priority, tuple(spec.skills), spec.reason)
        self._out.append(self.transfer)
        self.state = "done"

    def _goodbye(self, rule: str) -> None:
        self._rule = rule
        self._say("goodbye", interruptible=False)
        self._out.append(Hangup("completed"))
        self.state = "done"

    # ------------------------------------------------------------------ output

    def _ask_top(self, prompt: str | None) -> None:
        self.state = "top"
        prompt = prompt or "what_else"
        self._emit_ask(Ask(self._render(self.spec.prompts[prompt]), None, "intent", prompt=prompt))

    def _emit_ask(self, ask: Ask) -> None:
        self.pending = ask
        self._out.append(ask)

    def _reask(self) -> None:
        if self.pending is None:
            return
        if self.state == "slot":
            slot = self._current_slot()
            if slot.reprompt:
                self._out.append(Ask(self._render(self.spec.prompts[slot.reprompt]), self.pending.slot,
                                     self.pending.expect, self.pending.max_digits, slot.reprompt))
                return
        self._out.append(self.pending)

    def _say(self, prompt: str, interruptible: bool = True) -> None:
        self._out.append(Say(self._render(self.spec.prompts[prompt]), interruptible, prompt))

    def _render(self, template: str, spoken: bool = True) -> str:
        """Fill {slot}, {result.x} and {caller.x}; lookups get raw values, speech gets words."""

        def field(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("result."):
                return str(self.result.get(name[7:], ""))
            if name.startswith("caller."):
                return str(getattr(self.context, f"caller_{name[7:]}", ""))
            if name in self.slots:
                value = self.slots[name]
                if not spoken:
                    return value.isoformat() if isinstance(value, date) else str(value)
                return self._spoken(name, value)
            log.warning("template field {%s} has no value yet", name)
            return ""
        return _FIELD.sub(field, template)

    def _display(self, name: str, value: Any) -> str:
        slot = self.spec.slots.get(name)
        if slot is not None and slot.sensitive:
            return mask_value(slot, value)
        return self._spoken(name, value)

    def _spoken(self, name: str, value: Any) -> str:
        slot = self.spec.slots.get(name)
        if slot is None:
            return str(value)
        if slot.sensitive:  # read back as the last four digits, or not at all
            return " ".join(str(value)[-4:]) if slot.mask == "last4" else ""
        if slot.type == "digits":
            return " ".join(str(value))
        if slot.type == "amount":
            return f"${value:,.2f}"
        if slot.type == "date":
            return f"{value:%A, %B} {value.day}"
        if slot.type == "yes_no":
            return "yes" if value else "no"
        option = slot.options.get(value)
        return option.label or value if option else str(value)
