"""A call's recording: one stereo WAV per call, the caller on the left, everything played to
the caller (bot, hold music and announcements, the agent) on the right, at the leg's rate
(8 kHz for SIP; 16 kHz for WebRTC's 48 kHz, and for anything else above 8 kHz).

The recorder is a ``media.Tap`` on the caller's leg, so it hears exactly what the caller said
and was played, whoever was talking (the bot's pipeline, the hold player, an agent's relay).
The two channels arrive on their own clocks (the edge's receive path, its 20 ms sender), so
each chunk is placed by the wall clock: a channel that fell silent (nothing played) is filled
with silence up to now, and a late chunk is put where it belongs in time.

It asks the dialog's ``Privacy`` about every chunk: while a sensitive slot is being asked for
it writes silence on both channels; once the caller has opted out it deletes the file and
records nothing more (they did not consent to what was recorded either).  The WAV header is
brought up to date every second, so a crash leaves a playable file.

``Recordings`` is the server's side: where files go (``recordings_dir``, by default a
``recordings`` folder beside the records database), and what the call's record says about its
recording (events ``recording``, with the path and, once closed, the duration; and
``recording_deleted``).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soxr

from voicebot.media import EdgeStream
from voicebot.nlu.dialog import Dialog, Privacy
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

CALLER, PLAYED = 0, 1
JITTER_S = 0.06  # a chunk this late is still put right after the one before it
LAG_S = 0.1  # a channel with nothing to say is filled with silence up to this far behind now
AHEAD_MAX_S = 0.3  # a source whose clock runs fast is cut back (chunks dropped) past this
HEADER_EVERY_S = 1.0
HEADER_BYTES = 44


def recording_rate(leg_rate: int) -> int:
    """8 kHz legs are recorded at 8 kHz; wider ones at 16 kHz (speech needs no more)."""
    return 8000 if leg_rate <= 8000 else 16000


def default_dir(records_db: Path | str) -> Path:
    """Recordings live beside the records database."""
    return Path(records_db).resolve().parent / "recordings"


@dataclass(frozen=True)
class RecordingInfo:
    path: str
    sample_rate: int
    channels: int
    duration_s: float
    paused_s: float
    started_at: float  # wall clock of the file's first sample


def _wav_header(rate: int, data_bytes: int) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16)
            + b"data" + struct.pack("<I", data_bytes))


class Recorder:
    """One call's stereo WAV, fed by the leg's tap (see the module's docstring)."""

    def __init__(self, path: Path, leg_rate: int, privacy: Privacy, *, clock: Callable[[], float] = time.monotonic,
                 on_discard: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.rate = recording_rate(leg_rate)
        self.privacy = privacy
        self.clock = clock
        self.on_discard = on_discard
        self.state = "recording"  # → closed | discarded
        self.started_at = time.time()
        self._t0 = clock()
        self._pending = [bytearray(), bytearray()]  # placed, not yet written, per channel (int16)
        self._placed = [0, 0]  # samples placed per channel since the start
        self._written = 0  # stereo frames in the file
        self._header_at = 0
        self._paused = 0  # samples of the caller channel written as silence for privacy
        self._resamplers: dict[tuple[int, int], Any] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(path, "wb")
        self._file.write(_wav_header(self.rate, 0))

    # ------------------------------------------------------------------ media.Tap

    def caller_audio(self, pcm: bytes, sample_rate: int) -> None:
        self._add(CALLER, pcm, sample_rate)

    def played_audio(self, pcm: bytes, sample_rate: int) -> None:
        self._add(PLAYED, pcm, sample_rate)

    # ------------------------------------------------------------------ the end

    def close(self) -> RecordingInfo | None:
        """Finish the file (both channels to the same length); None when it was discarded."""
        if self.state == "recording" and self.privacy.opted_out:
            self.discard("caller_opted_out")
        if self.state != "recording":
            return None
        self.state = "closed"
        longest = max(self._placed)
        for channel in (CALLER, PLAYED):
            self._pad(channel, longest - self._placed[channel])
        self._drain()
        assert self._file is not None
        self._write_header()
        self._file.close()
        self._file = None
        return self.info()

    def discard(self, reason: str) -> None:
        """Stop and delete the file (the caller opted out)."""
        if self.state != "recording":
            return
        self.state = "discarded"
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self.on_discard is not None:
            self.on_discard(reason)

    def info(self) -> RecordingInfo:
        return RecordingInfo(str(self.path), self.rate, 2, round(self._written / self.rate, 3),
                             round(self._paused / self.rate, 3), self.started_at)

    # ------------------------------------------------------------------ placing audio

    def _add(self, channel: int, pcm: bytes, sample_rate: int) -> None:
        if self.state != "recording":
            return
        if self.privacy.opted_out:
            self.discard("caller_opted_out")
            return
        samples = self._resample(channel, pcm, sample_rate)
        count = len(samples) // 2
        if self.privacy.paused:
            samples = bytes(len(samples))
            if channel == CALLER:
                self._paused += count
        now = round((self.clock() - self._t0) * self.rate)
        placed = self._placed[channel]
        if placed > now + AHEAD_MAX_S * self.rate:
            return  # this source runs ahead of the wall clock: let it fall back in step
        start = now - count
        if placed < start - JITTER_S * self.rate:
            self._pad(channel, start - placed)  # the channel was quiet (or this chunk is late)
        self._pending[channel] += samples
        self._placed[channel] += count
        other = 1 - channel
        behind = now - int(LAG_S * self.rate)
        if self._placed[other] < behind:
            self._pad(other, behind - self._placed[other])
        self._drain()

    def _resample(self, channel: int, pcm: bytes, sample_rate: int) -> bytes:
        if sample_rate == self.rate or not pcm:
            return pcm
        key = (channel, sample_rate)
        stream = self._resamplers.get(key)
        if stream is None:
            stream = self._resamplers[key] = soxr.ResampleStream(sample_rate, self.rate, 1, dtype="int16")
        return stream.resample_chunk(np.frombuffer(pcm, dtype=np.int16)).tobytes()

    def _pad(self, channel: int, samples: int) -> None:
        if samples > 0:
            self._pending[channel] += bytes(samples * 2)
            self._placed[channel] += samples

    def _drain(self) -> None:
        """Write what both channels have, interleaved."""
        frames = min(len(self._pending[CALLER]), len(self._pending[PLAYED])) // 2
        if frames == 0 or self._file is None:
            return
        stereo = np.empty(frames * 2, dtype=np.int16)
        stereo[0::2] = np.frombuffer(self._pending[CALLER], dtype=np.int16, count=frames)
        stereo[1::2] = np.frombuffer(self._pending[PLAYED], dtype=np.int16, count=frames)
        self._file.write(stereo.tobytes())
        for channel in (CALLER, PLAYED):
            del self._pending[channel][:frames * 2]
        self._written += frames
        if self._written - self._header_at >= HEADER_EVERY_S * self.rate:
            self._write_header()

    def _write_header(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.write(_wav_header(self.rate, self._written * 4))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        self._header_at = self._written


class Recordings:
    """Where recordings go and what the records say of them: the server makes one."""

    def __init__(self, folder: Path | str, store: RecordStore) -> None:
        self.folder = Path(folder)
        self.store = store

    def path_for(self, call_id: str) -> Path:
        return self.folder / f"{call_id}.wav"

    def start(self, call_id: str, stream: EdgeStream, dialog: Dialog) -> Recorder | None:
        """Record this call if its domain records its channel: tap the caller's leg."""
        if not dialog.privacy.records:
            return None
        store = self.store

        def discarded(reason: str) -> None:
            log.info("call %s: recording stopped and deleted (%s)", call_id, reason)
            store.event(call_id, "recording_deleted", {"reason": reason})

        try:
            recorder = Recorder(self.path_for(call_id), stream.output_sample_rate, dialog.privacy, on_discard=discarded)
        except OSError as exc:  # a full or read-only disk costs the recording, not the call
            log.error("call %s: cannot record to %s: %s", call_id, self.folder, exc)
            store.event(call_id, "recording_failed", {"error": str(exc)})
            return None
        stream.add_tap(recorder)
        store.event(call_id, "recording", {"path": str(recorder.path), "sample_rate": recorder.rate, "channels": 2,
                                           "started_at": recorder.started_at})
        return recorder

    def finish(self, call_id: str, recorder: Recorder, stream: EdgeStream | None = None) -> RecordingInfo | None:
        """Close the file and write its duration to the record."""
        if stream is not None:
            stream.remove_tap(recorder)
        try:
            info = recorder.close()
        except OSError as exc:
            log.error("call %s: recording could not be finished: %s", call_id, exc)
            return None
        if info is not None:
            self.store.event(call_id, "recording", asdict(info))
        return info
