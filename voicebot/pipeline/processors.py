"""The per-call pipecat processors between the transport ends: turn taking, recognition,
dialog and synthesis.  Each holds only per-call state; models live in the shared engines.

Nothing here may leave a call waiting: a recogniser or a synthesiser that raises, hangs or
answers nonsense is logged, counted (``voicebot_pipeline_failures_total``) and written to the
call's record, and the dialog re-prompts the caller; a lookup always comes back with a result
(``textchat.resolve``); and the no-input timer runs whenever the bot waits for an answer and
the caller is not talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, InterruptionFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from prometheus_client import Counter

from voicebot.backends import Backend
from voicebot.nlu.dialog import (Ask, CallerHungUp, CallStarted, Dialog, DtmfPressed, Event, Hangup, Lookup,
                                 NoInput, Say, Transfer, UserSaid)
from voicebot.pipeline.asr import WhisperEngine
from voicebot.pipeline.frames import (BotAudioFrame, BotDoneSpeakingFrame, BotEnd, BotHeardFrame, BotSpeechFrame,
                                      CallerKeyFrame, CallerSpeechDiscardedFrame, CallerSpeechStartedFrame,
                                      CallerTextFrame, EndCallFrame, EndTurnFrame, ExpectFrame, FirstAudioFrame,
                                      PauseFrame, PromptFailedFrame, PromptSkippedFrame, RecognitionFailedFrame,
                                      UtteranceFrame)
from voicebot.pipeline.latency import TurnClock
from voicebot.pipeline.tts import PiperEngine
from voicebot.pipeline.vad import RATE, PauseCandidate, Segmenter, SmartTurnModel, SpeechStarted, Utterance
from voicebot.textchat import resolve

log = logging.getLogger(__name__)

# How long the caller may think before answering, by what the bot asked for.
END_OF_TURN_BY_EXPECT = {"digits": 0.9, "amount": 0.7, "date": 0.7}
ASR_TIMEOUT_S = 10.0  # one utterance, queueing included: beyond this the caller is re-prompted
TTS_TIMEOUT_S = 10.0  # one sentence of a prompt
FAILURES = Counter("voicebot_pipeline_failures_total",
                   "Recognition (stage asr) and synthesis (stage tts) failures; the caller is re-prompted",
                   ["stage", "reason"])


class TurnProcessor(FrameProcessor):
    """Turn taking: the caller is talking (barge-in, no-input timer) once the segmenter has
    heard ``talking_s`` of voiced speech, and a whole utterance goes on at the end of the turn.

    A burst shorter than that (a cough, a click) neither interrupts the bot nor stops the
    timer; speech that did count but ends without an utterance says so, so the dialog waits
    for an answer again.  With ``guess_ahead`` every pause candidate goes downstream as a
    ``PauseFrame`` to be transcribed while the silence lasts; an ``EndTurnFrame`` coming back
    ends the turn at that pause."""

    def __init__(self, segmenter: Segmenter, smart_turn: SmartTurnModel | None = None, guess_ahead: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segmenter = segmenter
        self.smart_turn = smart_turn
        self.guess_ahead = guess_ahead
        self.default_end_of_turn = segmenter.end_of_turn_s
        self.talking_s = segmenter.config.talking_s
        self._in_speech = False  # an onset with no utterance yet
        self._talking = False  # ... and CallerSpeechStartedFrame has gone out for it

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            now = time.monotonic()
            for event in self.segmenter.feed(frame.audio):
                if isinstance(event, SpeechStarted):
                    await self._speech_over()  # a short burst that ended within this same frame
                    self._in_speech = True
                elif isinstance(event, Utterance):
                    await self._utterance(event, now, "silence")
                elif isinstance(event, PauseCandidate):
                    if self.guess_ahead:
                        await self.push_frame(PauseFrame(pcm=event.pcm, sample_rate=RATE, pause_id=event.pause_id))
                    if self.smart_turn is not None:
                        self.create_task(self._judge(event), name="smart-turn")
            if self._in_speech:
                await self._check_talking(now)
                if not self.segmenter.speaking:  # too short to be an utterance
                    await self._speech_over()
            return
        if isinstance(frame, ExpectFrame):
            self.segmenter.end_of_turn_s = END_OF_TURN_BY_EXPECT.get(frame.expect, self.default_end_of_turn)
            return
        if isinstance(frame, EndTurnFrame):
            for utterance in self.segmenter.end_turn(frame.pause_id):
                await self._utterance(utterance, time.monotonic(), "words")
            return
        await self.push_frame(frame, direction)

    async def _check_talking(self, now: float) -> None:
        if self._in_speech and not self._talking and self.segmenter.voiced_s >= self.talking_s:
            self._talking = True
            await self.push_frame(CallerSpeechStartedFrame(at=now))

    async def _speech_over(self) -> None:
        """The speech since the last onset ended without an utterance."""
        talking = self._talking
        self._in_speech = self._talking = False
        if talking:
            await self.push_frame(CallerSpeechDiscardedFrame())

    async def _utterance(self, event: Utterance, now: float, ended_by: str) -> None:
        await self._check_talking(now)
        self._in_speech = self._talking = False
        lag = (self.segmenter.position - event.end_sample) / RATE
        await self.push_frame(UtteranceFrame(pcm=event.pcm, sample_rate=RATE, speech_end=now - lag, turn_end=now,
                                             ended_by=ended_by, pause_id=event.pause_id))

    async def _judge(self, pause: PauseCandidate) -> None:
        """Ask smart-turn off the event loop; end the turn early if it says complete."""
        assert self.smart_turn is not None
        probability = await asyncio.to_thread(self.smart_turn.complete_probability, pause.pcm)
        if probability >= 0.5:
            for utterance in self.segmenter.end_turn(pause.pause_id):
                await self._utterance(utterance, time.monotonic(), "smart_turn")


@dataclass
class _Guess:
    pcm: bytes
    task: asyncio.Task[Any]


class Recognizer(FrameProcessor):
    """Utterance in, transcript out; a recogniser that raises, hangs (``ASR_TIMEOUT_S``) or
    answers something that is not a transcript yields a ``RecognitionFailedFrame``.

    A ``PauseFrame`` starts a guess: its audio is transcribed while the caller stays silent.
    The utterance that ends the turn at that pause carries the same audio and takes the
    guess's transcript instead of a decode of its own; a guess the caller talked over is
    dropped as soon as they pause again or the turn ends (and, if still queued, never
    decoded).  When ``complete`` says a guess is a whole request, an ``EndTurnFrame`` goes
    upstream so the turn ends without the rest of the silence."""

    KEEP_GUESSES = 3

    def __init__(self, engine: WhisperEngine, complete: Callable[[str], bool] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.complete = complete
        self._guesses: dict[int, _Guess] = {}

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, PauseFrame):
            self._guess(frame)
            return
        if not isinstance(frame, UtteranceFrame):
            await self.push_frame(frame, direction)
            return
        guess = self._guesses.pop(frame.pause_id, None) if frame.pause_id else None
        self._drop_guesses(within=frame.pcm)  # this turn's earlier pauses: the caller went on after them
        guessed = guess is not None and guess.pcm == frame.pcm
        if guess is not None and not guessed:
            guess.task.cancel()
        try:
            pending = guess.task if guess is not None and guessed else self.engine.transcribe(frame.pcm, frame.sample_rate)
            result = await asyncio.wait_for(pending, ASR_TIMEOUT_S)
        except TimeoutError:
            await self._failed("timeout", frame, f"no transcript within {ASR_TIMEOUT_S:g} s")
            return
        except Exception as exc:
            await self._failed("error", frame, repr(exc))
            return
        fields = _transcript_fields(result)
        if fields is None:
            await self._failed("bad_result", frame, f"not a transcript: {result!r:.200}")
            return
        text, confidence, language, window_s = fields
        await self.push_frame(CallerTextFrame(text=text, confidence=confidence, language=language,
                                              speech_end=frame.speech_end, transcript_at=time.monotonic(),
                                              asr_window_s=window_s, turn_end=frame.turn_end,
                                              ended_by=frame.ended_by, guessed=guessed))

    def _guess(self, frame: PauseFrame) -> None:
        self._drop_guesses(within=frame.pcm)  # an earlier pause of this same turn: the caller went on
        task = asyncio.ensure_future(self.engine.transcribe(frame.pcm, frame.sample_rate))
        self._guesses[frame.pause_id] = _Guess(frame.pcm, task)
        while len(self._guesses) > self.KEEP_GUESSES:
            self._guesses.pop(next(iter(self._guesses))).task.cancel()
        self.create_task(self._judge_guess(frame.pause_id, task), name="asr-guess")

    async def _judge_guess(self, pause_id: int, task: asyncio.Task[Any]) -> None:
        """Wait for a guess (and so collect its failure, if any); end the turn early if the
        guess is still current and says a whole request."""
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None or self.complete is None:
            return
        current = self._guesses.get(pause_id)
        fields = _transcript_fields(task.result())
        if current is not None and current.task is task and fields is not None and self.complete(fields[0]):
            await self.push_frame(EndTurnFrame(pause_id=pause_id), FrameDirection.UPSTREAM)

    def _drop_guesses(self, within: bytes | None = None) -> None:
        """Cancel the guesses whose audio starts ``within`` (earlier pauses of the same turn),
        or all of them; a guess for a later turn's pause, already here, is kept."""
        for pause_id, guess in list(self._guesses.items()):
            if within is None or within.startswith(guess.pcm):
                del self._guesses[pause_id]
                guess.task.cancel()

    async def cleanup(self) -> None:
        self._drop_guesses()
        await super().cleanup()

    async def _failed(self, reason: str, frame: UtteranceFrame, detail: str) -> None:
        log.warning("speech recognition failed (%s) for a %.1f s utterance: %s", reason,
                    len(frame.pcm) / 2 / frame.sample_rate, detail)
        FAILURES.labels("asr", reason).inc()
        await self.push_frame(RecognitionFailedFrame(reason=reason, speech_end=frame.speech_end))


