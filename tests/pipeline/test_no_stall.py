"""The pipeline never stalls a call: whole calls in real time through the real pipeline (Silero,
Whisper, the dialog, Piper), with noise bursts, a barge-in followed by silence, and a
recogniser, a voice or a backend that fails, hangs or answers garbage.  The failing parts are
small stand-ins around the real engines, each failing once: they are the collaborators, the
pipeline is under test.

Every call keys 1 (balance) over the greeting, so the bot asks for the account's last four
digits: a short question the tests can wait out.  With ``no_input_s`` at 2.5 s, silence after a
question is answered by the domain's no-input re-prompt.  The failing-part tests put several
failures into one call, one after another (each must be re-prompted and the call must go on),
with the domain's ``max_no_input`` raised so that they do not end in the no-input transfer.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import date
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.bank_variants import patient
from tests.speech import phone_line, piper, rms
from voicebot.audio import resample
from voicebot.backends import FakeBank
from voicebot.nlu.dialog import LookupResult
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, SpeakWhenBotTalks

pytestmark = pytest.mark.slow
NO_INPUT_S = 2.5
TODAY = date(2026, 11, 25)


@pytest.fixture(scope="module")
def engines(voice_engines):
    from voicebot.pipeline.call import VoiceConfig

    return with_parts(voice_engines, config=VoiceConfig(no_input_s=NO_INPUT_S))


def prompt(bank, name: str) -> str:
    return bank.spec.prompts[name]


def run(engines, bank, script: list, backend: Any = None):
    return run_together(engines, bank, [(script, backend)])[0]


# Which of the calls run together (its index) is running: set in each call's task, inherited by
# the pipeline's tasks, so a log line can be told apart by the call that wrote it.
CALL_INDEX: contextvars.ContextVar[int] = contextvars.ContextVar("call_index")


def run_together(engines, bank, calls: list[tuple[list, Any]], engines_each: Sequence[Any] | None = None,
                 ) -> list[tuple[ScriptedCall, dict]]:
    """Whole calls (script, backend) at the same time, as a server takes them, on the shared
    engines (or each on its own of ``engines_each``); each call's scripted caller and record,
    in order."""
    from voicebot.pipeline.call import run_call

    async def one(index: int, script: list, backend: Any) -> tuple[ScriptedCall, dict]:
        CALL_INDEX.set(index)
        store = RecordStore(":memory:")
        call = ScriptedCall(script, input_rate=8000, output_sample_rate=8000)
        call_id = await run_call(call, engines=engines_each[index] if engines_each else engines, domain=bank,
                                 backend=backend or FakeBank(today=TODAY),
                                 store=store, channel="test", caller="+15551230000", today=TODAY)
        return call, store.get_call(call_id)

    async def all_of_them() -> list[tuple[ScriptedCall, dict]]:
        return list(await asyncio.wait_for(asyncio.gather(*(one(i, s, b) for i, (s, b) in enumerate(calls))), 150))

    return asyncio.run(all_of_them())


def with_parts(engines, **parts):
    """The shared engines with some parts swapped for this one call."""
    swapped = copy.copy(engines)
    for name, part in parts.items():
        setattr(swapped, name, part)
    return swapped


def bot_turns(record) -> list[dict]:
    return [t for t in record["turns"] if t["speaker"] == "bot"]


def bot_text(record) -> str:
    return " ".join(t["text"] for t in bot_turns(record))


def events(record, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["kind"] == kind]


def failures(stage: str, reason: str) -> float:
    return REGISTRY.get_sample_value("voicebot_pipeline_failures_total", {"stage": stage, "reason": reason}) or 0.0


def speech(engines, text: str, label: str = "") -> Speak:
    return Speak(*phone_line(*piper(engines.tts, text)), label or text)


def voiced_burst(engines, ms: int = 120) -> Speak:
    """The middle of a sustained vowel: Silero calls it speech, so the VAD's onset fires, but it
    is shorter than any word."""
    pcm, rate = piper(engines.tts, "Ahhhhh.")
    x = np.frombuffer(resample(pcm, rate, 16000), dtype=np.int16).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 1000)
    middle = (loud[0] + loud[-1]) // 2
    n = 16 * ms
    burst = x[middle - n // 2: middle + n // 2].copy()
    fade = np.linspace(0.0, 1.0, 160)
    burst[:160] *= fade
    burst[-160:] *= fade[::-1]
    return Speak(*phone_line(burst.astype(np.int16).tobytes(), 16000), f"{ms} ms vowel")


def cough(ms: int = 120) -> Speak:
    """A cough-like burst: a sharp attack, a buzz and a noisy decay."""
    n = 16 * ms
    t = np.arange(n) / 16000
    noise = np.convolve(np.random.default_rng(7).standard_normal(n), np.ones(6) / 6, mode="same")
    x = (3 * noise + 0.6 * np.sign(np.sin(2 * np.pi * 180 * t))) * np.exp(-np.arange(n) / (n / 4))
    x *= np.minimum(1.0, np.arange(n) / 80)
    x = x / np.abs(x).max() * 0.7
    return Speak(*phone_line((x * 32767).astype(np.int16).tobytes(), 16000), f"{ms} ms cough")


def reprompt_gap(call, record, text: str) -> float:
    """Seconds from the end of the bot's last audio before the re-prompt ``text`` to the re-prompt."""
    reprompt = next(t for t in bot_turns(record) if t["text"] == text)
    quiet = [q for q in call.bot_quiet_at if q < reprompt["started_at"]]
    return reprompt["started_at"] - quiet[-1]


