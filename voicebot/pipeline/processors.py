"""The per-call pipecat processors between the transport ends: turn taking, recognition,
dialog and synthesis.  Each holds only per-call state; models live in the shared engines."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, InterruptionFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voicebot.backends import Backend
from voicebot.nlu.dialog import (Ask, CallerHungUp, CallStarted, Dialog, DtmfPressed, Event, Hangup, Lookup,
                                 LookupResult, NoInput, Say, Transfer, UserSaid)
from voicebot.pipeline.asr import WhisperEngine
from voicebot.pipeline.frames import (BotAudioFrame, BotDoneSpeakingFrame, BotEnd, BotHeardFrame, BotSpeechFrame,
                                      CallerKeyFrame, CallerSpeechStartedFrame, CallerTextFrame, EndCallFrame,
                                      ExpectFrame, FirstAudioFrame, UtteranceFrame)
from voicebot.pipeline.latency import TurnClock
from voicebot.pipeline.tts import PiperEngine
from voicebot.pipeline.vad import RATE, PauseCandidate, Segmenter, SmartTurnModel, SpeechStarted, Utterance

log = logging.getLogger(__name__)

# How long the caller may think before answering, by what the bot asked for.
END_OF_TURN_BY_EXPECT = {"digits": 0.9, "amount": 0.7, "date": 0.7}
LOOKUP_TIMEOUT_S = 8.0


class TurnProcessor(FrameProcessor):
    """VAD onset at once (for barge-in), a whole utterance at the end of the turn."""

    def __init__(self, segmenter: Segmenter, smart_turn: SmartTurnModel | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segmenter = segmenter
        self.smart_turn = smart_turn
        self.default_end_of_turn = segmenter.end_of_turn_s

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            now = time.monotonic()
            for event in self.segmenter.feed(frame.audio):
                if isinstance(event, SpeechStarted):
                    await self.push_frame(CallerSpeechStartedFrame(at=now))
                elif isinstance(event, Utterance):
                    await self._utterance(event, now)
                elif isinstance(event, PauseCandidate) and self.smart_turn is not None:
                    self.create_task(self._judge(event), name="smart-turn")
            return
        if isinstance(frame, ExpectFrame):
            self.segmenter.end_of_turn_s = END_OF_TURN_BY_EXPECT.get(frame.expect, self.default_end_of_turn)
            return
        await self.push_frame(frame, direction)

    async def _utterance(self, event: Utterance, now: float) -> None:
        lag = (self.segmenter.position - event.end_sample) / RATE
        await self.push_frame(UtteranceFrame(pcm=event.pcm, sample_rate=RATE, speech_end=now - lag))

    async def _judge(self, pause: PauseCandidate) -> None:
        """Ask smart-turn off the event loop; end the turn early if it says complete."""
        assert self.smart_turn is not None
        probability = await asyncio.to_thread(self.smart_turn.complete_probability, pause.pcm)
        if probability >= 0.5:
            for utterance in self.segmenter.end_turn(pause.pause_id):
                await self._utterance(utterance, time.monotonic())


class Recognizer(FrameProcessor):
    def __init__(self, engine: WhisperEngine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, UtteranceFrame):
            await self.push_frame(frame, direction)
            return
        try:
            result = await self.engine.transcribe(frame.pcm, frame.sample_rate)
        except Exception:
            log.exception("speech recognition failed for one utterance")
            return
        await self.push_frame(CallerTextFrame(text=result.text, confidence=result.confidence,
                                              language=result.language, speech_end=frame.speech_end,
                                              transcript_at=time.monotonic(), asr_window_s=result.window_s))


class Synthesizer(FrameProcessor):
    def __init__(self, engine: PiperEngine, sample_rate: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.sample_rate = sample_rate

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, BotSpeechFrame):
            await self.push_frame(frame, direction)
            return
        cached = self.engine.is_cached(frame.text, self.sample_rate)
        chunks = self.engine.stream(frame.text, self.sample_rate)
        previous: bytes | None = None
        first = True
        async for pcm in chunks:  # hold one chunk back so the last one can say so
            if previous is not None:
                await self.push_frame(self._audio(frame, previous, first, False, cached))
                first = False
            previous = pcm
        if previous is not None:
            await self.push_frame(self._audio(frame, previous, first, True, cached))

    def _audio(self, frame: BotSpeechFrame, pcm: bytes, first: bool, last: bool, cached: bool) -> BotAudioFrame:
        return BotAudioFrame(pcm=pcm, sample_rate=self.sample_rate, text=frame.text, turn=frame.turn,
                             first=first, last=last, cached=cached)


class DialogProcessor(FrameProcessor):
    """Frames ⇄ the pure Dialog; barge-in policy; silence timer; the call record."""

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
        elif isinstance(frame, CallerTextFrame):
            if frame.text.strip():
                self.clock.caller_said(frame.text, frame.speech_end, frame.transcript_at, frame.confidence,
                                       frame.asr_window_s)
                await self._run(UserSaid(frame.text, frame.confidence, frame.language))
            elif self._waiting_answer and not self._speaking:
                self._arm_no_input()  # noise, not speech: keep waiting
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
                if self._waiting_answer:
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
                lookup = lookups[0]
                started = time.monotonic()
                try:
                    result = await asyncio.wait_for(self.backend.lookup(lookup.name, lookup.args, self.call_id),
                                                    LOOKUP_TIMEOUT_S)
                except (asyncio.TimeoutError, Exception) as exc:  # never let a backend kill a call
                    log.warning("lookup %s failed: %r", lookup.name, exc)
                    result = LookupResult(lookup.name, False, {}, "backend_timeout")
                self.clock.lookup(lookup.name, result.ok, time.monotonic() - started)
                actions = self.dialog.handle(result)
                continue
            await self._emit(spoken, first_trace, decided_at)
            return

    async def _emit(self, actions: list, first_trace: int, decided_at: float) -> None:
        """Speak and act; the caller turn that caused it gets the trace of its own event."""
        trace = self.dialog.trace[first_trace]
        if not actions:
            self.clock.decision(trace, decided_at, None)
            return
        self.turn += 1
        self._prompts_in_turn = 0
        self.clock.decision(trace, decided_at, self.turn)
        self._waiting_answer = False
        for action in actions:
            if isinstance(action, (Say, Ask)):
                interruptible = action.interruptible if isinstance(action, Say) else True
                self._speaking = True
                self._interruptible = interruptible
                self._prompts_in_turn += 1
                self.clock.bot_said(self.turn, action.text)
                if isinstance(action, Ask):
                    self._waiting_answer = True
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
