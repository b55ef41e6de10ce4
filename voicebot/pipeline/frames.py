"""voicebot's own pipecat frames: what flows between the per-call processors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipecat.frames.frames import DataFrame, SystemFrame

from voicebot.nlu.dialog import Transfer


@dataclass
class UtteranceFrame(DataFrame):
    """One caller turn, cut by the end-of-turn detector."""

    pcm: bytes = b""
    sample_rate: int = 16000
    speech_end: float = 0.0  # monotonic time of the last speech sample
    turn_end: float = 0.0  # monotonic time the turn was ended
    ended_by: str = "silence"  # silence | smart_turn | words (what was said was a whole request)
    pause_id: int = 0  # the PauseFrame with this very audio, if any


@dataclass
class PauseFrame(SystemFrame):
    """The caller paused: their speech so far, to transcribe ahead of the end of the turn.
    A system frame, so the guess starts even while an earlier utterance is being decoded."""

    pcm: bytes = b""
    sample_rate: int = 16000
    pause_id: int = 0


@dataclass
class EndTurnFrame(SystemFrame):
    """Upstream, to the turn taker: what was said up to pause ``pause_id`` is a whole request;
    end the turn there unless the caller has spoken since."""

    pause_id: int = 0


@dataclass
class CallerTextFrame(DataFrame):
    text: str = ""
    confidence: float = 0.0
    language: str = "en"
    speech_end: float = 0.0
    transcript_at: float = 0.0
    asr_window_s: float = 0.0
    turn_end: float = 0.0  # 0: not known (a transcript without a turn taker before it)
    ended_by: str = "silence"
    guessed: bool = False  # transcribed during the pause, before the turn ended


@dataclass
class CallerKeyFrame(DataFrame):
    digit: str = ""


@dataclass
class RecognitionFailedFrame(DataFrame):
    """In place of a ``CallerTextFrame``: the recogniser raised, timed out or answered something
    that is not a transcript.  The dialog re-prompts rather than wait for words that never come."""

    reason: str = "error"  # error | timeout | bad_result
    speech_end: float = 0.0


@dataclass
class CallerSpeechStartedFrame(SystemFrame):
    """The caller has been speaking long enough to be a word, not a cough or a click (the
    segmenter's ``talking_s`` of voiced speech): barge-in and the no-input timer act on this.
    System frame so it overtakes queued audio."""

    at: float = 0.0


@dataclass
class CallerSpeechDiscardedFrame(SystemFrame):
    """Speech that counted as talking ended without an utterance to transcribe (too short): no
    words are coming, so the dialog waits for an answer again."""


@dataclass
class ExpectFrame(SystemFrame):
    """Sent upstream by the dialog: what kind of answer it waits for (end-of-turn tuning)."""

    expect: str = "intent"


@dataclass
class BotSpeechFrame(DataFrame):
    text: str = ""
    interruptible: bool = True
    prompt: str | None = None
    turn: int = 0


@dataclass
class PromptFailedFrame(SystemFrame):
    """Sent upstream by the synthesiser: a prompt could not be (wholly) spoken."""

    turn: int = 0
    text: str = ""
    prompt: str | None = None  # the prompt's id: what logs and records name (the text may hold slot values)
    reason: str = "error"  # error | timeout | no_audio


@dataclass
class PromptSkippedFrame(DataFrame):
    """Sent downstream in place of a prompt that produced no audio at all: the output counts
    the prompt as played, so the turn still ends."""

    turn: int = 0


@dataclass
class BotAudioFrame(DataFrame):
    pcm: bytes = b""
    sample_rate: int = 16000
    text: str = ""
    turn: int = 0
    first: bool = False
    last: bool = False  # the prompt's end: a frame of its own, without audio
    cached: bool = False


@dataclass
class BotDoneSpeakingFrame(SystemFrame):
    """Sent upstream by the output when everything queued has been played."""

    turn: int = 0
    at: float = 0.0
    prompts_done: int = 0


@dataclass
class BotHeardFrame(SystemFrame):
    """Sent upstream at barge-in: how much of the prompt the caller heard."""

    turn: int = 0
    text: str = ""
    heard_text: str = ""
    played_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class FirstAudioFrame(SystemFrame):
    """Sent upstream when a turn's first bot audio reaches the edge."""

    turn: int = 0
    at: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class BotEnd:
    """Why the bot let go of a call, as a value the call's owner acts on (nobody parses the
    stream's close reason): ``hangup`` (``reason`` from the dialog), ``transfer`` (``transfer``
    says where), ``caller_left``, or ``error``."""

    kind: Literal["hangup", "transfer", "caller_left", "error"]
    reason: str = ""
    transfer: Transfer | None = None

    @property
    def outcome(self) -> str:
        """The record's outcome when the call ends here."""
        return {"transfer": "transferred", "caller_left": "caller_hung_up"}.get(self.kind, self.reason or self.kind)


@dataclass
class EndCallFrame(DataFrame):
    """Queued after the last prompt: the output closes the stream once it has been played."""

    end: BotEnd = BotEnd("hangup")