ASK_BALANCE = [Pause(1.0), Press("1")]  # over the greeting: the bot asks for the account digits


# ------------------------------------------------------------------ the segmenter's view of a burst


def test_a_burst_starts_speech_but_is_shorter_than_talking_and_a_word_is_not(engines) -> None:
    from voicebot.pipeline.vad import Segmenter, SegmenterConfig, SpeechStarted

    def voiced(step: Speak, offset_ms: int) -> tuple[bool, float]:
        seg = Segmenter(engines.scorer(), SegmenterConfig())
        audio = b"\0" * (16 * offset_ms) + b"\0" * 8000 + step.pcm + b"\0" * 16000  # 8 kHz
        events, most = [], 0.0
        for i in range(0, len(audio), 320):  # 20 ms at a time, resampled as the pipeline does
            events += seg.feed(resample(audio[i:i + 320], 8000, 16000))
            most = max(most, seg.voiced_s)
        return any(isinstance(e, SpeechStarted) for e in events), most

    talking = SegmenterConfig().talking_s
    for offset in range(0, 32, 4):  # wherever the burst falls in the VAD's 32 ms windows
        started, most = voiced(voiced_burst(engines), offset)
        assert started and most < talking, (offset, most)
        assert voiced(cough(), offset)[1] < talking
        started, most = voiced(speech(engines, "Yes."), offset)
        assert started and most >= talking, (offset, most)


# ------------------------------------------------------------------ bursts and barge-in


@pytest.mark.parametrize("burst", ["vowel", "cough"])
def test_a_burst_neither_barges_in_nor_stops_the_no_input_timer(engines, bank, burst: str) -> None:
    make = (lambda: voiced_burst(engines)) if burst == "vowel" else cough
    script = [*ASK_BALANCE,
              SpeakWhenBotTalks(make(), after_s=1.0),  # over the question
              AwaitBot(quiet_s=0.6, then_s=0.3),
              Pause(1.1), make(),  # 2 s into the 2.5 s wait
              AwaitBot(timeout_s=15)]
    call, record = run(engines, bank, script)
    assert [e["data"]["by"] for e in events(record, "barge_in")] == ["dtmf"]  # the key, not the bursts
    question = prompt(bank, "ask_account_digits")
    assert [t["heard"] for t in bot_turns(record) if t["text"] == question] == [None]  # played whole
    # the re-prompt comes no_input_s after the question ended, as if the burst had not happened
    # (a timer restarted by the burst would need 4.5 s; one it stopped, forever)
    reprompt = prompt(bank, "no_input")
    assert reprompt in bot_text(record), bot_text(record)
    gap = reprompt_gap(call, record, reprompt)
    assert NO_INPUT_S - 0.3 <= gap <= NO_INPUT_S + 1.5, gap


