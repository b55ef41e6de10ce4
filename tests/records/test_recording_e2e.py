"""Recorded calls through the real call owner and pipeline (VAD, Whisper, dialog, Piper) on a
real-time 8 kHz caller: one keys the card's last four digits and says its security code, one
says "don't record".  Then the WAV, the record and every log line are read back."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.speech import phone_line, piper, rms
from voicebot.backends import FakeBank
from voicebot.calls import CallService
from voicebot.domain_reload import DomainRegistry
from voicebot.legs import CallerLeg
from voicebot.nlu.nlu import load_domain
from voicebot.records.recording import Recordings
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak

pytestmark = pytest.mark.slow
RATE = 8000
# What must never be kept: the security code, in any form, and the keys of the card digits.  The
# card's last four may show as ••••4321, and the bot reads them back ("ending in 4 3 2 1").
# (Number boundaries keep call ids and timestamps from matching by chance.)
SECRETS = {
    "security code": re.compile(r"(?<![\w.])739(?!\w|\.\d)|7[ ,.-]+3[ ,.-]+9|seven,? three,? nine", re.I),
    "card key": re.compile(r"\[DTMF [0-9]\]"),
    "card digits": re.compile(r"(?<![\w.•])4321(?!\w|\.\d)"),
}


def leaks(text: str) -> list[str]:
    """Each secret found, with what surrounds it."""
    return [f"{name}: ...{text[max(0, m.start() - 80):m.end() + 40]}..."
            for name, pattern in SECRETS.items() for m in pattern.finditer(text)]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def secure_bank(embedder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The bank with a short menu, whose lost-card flow also asks for the card's security code
    (sensitive, fully masked) after its last four digits (sensitive, ``mask: last4``)."""
    root = tmp_path_factory.mktemp("domain") / "bank"
    shutil.copytree(Path(__file__).resolve().parents[2] / "domains" / "bank", root)
    prompts = root / "prompts.yaml"
    text = prompts.read_text()
    start, end = text.index("  main_menu: >-"), text.index("  what_else:")
    prompts.write_text(text[:start] + "  main_menu: How can I help you today?\n"
                       "  ask_security_code: Please say or key in the three digit security code on the back of the card.\n"
                       + text[end:])
    (root / "slots.yaml").write_text((root / "slots.yaml").read_text() + """
  security_code:
    type: digits
    min_length: 3
    max_length: 3
    sensitive: true
    prompt: ask_security_code
""")
    edit(root / "flows.yaml", "      - ask: card_last4\n", "      - ask: card_last4\n      - ask: security_code\n")
    return load_domain(root, embedder)


@pytest.fixture(scope="module")
def engines(voice_engines, secure_bank):  # type: ignore[no-untyped-def]
    """The session's shared engines, with this domain's prompts warmed too (only its short menu
    and its security-code question are not the bank's)."""
    voice_engines.warm_prompts(secure_bank)
    return voice_engines


PhoneCaller = ScriptedCall  # its audio reaches the leg's taps as an edge's put() hands it


def speak(engines, text: str, label: str) -> Speak:  # type: ignore[no-untyped-def]
    pcm, rate = phone_line(*piper(engines.tts, text))
    return Speak(pcm, rate, label)


def seconds(pcm: np.ndarray, start: float, end: float) -> np.ndarray:
    return pcm[max(0, int(start * RATE)):max(0, int(end * RATE))]


