"""What a waiting caller hears: music on hold, with spoken announcements laid over it.

``MusicOnHold`` is the process's music: every ``.wav`` in a folder (Asterisk's
``/usr/share/asterisk/moh`` when Debian's ``asterisk-moh-opsound-wav`` is installed), kept at
its own rate and resampled once per output rate, on first use, for every call.  Without a
usable file it is a soft generated chime pattern, so a queue is never silent (silence makes
callers think the line dropped).

``HoldPlayer`` is one caller's player: it keeps 200–400 ms of music queued on the caller's
``MediaStream`` (enough to ride out a slow event loop, little enough that an announcement cuts
in at once), remembers where the caller was between hold sessions (back from an agent who did
not answer, the music goes on where it stopped) and interrupts the music for speech.

``announcement_text()`` words the position and wait announcement; the ACD decides when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.audio import resample
from voicebot.media import MediaStream

log = logging.getLogger(__name__)

DEFAULT_FOLDER = Path("/usr/share/asterisk/moh")  # Debian: asterisk-moh-opsound-wav (8 kHz)
FRAME_MS = 20


class BadWav(ValueError):
    """A file that is not a usable PCM WAV."""


@dataclass(frozen=True)
class Track:
    name: str
    pcm: bytes  # 16-bit mono at sample_rate
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


def read_wav(path: Path) -> Track:
    """A PCM WAV (8, 16, 24 or 32-bit integer; any rate; any channels) as 16-bit mono."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            data = w.readframes(w.getnframes())
    except Exception as exc:  # wave raises Error, EOFError, RuntimeError, struct.error... on junk
        raise BadWav(f"{path}: not a readable WAV ({type(exc).__name__}: {exc})") from exc
    if width not in (1, 2, 3, 4) or channels < 1 or rate < 4000:
        raise BadWav(f"{path}: {width * 8}-bit, {channels} channels at {rate} Hz is not usable")
    data = data[: len(data) - len(data) % (width * channels)]
    if len(data) // (width * channels) < rate // 10:
        raise BadWav(f"{path}: no audio (under 0.1 s)")
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        samples = (raw[:, 1].astype(np.int32) | (raw[:, 2].astype(np.int8).astype(np.int32) << 8))
    else:
        samples = np.frombuffer(data, dtype=np.int16 if width == 2 else np.int32).astype(np.int32)
        if width == 4:
            samples >>= 16
    mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    return Track(path.name, np.clip(mono, -32768, 32767).astype(np.int16).tobytes(), rate)


def chime_pattern(sample_rate: int = 16000, level: float = 0.12) -> bytes:
    """A soft, slow chime over four chords (C, A minor, F, G), then a rest; about 13 s.

    Bell-like notes (a sine with a quiet octave, a quick attack and a long decay) below 1 kHz,
    so they survive an 8 kHz phone line; nothing like a ringback's steady double tone."""
    chords = [(261.63, 329.63, 392.00, 523.25), (220.00, 261.63, 329.63, 440.00),
              (174.61, 220.00, 261.63, 349.23), (196.00, 246.94, 293.66, 392.00)]
    note_s, ring_s = 0.6, 1.6
    out = np.zeros(int((len(chords) * 4 * note_s + ring_s + 1.5) * sample_rate), dtype=np.float32)
    t = np.arange(int(ring_s * sample_rate)) / sample_rate
    envelope = np.minimum(1.0, t / 0.015) * np.exp(-t * 3.0)
    for c, chord in enumerate(chords):
        for n, freq in enumerate(chord):
            tone = (np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(4 * np.pi * freq * t)) * envelope
            start = int((c * 4 + n) * note_s * sample_rate)
            out[start:start + len(tone)] += tone
    out *= level / max(1e-9, float(np.abs(out).max()))
    return (out * 32767).astype(np.int16).tobytes()