def _transcript_fields(result: Any) -> tuple[str, float, str, float] | None:
    """(text, confidence, language, window) of a recogniser's answer, or None if it is not a transcript."""
    try:
        text, language = result.text, result.language
        confidence, window_s = float(result.confidence), float(result.window_s)
    except (AttributeError, TypeError, ValueError):
        return None
    if not (isinstance(text, str) and isinstance(language, str) and math.isfinite(confidence)
            and 0.0 <= confidence <= 1.0 and math.isfinite(window_s)):
        return None
    return text, confidence, language, window_s


class Synthesizer(FrameProcessor):
    """Prompt text in, audio out.  A voice that raises, hangs (``TTS_TIMEOUT_S`` a sentence) or
    yields nothing ends the prompt with what it did produce (or a ``PromptSkippedFrame``) and
    tells the dialog upstream (``PromptFailedFrame``): the turn ends and the call goes on."""

    def __init__(self, engine: PiperEngine, sample_rate: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.sample_rate = sample_rate

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, BotSpeechFrame):
            await self.push_frame(frame, direction)
            return
        spoken = False
        cached = False
        reason: str | None = None
        chunks = None
        try:
            cached = self.engine.is_cached(frame.text, self.sample_rate)
            chunks = self.engine.stream(frame.text, self.sample_rate)
            while True:  # each chunk goes out as soon as it is made: the caller waits for the first
                try:
                    pcm = await asyncio.wait_for(anext(chunks), TTS_TIMEOUT_S)
                except StopAsyncIteration:
                    break
                await self.push_frame(self._audio(frame, pcm, not spoken, False, cached))
                spoken = True
        except TimeoutError:
            reason, detail = "timeout", f"no audio within {TTS_TIMEOUT_S:g} s"
        except Exception as exc:
            reason, detail = "error", repr(exc)
        finally:
            if chunks is not None:
                with contextlib.suppress(Exception):
                    await chunks.aclose()
        if spoken:  # the prompt's end, without audio of its own
            await self.push_frame(self._audio(frame, b"", False, True, cached))
        elif reason is None:
            reason, detail = "no_audio", "the voice produced no audio"
        if reason is None:
            return
        log.warning("speech synthesis failed (%s) for prompt %s of turn %d: %s", reason, frame.prompt or "(no id)",
                    frame.turn, detail)
        FAILURES.labels("tts", reason).inc()
        await self.push_frame(PromptFailedFrame(turn=frame.turn, text=frame.text, prompt=frame.prompt, reason=reason),
                              FrameDirection.UPSTREAM)
        if not spoken:
            await self.push_frame(PromptSkippedFrame(turn=frame.turn))

    def _audio(self, frame: BotSpeechFrame, pcm: bytes, first: bool, last: bool, cached: bool) -> BotAudioFrame:
        return BotAudioFrame(pcm=pcm, sample_rate=self.sample_rate, text=frame.text, turn=frame.turn,
                             first=first, last=last, cached=cached)


