"""Music on hold: loading a folder of WAVs, the generated fallback, the player on a real
EdgeStream whose 20 ms frames a fake line pulls as the player's (fake) time passes, and the
position and wait announcements."""

from __future__ import annotations

import asyncio
import logging
import math
import wave
from pathlib import Path

import numpy as np
import pytest

import voicebot.hold as hold
from voicebot.hold import HoldPlayer, MusicOnHold, Track, announcement_text, chime_pattern, read_wav
from voicebot.media import EdgeStream

# ---------------------------------------------------------------------------- helpers


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def pcm_of(track_or_bytes: Track | bytes) -> np.ndarray:
    data = track_or_bytes.pcm if isinstance(track_or_bytes, Track) else track_or_bytes
    return np.frombuffer(data, dtype=np.int16)


def ramp(start: int, n: int) -> np.ndarray:
    """Music whose every sample says where it is: start, start + 1, ..."""
    return np.arange(start, start + n, dtype=np.int16)


RATE = 8000
SPEECH = -5000  # an announcement: a negative constant, unlike any music sample


class Line:
    """The edge's sender: one 20 ms frame pulled per 20 ms of the player's (fake) time."""

    def __init__(self, stream: EdgeStream) -> None:
        self.stream = stream
        self.frames: list[bytes | None] = []
        self.pending_seen: list[float] = []
        self._debt = 0.0

    async def sleep(self, seconds: float) -> None:
        self._debt += seconds / 0.02
        while self._debt >= 1:
            self._debt -= 1
            self.pending_seen.append(self.stream.playout().pending_ms)
            self.frames.append(self.stream.output.pull())
        await asyncio.sleep(0)

    async def until(self, frames: int) -> None:
        """Let the player run until the line has pulled ``frames`` frames in all."""
        for _ in range(100_000):
            if len(self.frames) >= frames:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"the player stalled at {len(self.frames)} frames")

    def kinds(self, frames: list[bytes | None] | None = None) -> list[str]:
        out = []
        for frame in self.frames if frames is None else frames:
            if frame is None:
                out.append("none")
                continue
            x = pcm_of(frame)
            out.append("gap" if not x.any() else "speech" if x.min() < 0 else "music")
        return out

    def music_samples(self, frames: list[bytes | None] | None = None) -> np.ndarray:
        chosen = self.frames if frames is None else frames
        parts = [pcm_of(f) for f, kind in zip(chosen, self.kinds(chosen)) if kind == "music" and f is not None]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def music(*lengths_s: float) -> MusicOnHold:
    """Tracks of ramps: track i holds 1 + 10000 * i, 2 + 10000 * i, ..."""
    return MusicOnHold([Track(f"t{i}", ramp(1 + 10000 * i, int(s * RATE)).tobytes(), RATE)
                        for i, s in enumerate(lengths_s)])


def player_on_line(moh: MusicOnHold, rate: int = RATE, **kwargs: object) -> tuple[HoldPlayer, EdgeStream, Line]:
    stream = EdgeStream(rate)
    line = Line(stream)
    return HoldPlayer(stream, moh, sleep=line.sleep, **kwargs), stream, line  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- loading