def test_silence_after_a_barge_in_is_met_with_the_no_input_reprompt(engines, bank) -> None:
    """The caller talks over the question ("yes": long enough to count as talking), but it comes
    to nothing (here: too short to transcribe); then silence.  The bot must ask again."""
    from voicebot.pipeline.vad import SegmenterConfig

    config = dataclasses.replace(engines.config, segmenter=SegmenterConfig(min_utterance_s=1.5))
    script = [*ASK_BALANCE, SpeakWhenBotTalks(speech(engines, "Yes."), after_s=1.0), AwaitBot(timeout_s=15)]
    call, record = run(with_parts(engines, config=config), bank, script)
    barge_ins = [e for e in events(record, "barge_in") if e["data"]["by"] == "speech"]
    assert len(barge_ins) == 1, record["events"]
    reprompt = prompt(bank, "no_input")
    assert reprompt in bot_text(record), bot_text(record)
    after = next(t for t in bot_turns(record) if t["text"] == reprompt)["started_at"] - barge_ins[0]["at"]
    # the timer starts again when the caller's speech has ended (end of turn: 0.9 s for digits)
    assert NO_INPUT_S <= after <= NO_INPUT_S + 5, after
    assert [t["text"] for t in record["turns"] if t["speaker"] == "caller"] == ["[DTMF 1]"]  # no words


# ------------------------------------------------------------------ a failing recogniser


class FlakyAsr:
    """The real recogniser, except for its first answers: the n-th answer suffers ``faults[n]``."""

    def __init__(self, engine, faults: Sequence[str]) -> None:
        self.engine = engine
        self.faults = list(faults)
        self.calls = 0

    async def transcribe(self, pcm: bytes, sample_rate: int):
        self.calls += 1
        if self.calls > len(self.faults):
            return await self.engine.transcribe(pcm, sample_rate)
        fault = self.faults[self.calls - 1]
        if fault == "raises":
            raise RuntimeError("the recogniser's worker died")
        if fault == "hangs":
            await asyncio.Event().wait()
        real = await self.engine.transcribe(pcm, sample_rate)
        if fault == "answers None":
            return None
        if fault == "answers NaN":
            return SimpleNamespace(text=real.text, confidence=float("nan"), language="en", window_s=30.0)
        if fault == "answers nonsense":
            return dataclasses.replace(real, text="zxq blorf wibble")
        assert fault == "answers nothing"
        return dataclasses.replace(real, text="")


# fault → (the asr_failed reason, None where the answer is a transcript; the prompt that answers it)
ASR_FAULTS = {
    "raises": ("error", "no_input"),
    "hangs": ("timeout", "no_input"),
    "answers None": ("bad_result", "no_input"),
    "answers NaN": ("bad_result", "no_input"),
    "answers nonsense": (None, "not_understood"),
    "answers nothing": (None, "no_input"),
}


# Each failing-recogniser test's faults, one call each.
RECOGNISER_FAULTS = {"raises-hangs-None": ("raises", "hangs", "answers None"),
                     "NaN-nonsense-nothing": ("answers NaN", "answers nonsense", "answers nothing")}


class CallLog(logging.Handler):
    """The log records of the calls run together, by the call that wrote them (``CALL_INDEX``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_call: dict[int | None, list[logging.LogRecord]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.by_call.setdefault(CALL_INDEX.get(None), []).append(record)


@pytest.fixture(scope="module")
def recogniser_calls(engines, bank) -> dict[str, Any]:
    """The failing-recogniser calls, all at once (each is ~50 s of real time, mostly the bot
    talking): for each id its call, its record and its log records; and the failure counters'
    rises over the run, with every call's reasons (the counters are the process's, not a call's)."""
    from voicebot.pipeline import processors

    ids = list(RECOGNISER_FAULTS)
    all_faults = [f for faults in RECOGNISER_FAULTS.values() for f in faults]
    reasons = [ASR_FAULTS[f][0] for f in all_faults if ASR_FAULTS[f][0] is not None]
    before = {reason: failures("asr", reason) for reason in reasons}
    digits = speech(engines, "four five six seven")
    calls = []
    for key in ids:
        faults = RECOGNISER_FAULTS[key]
        calls.append(([*ASK_BALANCE, AwaitBot(), *[digits, AwaitBot(timeout_s=20)] * len(faults), digits, AwaitBot()],
                      None))
    max_no_input = max(len(faults) for faults in RECOGNISER_FAULTS.values()) + 1
    logger = logging.getLogger("voicebot.pipeline.processors")
    handler, level = CallLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    with pytest.MonkeyPatch.context() as mp:
        if "hangs" in all_faults:  # the real recogniser must still fit in it on a busy machine
            mp.setattr(processors, "ASR_TIMEOUT_S", 5.0)
        try:
            results = run_together(engines, patient(bank, max_no_input=max_no_input), calls,
                                   [with_parts(engines, asr=FlakyAsr(engines.asr, RECOGNISER_FAULTS[key]))
                                    for key in ids])
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return {"calls": {key: (call, record, handler.by_call.get(i, []))
                      for i, (key, (call, record)) in enumerate(zip(ids, results))},
            "risen": {reason: failures("asr", reason) - before[reason] for reason in set(reasons)},
            "reasons": reasons}


