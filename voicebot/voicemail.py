"""Voicemail: the caller leaves a message on their own line, after a greeting and a tone.

``calls.Call`` hands the caller's line here when a queue is closed, nobody is there, the wait
was too long, or the caller chose it.  Like the survey, this runs after the bot's pipeline (or
the hold music) let go of the line: it speaks and listens there through a ``CallerLine``
(``caller_line.py``), one without ears, since the message's audio is kept rather than heard as
words.  The flow is the one every voicemail system has: greeting, beep, record until the
caller stops talking (``silence_s`` after their last word), presses ``#``, reaches ``max_s``
or hangs up (a message cut by the hang-up is kept); nothing said gets one more try; then, with
``review``, listen (1) / record again (2) / send (``#``, a hang-up, or no key), and a thanks.

Speech and silence come from the shared VAD (a ``Segmenter`` on ``Engines.scorer()``, Silero
by default), not an energy gate: a phone line's hiss, breathing and a TV in the room are loud
enough to hold an energy gate open, and the VAD is what the bot's own turns are cut with.
Its speech spans also say where to trim the message (``MARGIN_S`` either side) and where the
pauses are: Whisper decodes one 30 s window, so a longer message is cut at pauses into pieces
of at most ``PIECE_S``, decoded together by the shared ASR batcher (off the event loop), and
their texts joined.

The prompts are bot turns and the keys caller turns in the record (when ``store`` and
``call_id`` are given); the message's own words are not: the caller of this stores the
transcript with the voicemail.  Nothing here raises into the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import soxr

from voicebot.audio import resample
from voicebot.caller_line import CallerLine, Gone, Heard, Key, open_line
from voicebot.media import AudioChunk, EdgeStream
from voicebot.pipeline.asr import Transcript
from voicebot.pipeline.call import Engines
from voicebot.pipeline.transcriber import AsrEngine
from voicebot.pipeline.vad import RATE, WINDOW, Segmenter, SegmenterConfig, SpeechScorer, SpeechStarted, Utterance
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

RETRY_PROMPT = "Sorry, I did not hear a message. Please speak after the tone."
REVIEW_PROMPT = ("To listen to your message, press 1. To record it again, press 2. "
                 "To send it, press hash, or simply hang up.")
SENT_PROMPT = "Thank you, your message has been sent."
PROMPTS = (RETRY_PROMPT, REVIEW_PROMPT, SENT_PROMPT)  # fixed: worth warming once (``PiperEngine.warm``)

TONE_HZ = 1000.0  # the classic answering-machine beep: clear on an 8 kHz line, unlike any voice
TONE_S = 0.4
TONE_GAP_S = 0.3  # silence between the greeting and the beep, so the beep stands apart
NO_SPEECH_S = 6.0  # after the tone, how long a caller may say nothing before being asked again
REVIEW_WAIT_S = 6.0  # after the review menu, how long without a key before the message is sent
MARGIN_S = 0.3  # audio kept before the first word and after the last one
PAUSE_S = 0.5  # a silence this long inside a message is a pause (a place to cut it for Whisper)
PIECE_S = 28.0  # the longest piece for Whisper: its window is 30 s, and trailing silence ends a decode cleanly
MAX_MENUS = 6  # review menus before the message is sent regardless (a caller keying at random)
POLL_S = 0.1
LINE_LATE_S = 2.0  # the wall clock may run this far ahead of the line's audio before it is believed instead


@dataclass(frozen=True)
class VoiceMessage:
    pcm: bytes  # 16-bit mono, at the caller's input rate
    sample_rate: int
    duration_s: float
    transcript: str  # Whisper's text of the whole message ("" when nothing intelligible)
    ended_by: str  # "silence" | "key" | "max" | "hangup"


async def take_voicemail(stream: EdgeStream, engines: Engines, greeting: str, max_s: float, *,
                         silence_s: float = 3.0, review: bool = True, store: RecordStore | None = None,
                         call_id: str | None = None, no_speech_s: float = NO_SPEECH_S) -> VoiceMessage | None:
    """Greet, beep, record, review, thank; the message, or None when the caller left none
    (said nothing twice, or hung up before speaking).  A failure after a message was recorded
    still returns that message: the caller left it, so it is not thrown away."""
    mailbox = _Voicemail(stream, engines, greeting, max_s, silence_s, review, store, call_id, no_speech_s)
    try:
        return await mailbox.run()
    except Exception:  # a voicemail is never worth a failed call
        log.exception("call %s: voicemail failed", call_id)
        return mailbox.salvage()


# --------------------------------------------------------------------------- recording (sync)

@dataclass(frozen=True)
class _Take:
    """One recording, trimmed: audio at the line's rate, where the speech is in it, and why it ended."""

    pcm: bytes
    sample_rate: int
    spans: list[tuple[int, int]]  # speech (onset, last speech sample), in samples of ``pcm``
    ended_by: str

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class Recording:
    """The caller's audio from the tone on: kept as it came (its own rate), and scored for
    speech at 16 kHz by the shared VAD as it arrives.  Synchronous and cheap per 20 ms chunk
    (one or two 32 ms Silero windows), so it runs inline on the event loop."""

    def __init__(self, scorer: SpeechScorer, pause_s: float = PAUSE_S) -> None:
        self.audio = bytearray()
        self.sample_rate: int | None = None
        self.spans: list[tuple[int, int]] = []  # (onset, last speech), 16 kHz samples since the tone
        self._segmenter = Segmenter(scorer, SegmenterConfig(end_of_turn_s=pause_s))
        self._resampler: soxr.ResampleStream | None = None
        self._onset = 0

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        if len(pcm) % 2:
            pcm = pcm[:-1]
        if self.sample_rate is None:
            self.sample_rate = sample_rate
            if sample_rate != RATE:
                self._resampler = soxr.ResampleStream(sample_rate, RATE, 1, dtype="int16")
        elif sample_rate != self.sample_rate:  # an edge changing rate mid-call: keep one rate
            pcm = resample(pcm, sample_rate, self.sample_rate)
        self.audio += pcm
        samples = np.frombuffer(pcm, dtype=np.int16)
        pcm16k = samples.tobytes() if self._resampler is None else self._resampler.resample_chunk(samples).tobytes()
        self._segment(pcm16k)

    def _segment(self, pcm16k: bytes) -> None:
        for event in self._segmenter.feed(pcm16k):
            if isinstance(event, SpeechStarted):
                self._onset = event.at_sample
            elif isinstance(event, Utterance):
                self.spans.append((max(self._onset, event.start_sample), event.end_sample))

    @property
    def heard_s(self) -> float:
        """Seconds of the line heard since the tone."""
        return self._segmenter.position / RATE

    @property
    def speaking(self) -> bool:
        return self._segmenter.speaking

    @property
    def spoke(self) -> bool:
        """Whether the caller has said anything yet (a click or a cough under 0.2 s is nothing)."""
        return bool(self.spans)

    @property
    def silent_s(self) -> float:
        """Silence since the caller's last word (0 while they talk, or before they spoke)."""
        if not self.spans or self.speaking:
            return 0.0
        return (self._segmenter.position - self.spans[-1][1]) / RATE

    def finish(self, ended_by: str) -> _Take | None:
        """End the recording; the message trimmed to its speech, or None when there was none."""
        if self._resampler is not None:
            self._segment(self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes())
            self._resampler = None
        if self._segmenter.speaking:  # cut mid-word (key, max, hang-up): give the VAD its silence
            silence = int((self._segmenter.end_of_turn_s + 0.1) * RATE)
            silence += WINDOW - silence % WINDOW
            self._segment(b"\0" * (2 * silence))
        rate = self.sample_rate
        if not self.spans or rate is None:
            return None
        total = len(self.audio) // 2
        margin = int(MARGIN_S * rate)

        def at(sample16k: int) -> int:
            return min(total, sample16k * rate // RATE)

        start = max(0, at(self.spans[0][0]) - margin)
        end = min(total, at(self.spans[-1][1]) + margin)
        spans = [(at(a) - start, at(b) - start) for a, b in self.spans]
        return _Take(bytes(self.audio[2 * start:2 * end]), rate, spans, ended_by)


def pieces(spans: list[tuple[int, int]], total: int, limit: int) -> list[tuple[int, int]]:
    """Cut ``total`` samples into consecutive pieces of at most ``limit``, at the middle of a
    pause between speech ``spans`` where one falls inside the limit (the latest such pause, so
    pieces are few), else hard at the limit (one breath-less stretch longer than the limit)."""
    cuts = [(end + nxt) // 2 for (_, end), (nxt, _) in zip(spans, spans[1:]) if nxt > end]
    out: list[tuple[int, int]] = []
    start = 0
    while total - start > limit:
        fitting = [c for c in cuts if start < c <= start + limit]
        cut = fitting[-1] if fitting else start + limit
        out.append((start, cut))
        start = cut
    out.append((start, total))
    return out


async def transcribe_message(asr: AsrEngine, pcm: bytes, sample_rate: int, spans: list[tuple[int, int]]) -> str:
    """The whole message's text: pieces of at most ``PIECE_S`` (Whisper hears one 30 s window
    and would drop the rest), submitted at once so the shared batcher decodes them together."""
    parts = pieces(spans, len(pcm) // 2, int(PIECE_S * sample_rate))
    results = await asyncio.gather(*(asr.transcribe(pcm[2 * a:2 * b], sample_rate) for a, b in parts),
                                   return_exceptions=True)
    texts = []
    for (a, b), result in zip(parts, results):
        if isinstance(result, Transcript):
            texts.append(result.text.strip())
        elif isinstance(result, BaseException):  # one lost piece leaves the rest of the message
            log.warning("voicemail: ASR failed on %.1f s of a message: %r", (b - a) / sample_rate, result)
    return " ".join(t for t in texts if t)


def beep(sample_rate: int, hz: float = TONE_HZ, seconds: float = TONE_S, gap_s: float = TONE_GAP_S) -> bytes:
    """``gap_s`` of silence, then the tone with 10 ms fades (a hard edge clicks)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    tone = 0.3 * np.sin(2 * np.pi * hz * t) * fade
    return b"\0" * (2 * int(gap_s * sample_rate)) + (tone * 32767).astype(np.int16).tobytes()


# --------------------------------------------------------------------------- on the line (async)

class _Voicemail:
    def __init__(self, stream: EdgeStream, engines: Engines, greeting: str, max_s: float, silence_s: float,
                 review: bool, store: RecordStore | None, call_id: str | None, no_speech_s: float) -> None:
        # a line that fails to hear is as good as gone for a recording
        self.line = CallerLine(stream, engines, store, call_id, name="voicemail", ears=False, deaf_is_gone=True)
        self.stream = stream
        self.engines = engines
        self.greeting = greeting
        self.max_s = max_s
        self.silence_s = silence_s
        self.review = review
        self.call_id = call_id
        self.no_speech_s = no_speech_s
        self.gone = False
        self.take: _Take | None = None  # the message to send, once there is one
        self._text: asyncio.Task[str] | None = None  # its transcription, under way

    async def run(self) -> VoiceMessage | None:
        if not open_line(self.stream):
            return None
        try:
            async with self.line.listening():
                self.take = await self._record(self.greeting)
                if self.take is None:
                    return None
                self._transcribe()
                if self.review and not self.gone:
                    await self._review()
                if not self.gone:  # thanked while Whisper finishes
                    await self.line.say(SENT_PROMPT)
                    await self.line.played()
                return await self._message()
        finally:
            if self._text is not None and not self._text.done():  # only after a failure: left undecoded
                self._text.cancel()

    def salvage(self) -> VoiceMessage | None:
        """After a failure: the message recorded so far, with its text if it was decoded."""
        if self.take is None:
            return None
        task, text = self._text, ""
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            text = task.result()
        return _message(self.take, text)

    # ------------------------------------------------------------------ the caller's side

    async def _next(self, timeout: float = POLL_S) -> Heard | None:
        """The next thing the line did (a key, a chunk of audio), None after ``timeout``; once
        gone, always ``Gone``."""
        if self.gone:
            return Gone()
        try:
            event = await asyncio.wait_for(self.line.heard.get(), timeout)
        except asyncio.TimeoutError:
            return None
        self.gone = isinstance(event, Gone)
        return event

    async def _record(self, prompt: str | None) -> _Take | None:
        """``prompt``, the tone, a recording; said nothing: asked once more.  None when no
        message came (or the caller left before saying one)."""
        for attempt in range(2):
            take = await self._record_once(prompt if attempt == 0 else RETRY_PROMPT)
            if take is not None or self.gone:
                return take
        return None

    async def _record_once(self, prompt: str | None) -> _Take | None:
        if prompt:
            await self.line.say(prompt)
        await self.stream.write(beep(self.stream.output_sample_rate), self.stream.output_sample_rate)
        while self.stream.playout().pending_ms > 0:  # whatever the caller does over the greeting is not the message
            if isinstance(await self._next(), Gone):
                return None
        recording = Recording(self.engines.scorer())
        ended_by = await self._listen(recording)
        heard_s = recording.heard_s
        take = recording.finish(ended_by) if ended_by else None
        log.info("call %s: voicemail recording ended by %s after %.1f s: %s", self.call_id, ended_by or "no speech",
                 heard_s, f"{take.duration_s:.1f} s of message" if take else "nothing said")
        return take

    async def _listen(self, recording: Recording) -> str | None:
        """Record until the message ends; how it ended, or None when nothing was said."""
        started = last_audio = time.monotonic()
        while True:
            event = await self._next()
            now = time.monotonic()
            if isinstance(event, Gone):
                return "hangup"
            if isinstance(event, Key) and event.digit == "#":
                self.line.turn("[DTMF #]")
                return "key"
            if isinstance(event, AudioChunk):
                last_audio = now
                recording.feed(event.pcm, event.sample_rate)
            # The line's audio is the clock; the wall clock stands in for a line that stops sending.
            late = now - started - LINE_LATE_S
            if recording.heard_s >= self.max_s or late >= self.max_s:
                return "max"
            if recording.spoke and (recording.silent_s >= self.silence_s or now - last_audio >= self.silence_s):
                return "silence"
            if not recording.spoke and not recording.speaking and (
                    recording.heard_s >= self.no_speech_s or late >= self.no_speech_s):
                return None

    # ------------------------------------------------------------------ review

    async def _review(self) -> None:
        """Listen, record again, or send; returns when the message is to be sent."""
        choice = await self._menu()
        for _ in range(MAX_MENUS):
            if self.gone or choice is None or choice == "#":
                return
            if choice == "1":
                assert self.take is not None
                choice = await self._play(self.take)
                if choice is None and not self.gone:
                    choice = await self._menu()
                continue
            if choice == "2":
                again = await self._record(None)
                if again is not None:  # a failed second try keeps the first message
                    if self._text is not None:
                        self._text.cancel()
                    self.take = again
                    self._transcribe()
                if self.gone:
                    return
            choice = await self._menu()

    async def _menu(self) -> str | None:
        """The review menu and the caller's key (over the menu, or within ``REVIEW_WAIT_S``)."""
        await self.line.say(REVIEW_PROMPT)
        return await self._key(REVIEW_WAIT_S)

    async def _play(self, take: _Take) -> str | None:
        """The message played back; a key stops it and is the caller's next choice."""
        rate = self.stream.output_sample_rate
        self.stream.clear()
        await self.stream.write(resample(take.pcm, take.sample_rate, rate), rate)
        return await self._key(0.0)

    async def _key(self, wait_s: float) -> str | None:
        """A key pressed while the line plays, or ``wait_s`` after it stopped; it cuts the
        playing short.  None without a key (or once the caller has gone)."""
        quiet_since: float | None = None
        while True:
            event = await self._next()
            if isinstance(event, Gone):
                return None
            if isinstance(event, Key):
                self.stream.clear()
                self.line.turn(f"[DTMF {event.digit}]")
                return event.digit
            if self.stream.playout().pending_ms > 0:
                quiet_since = None
                continue
            now = time.monotonic()
            quiet_since = quiet_since or now
            if now - quiet_since >= wait_s:
                return None

    # ------------------------------------------------------------------ the message

    def _transcribe(self) -> None:
        """Start decoding the message now: it runs while the caller reviews it."""
        take = self.take
        assert take is not None
        self._text = asyncio.create_task(
            transcribe_message(self.engines.asr, take.pcm, take.sample_rate, take.spans),
            name=f"voicemail-asr-{(self.call_id or '')[:8]}")

    async def _message(self) -> VoiceMessage:
        assert self.take is not None and self._text is not None
        try:
            text = await self._text
        except Exception:
            log.exception("call %s: the voicemail could not be transcribed", self.call_id)
            text = ""
        return _message(self.take, text)


def _message(take: _Take, transcript: str) -> VoiceMessage:
    return VoiceMessage(take.pcm, take.sample_rate, round(take.duration_s, 3), transcript, take.ended_by)
