"""The segmenter's pause candidates, on a scripted scorer: a turn that ends at a candidate's
pause is that candidate's audio byte for byte (so a transcript made during the pause is the
turn's transcript), and speech after the pause makes the candidate stale."""

from __future__ import annotations

import numpy as np

from voicebot.pipeline.vad import WINDOW, PauseCandidate, Segmenter, SegmenterConfig, SpeechStarted, Utterance


class Script:
    """Speech where the window is loud: the scorer under the segmenter, not under test."""

    def __call__(self, window: np.ndarray) -> float:
        return 1.0 if float(np.abs(window).max()) > 0.05 else 0.0


def windows(n: int, loud: bool, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    level = 8000 if loud else 30
    return (rng.uniform(-1, 1, n * WINDOW) * level).astype(np.int16).tobytes()


def segmenter(**config: float) -> Segmenter:
    return Segmenter(Script(), SegmenterConfig(end_of_turn_s=0.25, pause_candidate_s=0.1, **config))


def test_a_turn_ended_by_its_pause_is_the_candidates_audio() -> None:
    seg = segmenter()
    events = seg.feed(windows(20, True, 1) + windows(12, False, 2))
    pauses = [e for e in events if isinstance(e, PauseCandidate)]
    turns = [e for e in events if isinstance(e, Utterance)]
    assert isinstance(events[0], SpeechStarted) and len(pauses) == 1 and len(turns) == 1
    assert turns[0].pcm == pauses[0].pcm and turns[0].pause_id == pauses[0].pause_id == 1


def test_speech_after_the_pause_makes_its_candidate_stale() -> None:
    seg = segmenter()
    first = seg.feed(windows(20, True, 1) + windows(5, False, 2))
    (pause,) = [e for e in first if isinstance(e, PauseCandidate)]
    assert not [e for e in first if isinstance(e, Utterance)]  # 5 quiet windows: not the end of the turn
    seg.feed(windows(10, True, 3))
    assert seg.end_turn(pause.pause_id) == []  # the caller went on: too late to end it there
    rest = seg.feed(windows(12, False, 4))
    (second,) = [e for e in rest if isinstance(e, PauseCandidate)]
    (turn,) = [e for e in rest if isinstance(e, Utterance)]
    assert second.pause_id == 2 and turn.pause_id == 2 and turn.pcm == second.pcm
    assert len(turn.pcm) > len(pause.pcm)  # both stretches of speech, one turn


def test_end_turn_at_a_pause_cuts_there_and_only_once() -> None:
    seg = segmenter()
    events = seg.feed(windows(20, True, 1) + windows(4, False, 2))
    (pause,) = [e for e in events if isinstance(e, PauseCandidate)]
    (turn,) = seg.end_turn(pause.pause_id)
    assert turn.pcm == pause.pcm and turn.pause_id == pause.pause_id
    assert not seg.speaking and seg.end_turn(pause.pause_id) == []
    assert not [e for e in seg.feed(windows(12, False, 3)) if isinstance(e, Utterance)]  # no second turn


def test_without_candidates_a_turn_keeps_its_soft_ending() -> None:
    seg = Segmenter(Script(), SegmenterConfig(end_of_turn_s=0.25))
    (turn,) = [e for e in seg.feed(windows(20, True, 1) + windows(12, False, 2)) if isinstance(e, Utterance)]
    assert turn.pause_id == 0
    assert len(turn.pcm) // 2 // WINDOW == 20 + 6  # the speech and ~200 ms of what the VAD called silence
