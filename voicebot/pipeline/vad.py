"""Voice activity and end of turn.

One Silero ONNX session per process (the weights ship in the pipecat wheel); each call keeps
only its recurrent state, so a call costs a few kilobytes, not a model.  webrtcvad is the
lighter option.  ``Segmenter`` turns per-window speech probabilities into utterances: it
reports speech onset at once and the end of a turn after a silence timeout that the dialog may
lengthen while it waits for keyed-in-style digit strings.  ``voiced_s`` says how much of the
current stretch of speech was voiced: the pipeline lets the caller barge in, or stop the
no-input timer, only once that reaches ``talking_s`` (a cough or a click is shorter than a word).
A pause of ``pause_candidate_s`` yields a ``PauseCandidate``: the speech so far, for the
pipeline to transcribe while it waits out the rest of the silence (and for smart-turn to
judge).  When that pause does end the turn, the utterance is exactly the candidate's audio, so
a transcript of the candidate is the transcript of the turn.
Voiced windows are those Silero calls speech that also carry sound: its score lingers a window
or two after a click has ended, and that hangover must not make a click as long as a word.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

RATE = 16000
WINDOW = 512  # samples at 16 kHz: 32 ms, what Silero expects
WINDOW_S = WINDOW / RATE


class SpeechScorer(Protocol):
    def __call__(self, window: np.ndarray) -> float:
        """Speech probability of one 512-sample float32 window at 16 kHz."""
        ...


class SileroModel:
    """The shared ONNX session."""

    def __init__(self, path: str) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)

    def stream(self) -> "SileroStream":
        return SileroStream(self)


class SileroStream:
    """Per-call Silero state: 2×1×128 floats and 64 samples of context."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, 64), dtype=np.float32)

    def __call__(self, window: np.ndarray) -> float:
        x = np.concatenate([self.context, window.reshape(1, -1)], axis=1)
        out, self.state = self.model.session.run(
            None, {"input": x, "state": self.state, "sr": np.array(RATE, dtype=np.int64)})
        self.context = x[:, -64:]
        return float(out[0][0])


class WebrtcScorer:
    """webrtcvad: a fixed-point GMM, no model file; votes over 10 ms slices of the window."""

    def __init__(self, mode: int = 2) -> None:
        import webrtcvad

        self.vad = webrtcvad.Vad(mode)

    def __call__(self, window: np.ndarray) -> float:
        pcm = (window * 32767).astype(np.int16).tobytes()
        slices = [pcm[i:i + 320] for i in range(0, len(pcm) - 319, 320)]
        votes = [self.vad.is_speech(s, RATE) for s in slices]
        return sum(votes) / len(votes) if votes else 0.0


class SmartTurnModel:
    """smart-turn v3.2 (ONNX, from the pipecat wheel): is this utterance a finished turn?

    One session per process.  A prediction costs ~100 ms of one core, so the pipeline runs it
    in a worker thread, once per pause, never per audio frame."""

    SAMPLES = 8 * RATE

    def __init__(self, path: str) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)

    def complete_probability(self, pcm: bytes) -> float:
        from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)[-self.SAMPLES:] / 32768.0
        audio = np.pad(audio, (self.SAMPLES - len(audio), 0))
        features = compute_whisper_log_mel_features(audio, do_normalize=True)
        return float(self.session.run(None, {"input_features": features[None]})[0][0].item())


@dataclass
class SegmenterConfig:
    threshold: float = 0.5
    start_s: float = 0.064  # speech needed before onset is reported
    # voiced speech before the caller counts as talking (barge-in, no-input timer): a voiced
    # burst of 120-150 ms makes at most 5 voiced windows (0.16 s), a one-syllable word 7-12
    talking_s: float = 0.18
    voiced_floor_dbfs: float = -50.0  # a window quieter than this is not voiced, whatever the VAD says
    end_of_turn_s: float = 0.25  # silence that ends a turn (with smart turn: the fallback)
    pause_candidate_s: float | None = None  # silence after which to transcribe ahead (and ask smart turn)
    preroll_s: float = 0.3
    min_utterance_s: float = 0.2
    max_utterance_s: float = 20.0


@dataclass
class SpeechStarted:
    at_sample: int


@dataclass
class Utterance:
    pcm: bytes  # 16 kHz, including pre-roll, excluding the trailing silence
    start_sample: int
    end_sample: int  # the last speech sample
    pause_id: int = 0  # the pause candidate whose audio this is, byte for byte; 0: none


@dataclass
class PauseCandidate:
    """A pause long enough to transcribe ahead or to ask an end-of-turn model; end the turn
    there early with ``Segmenter.end_turn()``."""

    pcm: bytes
    pause_id: int