def test_a_recorded_call_pauses_for_card_digits_and_an_opt_out_deletes_it(engines, secure_bank, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    bank = FakeBank()
    card = [AwaitBot(timeout_s=30), speak(engines, "I lost my card.", "lost"), AwaitBot(),
            Press("4321"), AwaitBot(), speak(engines, "7 3 9.", "code"), AwaitBot(),
            speak(engines, "Yes.", "yes"), AwaitBot(), Press("#"), AwaitBot()]
    declines = [Pause(3.0), speak(engines, "Please don't record this call.", "no"), AwaitBot(), Pause(1.0)]
    caplog.set_level(logging.DEBUG)  # from here on, every log line is the server's

    async def scenario() -> tuple[str, str, RecordStore, Recordings]:
        store = RecordStore(tmp_path / "calls.sqlite3")
        recordings = Recordings(tmp_path / "recordings", store)
        registry = DomainRegistry(Path(secure_bank.spec.root), lambda _root: secure_bank)
        service = CallService(engines, registry, bank, store, recordings=recordings)
        calls = [service.start(CallerLeg(PhoneCaller(script, input_rate=RATE, output_sample_rate=RATE, tail_s=0.5),
                                         "sip", number))
                 for script, number in ((card, "+15551230001"), (declines, "+15551230002"))]
        deadline = time.monotonic() + 150
        while service.tasks:
            assert time.monotonic() < deadline, "the calls did not end"
            await asyncio.sleep(0.2)
        return calls[0], calls[1], store, recordings

    kept, declined, store, recordings = asyncio.run(scenario())

    # ---- the call that keyed and said card digits
    record = store.get_call(kept)
    assert record is not None and bank.cards["4321"].blocked, record["turns"]
    caller = [t for t in record["turns"] if t["speaker"] == "caller"]
    keyed = [t["text"] for t in caller if t["text"].startswith("[DTMF")]
    assert keyed == ["[DTMF •]"] * 4 + ["[DTMF #]"], caller
    code = next(t for t in caller if t["rule"] == "slot_filled:security_code")
    assert "••••" in code["text"] and not re.search(r"\d|seven|three|nine", code["text"], re.I), code
    assert code["slots"] == {"card_last4": "••••4321", "security_code": "••••"}
    assert not leaks(json.dumps(record, ensure_ascii=False)), leaks(json.dumps(record, ensure_ascii=False))
    bot = [t for t in record["turns"] if t["speaker"] == "bot"]
    assert bot[1]["text"].startswith("This call may be recorded")

    info = store.recording(kept)
    assert info is not None and info["duration_s"] > 20 and info["sample_rate"] == RATE and info["channels"] == 2
    with wave.open(info["path"]) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, RATE, 2)
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    left, right = stereo[0::2], stereo[1::2]
    t0 = info["started_at"]
    # the bot's greeting is on the right, the caller's "I lost my card" on the left
    assert rms(seconds(right, 0.0, 2.0).tobytes()) > 0.01
    lost = next(t for t in caller if t["rule"] == "intent:lost_card")["started_at"] - t0  # its speech end
    assert rms(seconds(left, lost - 1.0, lost).tobytes()) > 0.01
    assert rms(seconds(right, lost - 1.0, lost).tobytes()) < rms(seconds(left, lost - 1.0, lost).tobytes())
    # from the question for the card digits until the code was taken: silence on both sides
    asked = next(t for t in bot if "last four digits of the card" in t["text"])["started_at"] - t0
    resumed = next(t for t in bot if t["text"].startswith("To confirm"))["started_at"] - t0
    said_code = code["started_at"] - t0
    assert asked + 4 < said_code < resumed  # the keys, the question and the code all fell in the pause
    for channel in (left, right):
        assert not seconds(channel, asked + 0.1, resumed - 0.1).any()
    assert info["paused_s"] >= resumed - asked - 0.5
    assert rms(seconds(right, resumed + 0.3, resumed + 3.0).tobytes()) > 0.01  # the read-back is recorded again

    # ---- the caller who said no
    other = store.get_call(declined)
    assert other is not None and store.recording(declined) is None
    assert not recordings.path_for(declined).exists()
    assert any(t["rule"] == "global:recording_opt_out:speech" for t in other["turns"])
    assert [e["data"] for e in other["events"] if e["kind"] == "recording_deleted"] == [{"reason": "caller_opted_out"}]
    assert any("will not be recorded" in t["text"] for t in other["turns"] if t["speaker"] == "bot")

    # ---- no log line carries the card digits
    logged = [r.getMessage() for r in caplog.records if leaks(r.getMessage())]
    assert caplog.records and not logged, logged
    store.close()