class MusicOnHold:
    """The process's hold music: tracks at their own rates, resampled once per output rate."""

    def __init__(self, tracks: Sequence[Track], generated: bool = False) -> None:
        if not tracks:
            raise ValueError("music on hold needs at least one track")
        self.tracks = list(tracks)
        self.generated = generated
        self._cache: dict[tuple[int, int], bytes] = {}

    @classmethod
    def from_folder(cls, path: Path | None = None) -> MusicOnHold:
        """Every readable ``.wav`` in ``path`` (default: Asterisk's folder, if installed), in
        name order; bad files are skipped with a warning; none at all gives the chimes."""
        folder = path if path is not None else (DEFAULT_FOLDER if DEFAULT_FOLDER.is_dir() else None)
        tracks: list[Track] = []
        if folder is not None and folder.is_dir():
            for file in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()):
                try:
                    tracks.append(read_wav(file))
                except BadWav as exc:
                    log.warning("music on hold: skipping %s", exc)
        if tracks:
            minutes = sum(t.duration_s for t in tracks) / 60
            log.info("music on hold: %d tracks, %.1f min, from %s", len(tracks), minutes, folder)
            return cls(tracks)
        if folder is None:
            where = f"no folder given and no {DEFAULT_FOLDER}"
        else:
            where = f"no usable .wav in {folder}" if folder.is_dir() else f"no folder {folder}"
        log.warning("music on hold: %s; playing a generated chime pattern instead", where)
        return cls.chimes()

    @classmethod
    def chimes(cls) -> MusicOnHold:
        return cls([Track("generated chimes", chime_pattern(16000), 16000)], generated=True)

    def pcm(self, index: int, sample_rate: int) -> bytes:
        """Track ``index`` at ``sample_rate``, resampled on first use (a long track at 48 kHz
        takes ~0.1 s: a player asks for it off the event loop, see ``is_ready``)."""
        key = (index, sample_rate)
        cached = self._cache.get(key)
        if cached is None:
            track = self.tracks[index]
            cached = resample(track.pcm, track.sample_rate, sample_rate)
            cached = cached[: len(cached) - len(cached) % 2]
            self._cache[key] = cached
        return cached

    def is_ready(self, index: int, sample_rate: int) -> bool:
        return (index, sample_rate) in self._cache


