"""Whisper encoder window: the full 30 s window against a trimmed one (utterance + silence).

Words lost (deleted or substituted) and words added against the script, on phone-line speech (Piper and espeak-ng voices through
8 kHz mu-law), and the median decode time on this machine.  JSON to
benchmarks/results/asr_window.json.

    python benchmarks/asr_window.py
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicebot.audio import resample  # noqa: E402
from voicebot.bench import UTTERANCES, espeak, phone_line  # noqa: E402
from voicebot.modelstore import resolve  # noqa: E402
from voicebot.pipeline.asr import AsrConfig, WhisperEngine  # noqa: E402
from voicebot.pipeline.tts import PiperEngine  # noqa: E402

TEXTS = UTTERANCES + ["Can I speak to an agent please?", "No thanks, that's all."]


def words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c == " ").split()


def errors(reference: list[str], hypothesis: list[str]) -> tuple[float, float]:
    """(words lost, words added) per reference word, from a longest-matching alignment."""
    matcher = difflib.SequenceMatcher(a=reference, b=hypothesis)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return 1 - matched / len(reference), max(0, len(hypothesis) - matched) / len(reference)


def main() -> int:
    model = resolve("tts")
    tts = PiperEngine(str(model), str(model) + ".json")
    clips = []
    for text in TEXTS:
        for voice in ("piper", "espeak"):
            pcm, rate = (b"".join(tts.sentences(text, deterministic=True)), tts.sample_rate) if voice == "piper" else espeak(text)
            pcm, rate = phone_line(pcm, rate)
            audio = np.frombuffer(resample(pcm, rate, 16000), dtype=np.int16).astype(np.float32) / 32768
            clips.append((voice, text, audio))
    results = {}
    for name, config in [("full_30s_window", AsrConfig(trim_window=False)), ("trimmed_window", AsrConfig(trim_window=True))]:
        engine = WhisperEngine(str(resolve("asr")), config)
        lost, added, seconds, fallbacks = [], [], [], 0
        for _voice, text, audio in clips:
            start = time.perf_counter()
            result = engine.transcribe_batch([audio])[0]
            seconds.append(time.perf_counter() - start)
            miss, extra = errors(words(text), words(result.text))
            lost.append(miss)
            added.append(extra)
            fallbacks += result.full_window_fallback
        results[name] = {"words_lost": round(float(np.mean(lost)), 4), "words_added": round(float(np.mean(added)), 4),
                         "median_ms": round(float(np.median(seconds)) * 1000, 1),
                         "p90_ms": round(float(np.percentile(seconds, 90)) * 1000, 1), "full_window_fallbacks": fallbacks}
    out = ROOT / "benchmarks" / "results" / "asr_window.json"
    out.write_text(json.dumps({"model": "whisper tiny.en int8 (CTranslate2)", "clips": len(clips),
                               "audio": "Piper + espeak-ng voices through 8 kHz mu-law", "results": results,
                               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:<16} lost {r['words_lost']:.1%} added {r['words_added']:.1%}  median {r['median_ms']} ms  p90 {r['p90_ms']} ms")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