class DialogProcessor(FrameProcessor):
    """Frames ⇄ the pure Dialog; barge-in policy; silence timer; the call record.

    The no-input timer runs while the dialog waits for an answer, the bot is quiet and the
    caller is not talking: it starts when the bot's question has been played, stops when the
    caller talks or keys, and starts again whenever that comes to nothing (speech too short to
    transcribe, an empty transcript, a key that only collects a digit).  A recognition failure,
    and a question the synthesiser could not speak, re-prompt at once (``NoInput``)."""

    def __init__(self, dialog: Dialog, backend: Backend, clock: TurnClock, call_id: str,
                 no_input_s: float = 7.0, first_event: Event | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dialog = dialog
        self.first_event = first_event or CallStarted()  # TransferFailed when the call comes back
        self.backend = backend
        self.clock = clock
        self.call_id = call_id
        self.no_input_s = no_input_s
        self.turn = 0
        self._prompts_in_turn = 0
        self._speaking = False
        self._interruptible = True
        self._waiting_answer = False
        self._asked: str | None = None  # the text of this turn's question, if it asked one
        self._reprompt = False  # this turn's question was not spoken: ask again once the turn ends
        self._no_input_task: asyncio.Task[None] | None = None
        self._started = False
        self.end: BotEnd | None = None  # set when the bot lets go of the call

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            if not self._started:
                self._started = True
                await self._run(self.first_event)
        elif isinstance(frame, CallerSpeechStartedFrame):
            await self._caller_active(frame.at, "speech")
        elif isinstance(frame, CallerSpeechDiscardedFrame):
            self._wait_again()
        elif isinstance(frame, CallerTextFrame):
            if frame.text.strip():
                self.clock.caller_said(frame.text, frame.speech_end, frame.transcript_at, frame.confidence,
                                       frame.asr_window_s, frame.turn_end, frame.ended_by, frame.guessed)
                await self._run(UserSaid(frame.text, frame.confidence, frame.language))
            else:
                self._wait_again()  # noise, not speech: keep waiting
        elif isinstance(frame, RecognitionFailedFrame):
            self.clock.store.event(self.call_id, "asr_failed", {"reason": frame.reason})
            if self._waiting_answer and not self._speaking and not self.dialog.ended:
                await self._run(NoInput())  # the caller said something nobody could hear: ask again
        elif isinstance(frame, PromptFailedFrame):
            self.clock.store.event(self.call_id, "tts_failed", {"turn": frame.turn, "prompt": frame.prompt,
                                                               "reason": frame.reason})
            if frame.turn == self.turn and frame.text == self._asked:
                self._reprompt = True
        elif isinstance(frame, CallerKeyFrame):
            await self._caller_active(time.monotonic(), "dtmf")
            self.clock.caller_keyed(frame.digit)
            await self._run(DtmfPressed(frame.digit))
        elif isinstance(frame, FirstAudioFrame):
            self.clock.first_audio(frame.turn, frame.at, frame.cached)
        elif isinstance(frame, BotHeardFrame):
            self.clock.heard(frame.turn, frame.text, frame.heard_text, frame.played_ms, frame.total_ms)
        elif isinstance(frame, BotDoneSpeakingFrame):
            if frame.turn == self.turn and frame.prompts_done >= self._prompts_in_turn:
                self._speaking = False
                if self._reprompt and self._waiting_answer:
                    self._reprompt = False
                    await self._run(NoInput())
                elif self._waiting_answer:
                    self._arm_no_input()
        elif isinstance(frame, EndFrame):
            self._cancel_no_input()
            if not self.dialog.ended:
                self.dialog.handle(CallerHungUp())
            if self.end is None:
                self.end = BotEnd("caller_left", "caller_hung_up")
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _caller_active(self, at: float, how: str) -> None:
        self._cancel_no_input()
        if self._speaking and self._interruptible:
            self._speaking = False
            self.clock.barge_in(self.turn, at, how)
            await self.push_frame(InterruptionFrame())

    async def _run(self, event: Event) -> None:
        self._cancel_no_input()
        decided_at = time.monotonic()
        first_trace = len(self.dialog.trace)
        actions = self.dialog.handle(event)
        for _ in range(5):
            lookups = [a for a in actions if isinstance(a, Lookup)]
            spoken = [a for a in actions if not isinstance(a, Lookup)]
            if lookups:
                if spoken:
                    await self._emit(spoken, first_trace, decided_at)
                self._waiting_answer = False  # the dialog waits for the backend now, not the caller
                self._cancel_no_input()
                started = time.monotonic()
                result = await resolve(self.backend, lookups[0], self.call_id)
                self.clock.lookup(result.name, result.ok, time.monotonic() - started, result.error)
                actions = self.dialog.handle(result)
                continue
            await self._emit(spoken, first_trace, decided_at)
            return

    async def _emit(self, actions: list, first_trace: int, decided_at: float) -> None:
        """Speak and act; the caller turn that caused it gets the trace of its own event."""
        trace = self.dialog.trace[first_trace]
        if not actions:
            self.clock.decision(trace, decided_at, None)
            self._wait_again()  # e.g. a key that only collected a digit: the entry may time out
            return
        self.turn += 1
        self._prompts_in_turn = 0
        self.clock.decision(trace, decided_at, self.turn)
        self._waiting_answer = False
        self._asked = None
        self._reprompt = False
        for action in actions:
            if isinstance(action, (Say, Ask)):
                interruptible = action.interruptible if isinstance(action, Say) else True
                self._speaking = True
                self._interruptible = interruptible
                self._prompts_in_turn += 1
                self.clock.bot_said(self.turn, action.text)
                if isinstance(action, Ask):
                    self._waiting_answer = True
                    self._asked = action.text
                    await self.push_frame(ExpectFrame(expect=action.expect), FrameDirection.UPSTREAM)
                await self.push_frame(BotSpeechFrame(text=action.text, interruptible=interruptible,
                                                     prompt=action.prompt, turn=self.turn))
            elif isinstance(action, Transfer):
                self.clock.transfer(action)
                self.end = BotEnd("transfer", action.reason, action)
                await self.push_frame(EndCallFrame(end=self.end))
            elif isinstance(action, Hangup):
                self.end = BotEnd("hangup", action.reason)
                await self.push_frame(EndCallFrame(end=self.end))

    def _wait_again(self) -> None:
        """What the caller did came to nothing: if the bot is waiting for an answer and nothing
        is timing the wait, time it again."""
        if self._waiting_answer and not self._speaking and not self.dialog.ended and self._no_input_task is None:
            self._arm_no_input()

    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        self._no_input_task = self.create_task(self._no_input_after(), name="no-input")

    async def _no_input_after(self) -> None:
        await asyncio.sleep(self.no_input_s)
        self._no_input_task = None
        await self._run(NoInput())

    def _cancel_no_input(self) -> None:
        task, self._no_input_task = self._no_input_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