@pytest.mark.parametrize("faults", list(RECOGNISER_FAULTS.values()), ids=list(RECOGNISER_FAULTS))
def test_a_failing_recogniser_reprompts_and_the_call_goes_on(recogniser_calls, bank, faults: tuple[str, ...]) -> None:
    """The caller's answers are lost one after another, each in its own way: every time the bot
    asks again instead of waiting, and the answer after the last lost one goes through.  (Its
    call runs at the same time as the other way of failing's, in ``recogniser_calls``.)"""
    key = next(k for k, v in RECOGNISER_FAULTS.items() if v == faults)
    call, record, log_records = recogniser_calls["calls"][key]
    reasons = [ASR_FAULTS[f][0] for f in faults if ASR_FAULTS[f][0] is not None]
    texts = [t["text"] for t in bot_turns(record)]
    # each lost answer: the bot asks again at once instead of waiting for it ...
    question = prompt(bank, "ask_account_digits")
    asked = [question]
    for fault in faults:
        asked += [prompt(bank, ASR_FAULTS[fault][1]), prompt(bank, "reprompt_account_digits")]
    assert question in texts and texts[texts.index(question):][:len(asked)] == asked, texts
    # ... and the caller's next answer goes through
    assert "$2,450.75" in bot_text(record), texts
    assert any(t["rule"] == "slot_filled:account_last4" for t in record["turns"] if t["speaker"] == "caller")
    # each failure is recorded and counted as what it was; an answer that is a transcript is none
    assert [e["data"] for e in events(record, "asr_failed")] == [{"reason": r} for r in reasons]
    all_reasons = recogniser_calls["reasons"]  # every call's: the counter is the process's
    for reason in set(reasons):
        assert recogniser_calls["risen"][reason] == all_reasons.count(reason), reason
        assert any("speech recognition failed (%s)" % reason in r.getMessage() for r in log_records)
    # this call's log: a warning for each failure, of its reason, and none other
    assert sorted(r.getMessage().split(")")[0] for r in log_records
                  if r.getMessage().startswith("speech recognition failed")) == sorted(
        f"speech recognition failed ({r}" for r in reasons), [r.getMessage() for r in log_records]


# ------------------------------------------------------------------ a failing voice


