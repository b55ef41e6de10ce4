"""The call recorder on its own: stereo layout, wall-clock alignment, silence while a sensitive
slot is asked for, deletion on opt-out, a WAV that stays playable mid-call, and the media tap
that feeds it."""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voicebot.media import AudioChunk, Dtmf, EdgeStream
from voicebot.records.recording import Recorder, Recordings, recording_rate
from voicebot.records.store import RecordStore


@dataclass
class FakePrivacy:
    records: bool = True
    opted_out: bool = False
    paused: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tone(value: int, samples: int) -> bytes:
    return np.full(samples, value, dtype=np.int16).tobytes()


def channels(path: Path) -> tuple[int, np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return w.getframerate(), data[0::2], data[1::2]


def feed(recorder: Recorder, clock: Clock, seconds: float, caller: int | None, played: int | None,
         rate: int = 8000) -> None:
    """20 ms of each side per tick, as an edge would hand them over."""
    n = rate // 50
    for _ in range(round(seconds * 50)):
        clock.now += 0.02
        if caller is not None:
            recorder.caller_audio(tone(caller, n), rate)
        if played is not None:
            recorder.played_audio(tone(played, n), rate)


def test_caller_left_played_right_at_the_legs_rate(tmp_path: Path) -> None:
    clock = Clock()
    recorder = Recorder(tmp_path / "c.wav", 8000, FakePrivacy(), clock=clock)
    feed(recorder, clock, 1.0, caller=1000, played=-2000)
    info = recorder.close()
    assert info is not None and info.sample_rate == 8000 and info.channels == 2
    rate, left, right = channels(tmp_path / "c.wav")
    assert rate == 8000 and len(left) == 8000 and info.duration_s == 1.0
    assert (left == 1000).all() and (right == -2000).all()
    assert recording_rate(8000) == 8000 and recording_rate(16000) == recording_rate(48000) == 16000


def test_a_quiet_channel_is_silence_and_late_audio_lands_where_it_was_played(tmp_path: Path) -> None:
    clock = Clock()
    recorder = Recorder(tmp_path / "c.wav", 8000, FakePrivacy(), clock=clock)
    feed(recorder, clock, 0.5, caller=1000, played=None)  # the bot is quiet for half a second
    feed(recorder, clock, 0.2, caller=1000, played=-2000)  # then speaks for 200 ms
    feed(recorder, clock, 0.3, caller=None, played=None)
    clock.now += 0.02
    recorder.caller_audio(tone(1000, 160), 8000)
    recorder.close()
    _, left, right = channels(tmp_path / "c.wav")
    spoken = np.flatnonzero(right)
    assert abs(spoken[0] / 8000 - 0.5) <= 0.03 and abs((spoken[-1] + 1) / 8000 - 0.7) <= 0.03
    assert len(spoken) == 1600  # all of it, nothing dropped
    assert not left[7200:8000].any() and (left[-160:] == 1000).all()  # the caller's gap too, by the clock
    assert len(left) == len(right)


def test_paused_while_a_sensitive_slot_is_asked_both_channels_silent(tmp_path: Path) -> None:
    clock, privacy = Clock(), FakePrivacy()
    recorder = Recorder(tmp_path / "c.wav", 8000, privacy, clock=clock)
    feed(recorder, clock, 0.4, caller=1000, played=-2000)
    privacy.paused = True
    feed(recorder, clock, 0.6, caller=1000, played=-2000)
    privacy.paused = False
    feed(recorder, clock, 0.4, caller=1000, played=-2000)
    info = recorder.close()
    _, left, right = channels(tmp_path / "c.wav")
    assert info is not None and info.paused_s == 0.6
    for channel, value in ((left, 1000), (right, -2000)):
        assert (channel[:3200] == value).all() and not channel[3200:8000].any() and (channel[8000:] == value).all()


def test_opting_out_deletes_the_file_and_records_nothing_more(tmp_path: Path) -> None:
    clock, privacy, why = Clock(), FakePrivacy(), []
    recorder = Recorder(tmp_path / "c.wav", 8000, privacy, clock=clock, on_discard=why.append)
    feed(recorder, clock, 0.5, caller=1000, played=-2000)
    assert (tmp_path / "c.wav").exists()
    privacy.opted_out = True
    feed(recorder, clock, 0.1, caller=1000, played=-2000)
    assert not (tmp_path / "c.wav").exists() and why == ["caller_opted_out"]
    assert recorder.close() is None and recorder.state == "discarded"


def test_the_file_is_playable_before_the_call_ends(tmp_path: Path) -> None:
    clock = Clock()
    recorder = Recorder(tmp_path / "c.wav", 16000, FakePrivacy(), clock=clock)
    feed(recorder, clock, 1.6, caller=1000, played=-2000, rate=48000)  # WebRTC: 48 kHz in
    with wave.open(str(tmp_path / "c.wav")) as w:  # as a crash would leave it
        assert w.getframerate() == 16000 and w.getnchannels() == 2 and w.getnframes() >= 16000
    recorder.close()
    rate, left, right = channels(tmp_path / "c.wav")
    assert rate == 16000 and abs(len(left) / 16000 - 1.6) <= 0.1
    assert abs(int(np.median(left[8000:16000])) - 1000) <= 2 and abs(int(np.median(right[8000:16000])) + 2000) <= 2


class ListeningTap:
    def __init__(self) -> None:
        self.heard: list[tuple[str, int, int]] = []

    def caller_audio(self, pcm: bytes, rate: int) -> None:
        self.heard.append(("caller", len(pcm), rate))

    def played_audio(self, pcm: bytes, rate: int) -> None:
        self.heard.append(("played", len(pcm), rate))


class BrokenTap:
    def caller_audio(self, pcm: bytes, rate: int) -> None:
        raise RuntimeError("boom")

    played_audio = caller_audio


def test_an_edge_streams_taps_hear_the_caller_and_what_is_played(caplog: pytest.LogCaptureFixture) -> None:
    stream = EdgeStream(8000)
    good = ListeningTap()
    stream.add_tap(BrokenTap())
    stream.add_tap(good)
    stream.put(AudioChunk(bytes(320), 8000))
    stream.put(Dtmf("5"))
    stream.output.write(bytes(640))
    with caplog.at_level(logging.ERROR):
        assert stream.output.pull() == bytes(320)
        stream.put(AudioChunk(bytes(320), 8000))
    assert good.heard == [("caller", 320, 8000), ("played", 320, 8000), ("caller", 320, 8000)]
    assert stream._events.qsize() == 3  # a failing tap takes nothing from the call
    assert stream.tap_errors == 3 and len([r for r in caplog.records if "media tap" in r.message]) <= 1
    for tap in list(stream.taps):
        stream.remove_tap(tap)
    assert stream.output.on_play is None


def test_recordings_write_the_path_and_duration_to_the_record(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "calls.sqlite3")
    recordings = Recordings(tmp_path / "recordings", store)
    kept, gone = store.start_call("sip", "+1555"), store.start_call("sip", "+1666")
    privacy = {kept: FakePrivacy(), gone: FakePrivacy()}
    streams = {call: EdgeStream(8000) for call in privacy}
    recorders = {call: recordings.start(call, streams[call], SimpleNamespace(privacy=privacy[call])) for call in privacy}
    assert store.recording(kept)["path"] == str(tmp_path / "recordings" / f"{kept}.wav")
    for _ in range(25):
        for call, stream in streams.items():
            stream.put(AudioChunk(tone(500, 160), 8000))
            stream.output.write(tone(-500, 160))
            stream.output.pull()
    privacy[gone].opted_out = True
    for call, recorder in recorders.items():
        assert recorder is not None
        recordings.finish(call, recorder, streams[call])
    record = store.recording(kept)
    assert record is not None and record["duration_s"] > 0 and record["channels"] == 2 and record["sample_rate"] == 8000
    assert Path(record["path"]).is_file() and not streams[kept].taps
    assert store.recording(gone) is None and not (tmp_path / "recordings" / f"{gone}.wav").exists()
    assert [e["data"] for e in store.get_call(gone)["events"] if e["kind"] == "recording_deleted"] == [
        {"reason": "caller_opted_out"}]
    unrecorded = recordings.start("x", EdgeStream(8000), SimpleNamespace(privacy=FakePrivacy(records=False)))
    assert unrecorded is None
    store.close()
