"""`voicebot bench latency`: real-time scripted calls through the whole voice pipeline,
measuring what a caller feels: last speech sample → first bot audio sample played.

Each call: the caller speaks over the greeting (a barge-in, as real callers do), the bot
answers, the caller hangs up.  Utterances come from two synthetic voices (Piper and
espeak-ng) through an 8 kHz mu-law phone line.  Results are JSON, with per-stage medians
from the call records: end of turn + ASR (transcript), dialog (decision), TTS (first audio).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import shutil

import subprocess
import time
import wave
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio import resample

UTTERANCES = [
    "What's my balance?",
    "What are your opening hours?",
    "I lost my card.",
    "I want to pay my credit card bill.",
    "Read me my recent transactions.",
    "There's a charge on my account I don't recognize.",
    "Are you open on Saturday?",
    "How much money do I have in my checking account?",
]


def espeak(text: str, voice: str = "en-us", speed: int = 150) -> tuple[bytes, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def phone_line(pcm: bytes, rate: int) -> tuple[bytes, int]:
    """Band-limit to 8 kHz and quantise to 8-bit mu-law and back, as a G.711 call would."""
    mu = 255.0
    x = np.frombuffer(resample(pcm, rate, 8000), dtype=np.int16).astype(np.float32) / 32768.0
    q = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * mu)
    y = q / mu * 2 - 1
    decoded = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
    return (np.clip(decoded, -1, 1) * 32767).astype(np.int16).tobytes(), 8000


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


async def _one_call(engines: Any, domain: Any, pcm: bytes, rate: int, label: str) -> dict[str, Any]:
    from voicebot.backends import FakeBank
    from voicebot.pipeline.call import run_call
    from voicebot.records.store import RecordStore
    from voicebot.scripted_call import AwaitBot, ScriptedCall, Speak, SpeakWhenBotTalks

    store = RecordStore(":memory:")
    call = ScriptedCall([SpeakWhenBotTalks(Speak(pcm, rate, label), after_s=1.0), AwaitBot(quiet_s=0.4, then_s=0.1)],
                        input_rate=8000, output_sample_rate=8000, tail_s=0.2)
    call_id = await asyncio.wait_for(run_call(call, engines=engines, domain=domain, backend=FakeBank(), store=store,
                                              channel="bench", today=date.today()), 90)
    record = store.get_call(call_id)
    turn = next((t for t in record["turns"] if t["speaker"] == "caller"), None)
    return {"label": label, "text": turn["text"] if turn else None, "intent": turn["intent"] if turn else None,
            "caller_ms": call.latencies[0].ms if call.latencies else None,
            **({k: v for k, v in turn["timings"].items()} if turn else {})}


def run_latency(out: Path, voices: tuple[str, ...] = ("piper", "espeak"), trim_window: bool = True,
                end_of_turn: str = "silence") -> dict[str, Any]:
    from voicebot.nlu.nlu import default_embedder, load_domain
    from voicebot.pipeline.asr import AsrConfig
    from voicebot.pipeline.call import Engines, VoiceConfig

    root = Path(__file__).resolve().parents[1]
    engines = Engines(VoiceConfig(asr=AsrConfig(trim_window=trim_window), end_of_turn=end_of_turn))
    domain = load_domain(root / "domains" / "bank", default_embedder())
    engines.warm_prompts(domain)
    samples: list[dict[str, Any]] = []

    async def all_calls() -> None:
        for voice in voices:
            for text in UTTERANCES:
                pcm, rate = (b"".join(engines.tts.sentences(text, deterministic=True)), engines.tts.sample_rate) if voice == "piper" else espeak(text)
                pcm, rate = phone_line(pcm, rate)
                samples.append({"voice": voice, **await _one_call(engines, domain, pcm, rate, text)})

    started = time.perf_counter()
    asyncio.run(all_calls())
    measured = [s for s in samples if s.get("caller_ms") is not None]

    def stage(key: str) -> dict[str, float | None]:
        values = [s[key] for s in measured if s.get(key) is not None]
        return {"p50": _pct(values, 50), "p90": _pct(values, 90), "n": len(values)}

    result = {
        "benchmark": "speech end → first bot audio, real-time scripted calls over an 8 kHz phone line",
        "caller_end_to_end_ms": stage("caller_ms"),
        "stages_from_speech_end_ms": {"transcript (end of turn + ASR)": stage("transcript_ms"),
                                      "decision (+ NLU and dialog)": stage("decision_ms"),
                                      "first audio handed to the edge": stage("first_audio_ms")},
        "intents_correct": sum(1 for s in measured if s.get("intent") not in (None, "out_of_scope")),
        "calls": len(samples),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "config": {"asr": engines.config.asr_model, "asr_device": engines.config.asr.device,
                   "asr_compute_type": engines.config.asr.compute_type, "vad": engines.config.vad,
                   "end_of_turn": engines.config.end_of_turn, "end_of_turn_s": engines.config.segmenter.end_of_turn_s,
                   "asr_trim_window": engines.config.asr.trim_window},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "samples": samples,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"{result['calls']} calls, {result['wall_seconds']} s"]
    e2e = result["caller_end_to_end_ms"]
    lines.append(f"caller speech end → first bot audio: p50 {e2e['p50']} ms, p90 {e2e['p90']} ms")
    for name, s in result["stages_from_speech_end_ms"].items():
        lines.append(f"  {name:<34} p50 {s['p50']} ms  p90 {s['p90']} ms")
    return "\n".join(lines)