def test_folder_loads_every_usable_wav_in_name_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_wav(tmp_path / "a_mono8k.wav", ramp(0, 8000), 8000)
    stereo = np.stack([np.full(16000, 1000, np.int16), np.full(16000, 3000, np.int16)], axis=1)
    write_wav(tmp_path / "b_stereo16k.WAV", stereo, 16000, channels=2)
    write_wav(tmp_path / "c_8bit.wav", np.array([128, 255, 0] * 4000, np.uint8), 11025, width=1)
    (tmp_path / "d_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    write_wav(tmp_path / "e_empty.wav", np.zeros(0, np.int16), 8000)
    (tmp_path / "notes.txt").write_text("not music")
    with caplog.at_level(logging.WARNING, logger="voicebot.hold"):
        moh = MusicOnHold.from_folder(tmp_path)

    assert not moh.generated
    assert [t.name for t in moh.tracks] == ["a_mono8k.wav", "b_stereo16k.WAV", "c_8bit.wav"]
    mono, stereo_t, eight = moh.tracks
    assert (mono.sample_rate, mono.duration_s) == (8000, 1.0) and np.array_equal(pcm_of(mono), ramp(0, 8000))
    assert stereo_t.sample_rate == 16000 and set(pcm_of(stereo_t)) == {2000}  # channels mixed
    assert eight.sample_rate == 11025 and list(pcm_of(eight)[:3]) == [0, 127 << 8, -32768]
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 2 and "d_corrupt.wav" in skipped[0] and "e_empty.wav" in skipped[1]


def test_tracks_are_resampled_once_per_rate(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", (np.sin(np.arange(8000) / 8) * 8000).astype(np.int16), 8000)
    moh = MusicOnHold.from_folder(tmp_path)
    assert not moh.is_ready(0, 48000)
    at48 = moh.pcm(0, 48000)
    assert len(at48) == 2 * 48000 and moh.is_ready(0, 48000)
    assert moh.pcm(0, 48000) is at48
    assert moh.pcm(0, 8000) == moh.tracks[0].pcm


def test_read_wav_rejects_what_it_cannot_play(tmp_path: Path) -> None:
    with pytest.raises(hold.BadWav):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(hold.BadWav):
        read_wav(write_wav(tmp_path / "blip.wav", np.ones(10, np.int16), 8000))  # 1 ms
    track = read_wav(write_wav(tmp_path / "wide.wav", (np.arange(800, dtype=np.int32) << 16), 8000, width=4))
    assert list(pcm_of(track)[:3]) == [0, 1, 2]


@pytest.mark.parametrize("where", ["empty", "missing", "only_bad"])
def test_no_usable_music_falls_back_to_chimes(tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str) -> None:
    folder = tmp_path if where != "missing" else tmp_path / "nope"
    if where == "only_bad":
        (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with caplog.at_level(logging.INFO, logger="voicebot.hold"):
        moh = MusicOnHold.from_folder(folder)
    assert moh.generated and len(moh.tracks) == 1
    fallback = [r.getMessage() for r in caplog.records if "chime" in r.getMessage()]
    assert len(fallback) == 1 and str(folder) in fallback[0]


def test_no_default_folder_falls_back_to_chimes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hold, "DEFAULT_FOLDER", tmp_path / "no-asterisk-here")
    assert MusicOnHold.from_folder(None).generated


async def test_default_folder_is_asterisks_music() -> None:
    # make test installs asterisk-moh-opsound-wav: missing here is a failure, not a skip
    assert hold.DEFAULT_FOLDER.is_dir(), "asterisk-moh-opsound-wav is not installed"
    moh = MusicOnHold.from_folder(None)
    assert not moh.generated and len(moh.tracks) >= 1
    assert all(t.sample_rate == 8000 and t.duration_s > 30 for t in moh.tracks)
    player, stream, line = player_on_line(moh, rate=48000)  # a WebRTC caller
    player.start()
    await line.until(100)
    await player.stop()
    assert None not in line.frames and len(line.frames[0] or b"") == 48000 // 50 * 2
    assert sum(pcm_of(f).any() for f in line.frames if f is not None) > 50  # music, not silence


def test_chimes_are_quiet_soft_and_no_ringback() -> None:
    rate = 16000
    x = pcm_of(chime_pattern(rate)).astype(np.float32) / 32768
    assert 8 < len(x) / rate < 20
    assert np.abs(x).max() <= 0.15  # quiet
    rms = float(np.sqrt(np.mean(x * x)))
    assert 20 * math.log10(rms) > -45  # but there: a silent line sounds like a dropped call
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    assert spectrum[freqs > 1200].sum() < 0.02 * spectrum.sum()  # soft, and fits an 8 kHz line
    assert spectrum[(freqs > 470) & (freqs < 490)].sum() < 0.01 * spectrum.sum()  # no 440 + 480 Hz pair
    windows = np.sqrt(np.mean(x[: len(x) // 1600 * 1600].reshape(-1, 1600) ** 2, axis=1))
    assert windows.min() < 0.1 * windows.max()  # notes that ring out, not a steady tone


# ---------------------------------------------------------------------------- the player


async def test_player_keeps_200_to_400_ms_queued_and_plays_seamlessly() -> None:
    player, stream, line = player_on_line(music(10.0))
    player.start()
    await line.until(150)  # 3 s
    await player.stop()
    assert line.kinds()[:150] == ["music"] * 150  # nothing missing, from the first frame
    assert max(line.pending_seen) <= 400 and min(line.pending_seen[5:150]) >= 150
    heard = line.music_samples()
    assert np.array_equal(heard, ramp(1, len(heard)))  # every sample once, in order
    assert player.underruns == 0


async def test_tracks_follow_each_other_with_a_gap_and_the_playlist_loops() -> None:
    player, stream, line = player_on_line(music(0.4, 0.6), silence_gap_ms=200)
    player.start()
    await line.until(100)
    await player.stop()
    runs: list[tuple[str, int]] = []
    for kind in line.kinds()[:100]:
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    # 0.4 s of t0, 0.2 s gap, 0.6 s of t1, 0.2 s gap, t0 again ...
    assert runs[:5] == [("music", 20), ("gap", 10), ("music", 30), ("gap", 10), ("music", 20)]
    first_of_t1 = pcm_of(line.frames[30])  # type: ignore[arg-type]
    assert first_of_t1[0] == 10001


async def test_say_cuts_the_music_then_the_music_goes_on_where_it_was() -> None:
    player, stream, line = player_on_line(music(10.0))
    player.start()
    await line.until(50)
    assert stream.playout().pending_ms >= 100  # music is queued when the announcement comes
    before = len(line.frames)
    speech = np.full(16000 * 3 // 10, SPEECH, np.int16).tobytes()  # 300 ms at 16 kHz
    await player.say(speech, 16000)
    said = line.kinds()[before:]
    assert said[:15] == ["speech"] * 15  # queued music dropped: the announcement starts at once
    assert set(said[15:]) <= {"none"} and len(said) <= 17  # say() returns once it was all heard
    assert stream.playout().pending_ms == 0
    await line.until(len(line.frames) + 50)
    await player.stop()
    assert line.kinds()[-45:] == ["music"] * 45  # and the music is back
    heard = line.music_samples()
    assert np.array_equal(heard, ramp(1, len(heard)))  # the music skipped nothing it had queued


async def test_announcements_made_together_play_one_after_the_other() -> None:
    player, stream, line = player_on_line(music(10.0))
    player.start()
    await line.until(10)
    one = np.full(1600, SPEECH, np.int16).tobytes()  # 200 ms each at 8 kHz
    two = np.full(1600, SPEECH - 1000, np.int16).tobytes()
    await asyncio.gather(player.say(one, RATE), player.say(two, RATE))
    await line.until(len(line.frames) + 20)
    await player.stop()
    values = [int(pcm_of(f)[0]) for f, k in zip(line.frames, line.kinds()) if k == "speech"]  # type: ignore[arg-type]
    assert values == [SPEECH] * 10 + [SPEECH - 1000] * 10


async def test_stop_drops_the_queue_and_start_resumes_where_the_caller_was() -> None:
    moh = music(10.0)
    player, stream, line = player_on_line(moh)
    player.start()
    await line.until(40)
    await player.stop()
    assert not player.playing and stream.playout().pending_ms == 0
    last_heard = int(line.music_samples()[-1])
    for _ in range(10):  # the line keeps running: nothing more comes
        await line.sleep(0.02)
    assert line.kinds()[-10:] == ["none"] * 10
    player.start()
    await line.until(len(line.frames) + 30)
    await player.stop()
    heard = line.music_samples()
    assert heard[0] == 1 and int(heard[np.flatnonzero(heard == last_heard)[0] + 1]) == last_heard + 1
    assert np.array_equal(heard, ramp(1, len(heard)))
    assert player.position[0] == 0 and player.position[1] == pytest.approx(len(heard) / RATE)


async def test_each_caller_has_a_position_of_their_own_on_shared_music() -> None:
    moh = music(10.0)
    a, _, line_a = player_on_line(moh)
    b, _, line_b = player_on_line(moh)
    a.start()
    await line_a.until(30)
    b.start()
    await line_b.until(10)
    await a.stop()
    await b.stop()
    assert line_b.music_samples()[0] == 1 and line_a.music_samples()[0] == 1


async def test_music_is_resampled_to_the_stream_rate() -> None:
    moh = music(2.0)
    player, stream, line = player_on_line(moh, rate=48000)
    player.start()
    await line.until(20)
    await player.stop()
    assert moh.is_ready(0, 48000)
    assert all(len(f) == 48000 // 50 * 2 for f in line.frames[:20] if f is not None)
    assert line.kinds()[:20] == ["music"] * 20


async def test_say_without_music_plays_and_returns() -> None:
    player, stream, line = player_on_line(music(1.0))
    await player.say(np.full(800, SPEECH, np.int16).tobytes(), RATE)  # 100 ms
    assert line.kinds() == ["speech"] * 5 and not player.playing
    await line.sleep(0.1)
    assert line.kinds()[5:] == ["none"] * 5


class BrittleStream(EdgeStream):
    """A stream whose transport throws once it is closed (as a torn-down peer connection may)."""

    def clear(self):  # type: ignore[no-untyped-def]
        if self.closed:
            raise RuntimeError("transport gone")
        return super().clear()

    def playout(self):  # type: ignore[no-untyped-def]
        if self.closed:
            raise RuntimeError("transport gone")
        return super().playout()


@pytest.mark.parametrize("stream_class", [EdgeStream, BrittleStream])
async def test_stop_never_raises_when_the_stream_closed_underneath(stream_class: type[EdgeStream]) -> None:
    stream = stream_class(RATE)
    line = Line(stream)
    player = HoldPlayer(stream, music(5.0), sleep=line.sleep)
    player.start()
    await line.until(10)
    await stream.close("caller_hung_up")
    for _ in range(5):
        await asyncio.sleep(0)
    await player.stop()
    await player.stop()  # twice: still quiet
    await player.say(b"\0\1" * 800, RATE)  # to a closed stream: a no-op
    player.start()  # on a closed stream: nothing starts
    assert not player.playing


async def test_with_the_real_clock() -> None:
    """The default sleep: a sender pulling every 20 ms of wall time hears unbroken music."""
    stream = EdgeStream(RATE)
    player = HoldPlayer(stream, music(5.0))
    heard: list[bytes | None] = []

    async def sender() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(40):
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
            heard.append(stream.output.pull())

    player.start()
    await asyncio.sleep(0.06)  # the first top-up
    await sender()
    await player.stop()
    assert len(heard) == 40 and heard.count(None) <= 2  # a loaded test machine may stall the loop once


# ---------------------------------------------------------------------------- announcements


@pytest.mark.parametrize(("position", "wait_s", "text"), [
    (1, None, "You are next in line."),
    (2, None, "You are number 2 in line."),
    (2, 180, "You are number 2 in line. Your expected wait is about 3 minutes."),
    (1, 20, "You are next in line. Your expected wait is less than a minute."),
    (3, 0, "You are number 3 in line. Your expected wait is less than a minute."),
    (3, 60, "You are number 3 in line. Your expected wait is about 1 minute."),
    (3, 89, "You are number 3 in line. Your expected wait is about 1 minute."),
    (3, 90, "You are number 3 in line. Your expected wait is about 2 minutes."),
    (4, 10 * 60 + 10, "You are number 4 in line. Your expected wait is about 10 minutes."),
    (4, 23 * 60, "You are number 4 in line. Your expected wait is about 25 minutes."),
    (12, 58 * 60, "You are number 12 in line. Your expected wait is about an hour."),
    (12, 3 * 3600, "You are number 12 in line. Your expected wait is more than an hour."),
    (5, float("nan"), "You are number 5 in line."),
])
def test_announcement_text(position: int, wait_s: float | None, text: str) -> None:
    assert announcement_text(position, wait_s) == text


def test_announcement_needs_a_position() -> None:
    with pytest.raises(ValueError):
        announcement_text(0, 60)