class HoldPlayer:
    """Plays ``music`` into one caller's stream and lays speech over it.

    ``start()`` begins (or resumes) the music; ``say()`` stops it, plays the speech to its end
    and lets it go on; ``stop()`` ends the session and drops what is queued.  The position is
    kept between sessions and counts only what the caller heard (what ``clear()`` dropped is
    played again)."""

    def __init__(self, stream: MediaStream, music: MusicOnHold, *, silence_gap_ms: int = 1000,
                 low_water_ms: float = 200.0, high_water_ms: float = 400.0, poll_s: float = 0.05,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.stream = stream
        self.music = music
        self.rate = stream.output_sample_rate
        self.silence_gap_ms = silence_gap_ms
        self.low_water_ms = low_water_ms
        self.high_water_ms = high_water_ms
        self.poll_s = poll_s
        self._sleep = sleep
        self._frame = self.rate * FRAME_MS // 1000  # samples
        self._segment = 0  # index into the playlist: track 0, gap, track 1, gap, ...
        self._offset = 0  # samples into that segment
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one writer at a time: the music or an announcement
        self._say_lock = asyncio.Lock()  # announcements one after the other, never cut short
        self._idle = asyncio.Event()  # no announcement playing
        self._idle.set()
        self._music_queued = False  # what the stream holds is music (so a clear rewinds it)
        self._primed = False
        self.underruns = 0  # the music ran dry while playing (the event loop was held up)

    # ------------------------------------------------------------------ control

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start or resume the music where this caller last stopped hearing it."""
        if self.playing or self.stream.closed:
            return
        self._primed = False
        self._task = asyncio.create_task(self._play(), name="hold-music")

    async def stop(self) -> None:
        """End this hold session and drop the queued audio.  Never raises."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        async with self._lock:
            self._drop_queued()

    async def say(self, pcm: bytes, sample_rate: int) -> None:
        """Cut the music, play ``pcm`` to its last sample, then let the music (if started) go
        on.  Announcements made at once play one after the other."""
        async with self._say_lock:
            self._idle.clear()
            try:
                async with self._lock:
                    self._drop_queued()
                    if self.stream.closed:
                        return
                    await self.stream.write(resample(pcm, sample_rate, self.rate), self.rate)
                while not self.stream.closed and self.stream.playout().pending_ms > 0:
                    await self._sleep(self.poll_s)
            except Exception:
                if not self.stream.closed:
                    raise
            finally:
                self._idle.set()

    # ------------------------------------------------------------------ playout

    async def _play(self) -> None:
        try:
            while not self.stream.closed:
                if not self._idle.is_set():
                    await self._idle.wait()  # say() watches the stream meanwhile
                    continue
                await self._top_up()
                await self._sleep(self.poll_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self.stream.closed:
                log.exception("hold music stopped")

    async def _top_up(self) -> None:
        pending = self.stream.playout().pending_ms
        if pending >= self.low_water_ms:
            return
        if pending == 0 and self._primed:
            self.underruns += 1
        frames = int((self.high_water_ms - pending) // FRAME_MS)
        await self._ensure_ready()
        async with self._lock:
            if not self._idle.is_set() or self.stream.closed:
                return
            await self.stream.write(self._take(frames * self._frame), self.rate)
            self._music_queued = self._primed = True

    def _drop_queued(self) -> None:
        """Clear the stream; music the caller did not hear yet will be played next time."""
        music, self._music_queued = self._music_queued, False
        try:
            dropped_ms = self.stream.clear().pending_ms
        except Exception:  # a stream closed underneath: nothing to drop
            return
        if music:
            self._rewind(int(round(dropped_ms * self.rate / 1000)))

    # ------------------------------------------------------------------ the playlist

    def _segments(self) -> int:
        return len(self.music.tracks) * (2 if self.silence_gap_ms > 0 else 1)

    def _is_gap(self, segment: int) -> bool:
        return self.silence_gap_ms > 0 and segment % 2 == 1

    def _track_of(self, segment: int) -> int:
        return segment // 2 if self.silence_gap_ms > 0 else segment

    def _length(self, segment: int) -> int:
        if self._is_gap(segment):
            return self.rate * self.silence_gap_ms // 1000
        return len(self.music.pcm(self._track_of(segment), self.rate)) // 2

    async def _ensure_ready(self) -> None:
        """Resample the current and the next track off the event loop, once per process."""
        for segment in (self._segment, (self._segment + 1) % self._segments(), (self._segment + 2) % self._segments()):
            if not self._is_gap(segment):
                index = self._track_of(segment)
                if not self.music.is_ready(index, self.rate):
                    await asyncio.to_thread(self.music.pcm, index, self.rate)

    def _take(self, samples: int) -> bytes:
        parts: list[bytes] = []
        empty = 0  # segments in a row with nothing in them (tracks too short for this rate)
        while samples > 0 and empty <= self._segments():
            length = self._length(self._segment)
            n = min(samples, length - self._offset)
            empty = 0 if n > 0 else empty + 1
            if n > 0:
                if self._is_gap(self._segment):
                    parts.append(b"\0" * (2 * n))
                else:
                    pcm = self.music.pcm(self._track_of(self._segment), self.rate)
                    parts.append(pcm[2 * self._offset: 2 * (self._offset + n)])
                self._offset += n
                samples -= n
            if self._offset >= length:
                self._segment = (self._segment + 1) % self._segments()
                self._offset = 0
        return b"".join(parts) + b"\0" * (2 * samples)

    def _rewind(self, samples: int) -> None:
        while samples > 0:
            if self._offset == 0:
                self._segment = (self._segment - 1) % self._segments()
                self._offset = self._length(self._segment)
            n = min(samples, self._offset)
            self._offset -= n
            samples -= n

    @property
    def position(self) -> tuple[int, float]:
        """(track index, seconds into it) of the next music sample to be queued."""
        offset_s = 0.0 if self._is_gap(self._segment) else self._offset / self.rate
        track = self._track_of(self._segment) + (1 if self._is_gap(self._segment) else 0)
        return track % len(self.music.tracks), offset_s


def announcement_text(position: int, estimated_wait_s: float | None) -> str:
    """The position and wait announcement: "You are number 2 in line. Your expected wait is
    about 3 minutes."  Position 1 is "next"; an unknown wait is left out."""
    if position < 1:
        raise ValueError(f"a queue position starts at 1, not {position}")
    text = "You are next in line." if position == 1 else f"You are number {position} in line."
    if estimated_wait_s is None or not math.isfinite(estimated_wait_s):
        return text
    return f"{text} Your expected wait is {_wait_words(estimated_wait_s)}."


def _wait_words(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute"
    if seconds >= 90 * 60:
        return "more than an hour"
    minutes = int(seconds / 60 + 0.5)
    if minutes > 10:  # "about 23 minutes" claims a precision no estimate has
        minutes = int(minutes / 5 + 0.5) * 5
    if minutes >= 60:
        return "about an hour"
    return "about 1 minute" if minutes == 1 else f"about {minutes} minutes"