@dataclass
class Segmenter:
    """Pure: PCM in, SpeechStarted / Utterance out, positions counted in samples."""

    scorer: SpeechScorer
    config: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        self._pending = b""
        self._position = 0  # samples consumed
        self._speaking = False
        self._speech_run = 0
        self._silence_run = 0
        self._voiced = 0  # voiced windows since the onset
        self._voiced_run = 0  # voiced windows in the speech run before the onset
        self._floor = 10 ** (self.config.voiced_floor_dbfs / 20)
        self._preroll: deque[bytes] = deque(maxlen=max(1, int(self.config.preroll_s / WINDOW_S)))
        self._utterance: list[bytes] = []
        self._start = 0
        self._onset = 0
        self._pause_id = 0
        self._candidate_frames: int | None = None  # windows in the candidate, while its pause lasts
        self._last_speech = 0
        self._lock = threading.Lock()
        self.end_of_turn_s = self.config.end_of_turn_s

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def voiced_s(self) -> float:
        """Voiced time in the current stretch of speech (the last one until the next onset)."""
        return self._voiced * WINDOW_S

    @property
    def position(self) -> int:
        """Samples scored so far."""
        return self._position

    def feed(self, pcm: bytes) -> list[SpeechStarted | Utterance | PauseCandidate]:
        events: list[SpeechStarted | Utterance | PauseCandidate] = []
        data = self._pending + pcm
        step = WINDOW * 2
        usable = len(data) - len(data) % step
        self._pending = data[usable:]
        for offset in range(0, usable, step):
            chunk = data[offset:offset + step]
            window = np.frombuffer(chunk, dtype=np.int16).astype(np.float32) / 32768.0
            speech = self.scorer(window) >= self.config.threshold
            sound = float(np.sqrt(np.mean(window * window))) > self._floor
            self._position += WINDOW
            events += self._step(chunk, speech, speech and sound)
        return events

    def end_turn(self, pause_id: int) -> list[Utterance]:
        """Pause ``pause_id`` was judged the end of the turn (by smart-turn, or by what the
        caller said up to it): end the turn now, unless the caller has spoken again since."""
        if self._speaking and self._candidate_frames is not None and pause_id == self._pause_id:
            return [e for e in self._finish() if isinstance(e, Utterance)]
        return []

    def _step(self, chunk: bytes, speech: bool, voiced: bool) -> list[SpeechStarted | Utterance | PauseCandidate]:
        cfg = self.config
        if not self._speaking:
            self._preroll.append(chunk)
            self._speech_run = self._speech_run + 1 if speech else 0
            self._voiced_run = self._voiced_run + voiced if speech else 0
            if self._speech_run * WINDOW_S >= cfg.start_s:
                self._speaking = True
                self._silence_run = 0
                self._utterance = list(self._preroll)
                self._start = self._position - len(self._utterance) * WINDOW
                self._onset = self._position - self._speech_run * WINDOW
                self._last_speech = self._position
                self._voiced = self._voiced_run
                return [SpeechStarted(self._onset)]
            return []
        self._utterance.append(chunk)
        self._voiced += voiced
        if speech:
            self._silence_run = 0
            self._last_speech = self._position
            self._candidate_frames = None
        else:
            self._silence_run += 1
            candidate = cfg.pause_candidate_s
            if candidate is not None and self._silence_run == max(1, round(candidate / WINDOW_S)):
                self._pause_id += 1
                self._candidate_frames = len(self._utterance)
                return [PauseCandidate(b"".join(self._utterance), self._pause_id)]
        too_long = (self._position - self._start) / RATE >= cfg.max_utterance_s
        if self._silence_run * WINDOW_S >= self.end_of_turn_s or too_long:
            return self._finish()
        return []

    def _finish(self) -> list[SpeechStarted | Utterance]:
        self._speaking = False
        self._speech_run = self._voiced_run = 0
        pause_id = 0
        if self._candidate_frames is not None:  # the candidate's pause ended the turn: its audio
            frames = self._utterance[: self._candidate_frames]
            pause_id = self._pause_id
        else:  # keep ~200 ms of what the VAD called silence: soft word endings ("seven") live there
            trailing = max(0, self._silence_run - int(0.2 / WINDOW_S))
            frames = self._utterance[: len(self._utterance) - trailing] if trailing else self._utterance
        self._silence_run = 0
        self._candidate_frames = None
        self._utterance = []
        self._preroll.clear()
        if (self._last_speech - self._onset) / RATE < self.config.min_utterance_s:
            return []
        return [Utterance(b"".join(frames), self._start, self._last_speech, pause_id)]