class FlakyTts:
    """The real voice, except when asked to say the text of the next of its ``faults``
    ((text, fault) pairs, each failing once, in order)."""

    def __init__(self, engine, faults: Sequence[tuple[str, str]]) -> None:
        self.engine = engine
        self.faults = list(faults)

    def is_cached(self, text: str, sample_rate: int) -> bool:
        return self.engine.is_cached(text, sample_rate)

    async def stream(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        if not self.faults or text != self.faults[0][0]:
            async for pcm in self.engine.stream(text, sample_rate):
                yield pcm
            return
        fault = self.faults.pop(0)[1]
        if fault == "raises":
            raise RuntimeError("onnxruntime: out of memory")
        if fault == "hangs":
            await asyncio.Event().wait()
        if fault == "breaks off":
            async for pcm in self.engine.stream(text, sample_rate):
                yield pcm[: len(pcm) // 3]
                raise RuntimeError("the voice broke off")
        assert fault == "says nothing"  # what PiperEngine.stream does when Piper raises


# the question, then each time it is asked again: (prompt, what the voice does, the tts_failed reason)
TTS_FAULTS = [("ask_account_digits", "hangs", "timeout"),
              ("reprompt_account_digits", "raises", "error"),
              ("reprompt_account_digits", "says nothing", "no_audio"),
              ("reprompt_account_digits", "breaks off", "error")]


def test_a_failing_voice_reprompts_and_the_call_goes_on(engines, bank, monkeypatch) -> None:
    """The voice fails to say the question four times, four ways: each time the question the
    caller did not hear is asked again at once, and once it is heard the call goes on."""
    from voicebot.pipeline import processors

    monkeypatch.setattr(processors, "TTS_TIMEOUT_S", 5.0)  # the real voice must still fit in it (a sentence)
    reasons = [reason for _, _, reason in TTS_FAULTS]
    before = {reason: failures("tts", reason) for reason in reasons}
    flaky = FlakyTts(engines.tts, [(prompt(bank, name), fault) for name, fault, _ in TTS_FAULTS])
    # The failures follow each other with no pause the caller could answer in: the caller waits
    # for 1.5 s of quiet (the no-input timer for longer) before keying the digits.
    config = dataclasses.replace(engines.config, no_input_s=7.0)
    script = [*ASK_BALANCE, AwaitBot(quiet_s=1.5, timeout_s=45), Press("4567"), AwaitBot()]
    domain = patient(bank, max_no_input=len(TTS_FAULTS) + 1)
    call, record = run(with_parts(engines, tts=flaky, config=config), domain, script)
    failed = events(record, "tts_failed")
    assert [(e["data"]["prompt"], e["data"]["reason"]) for e in failed] == [
        (name, reason) for name, _, reason in TTS_FAULTS]
    for reason in set(reasons):
        assert failures("tts", reason) == before[reason] + reasons.count(reason), reason
    texts = [t["text"] for t in bot_turns(record)]
    # each question the caller did not hear is asked again at once, and the call goes on
    question = prompt(bank, "ask_account_digits")
    again = [prompt(bank, "no_input"), prompt(bank, "reprompt_account_digits")] * len(TTS_FAULTS)
    assert question in texts and texts[texts.index(question) + 1:][:len(again)] == again, texts
    assert "$2,450.75" in bot_text(record), texts
    assert rms(call.heard_audio()) > 0.01


# ------------------------------------------------------------------ a failing backend


class BrokenBank(FakeBank):
    def __init__(self, fault: str) -> None:
        super().__init__(today=TODAY)
        self.fault = fault

    async def lookup(self, name: str, args: dict[str, str], call_id: str = "") -> Any:
        if self.fault == "raises":
            raise ConnectionResetError("core banking went away")
        if self.fault == "hangs":
            await asyncio.Event().wait()
        if self.fault == "answers a dict":
            return {"ok": True, "data": {"balance": "lots"}}
        return LookupResult("some_other_lookup", True, {"balance": "$1.00"})


BACKEND_FAULTS = {"raises": "backend_error", "hangs": "backend_timeout", "answers a dict": "backend_bad_reply",
                  "answers another lookup": "backend_bad_reply"}  # fault → the lookup event's error


def test_a_failing_backend_is_recorded_as_what_it_is_and_the_caller_hears_the_failure_path(
        engines, bank, monkeypatch) -> None:
    """One call per way the backend fails, all at once (none of them waits on another)."""
    from voicebot import textchat

    monkeypatch.setattr(textchat, "LOOKUP_TIMEOUT_S", 1.5)
    script = [*ASK_BALANCE, AwaitBot(timeout_s=20), Press("4567"), AwaitBot(timeout_s=20)]
    results = run_together(engines, bank, [(script, BrokenBank(fault)) for fault in BACKEND_FAULTS])
    for (fault, error), (call, record) in zip(BACKEND_FAULTS.items(), results):
        lookups = events(record, "lookup")
        assert [(e["data"]["name"], e["data"]["ok"], e["data"]["error"]) for e in lookups] == [
            ("get_balance", False, error)], fault
        # the flow's on_failure: say so, and hand the caller to a person
        assert "I couldn't find an account ending in 4 5 6 7." in bot_text(record), (fault, bot_text(record))
        assert record["transfer"]["reason"] == "account_not_found", fault
        assert record["outcome"] == "transferred", fault
