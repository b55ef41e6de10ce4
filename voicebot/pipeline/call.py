"""Build and run one call's pipeline: MediaStream in, dialog, MediaStream out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from voicebot.backends import Backend
from voicebot.media import MediaStream
from voicebot.modelstore import resolve
from voicebot.nlu.dialog import Dialog, DialogContext, Event
from voicebot.nlu.nlu import Domain
from voicebot.pipeline.asr import AsrConfig, WhisperEngine
from voicebot.pipeline.frames import BotEnd
from voicebot.pipeline.latency import TurnClock
from voicebot.pipeline.processors import DialogProcessor, Recognizer, Synthesizer, TurnProcessor
from voicebot.pipeline.transport import MediaInput, MediaOutput
from voicebot.pipeline.tts import PiperEngine, default_prompt_dir
from voicebot.pipeline.vad import Segmenter, SegmenterConfig, SileroModel, SmartTurnModel, SpeechScorer, WebrtcScorer
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)


@dataclass
class VoiceConfig:
    asr_model: str = "asr"  # a model role or a folder
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: str = "silero"  # silero | webrtc
    end_of_turn: str = "silence"  # silence | smart_turn
    smart_turn_pause_s: float = 0.15  # with smart_turn: silence before asking the model
    smart_turn_fallback_s: float = 1.0  # with smart_turn: silence that ends a turn regardless
    # transcribe a pause after this much silence, before the turn ends (with smart_turn: at
    # its pause); None: only whole turns
    guess_after_s: float | None = 0.1
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    no_input_s: float = 7.0
    prompt_dir: Path | None = field(default_factory=default_prompt_dir)  # fixed prompts' audio on disk; None: memory only
    output_rates: tuple[int, ...] = (8000, 16000, 48000)


class Engines:
    """Every model, loaded once per process and shared by all calls."""

    def __init__(self, config: VoiceConfig | None = None) -> None:
        self.config = config or VoiceConfig()
        asr_path = self.config.asr_model
        if "/" not in asr_path:
            asr_path = str(resolve(asr_path))
        self.asr = WhisperEngine(asr_path, self.config.asr)
        tts_model = resolve("tts")
        self.tts = PiperEngine(str(tts_model), str(tts_model) + ".json", prompt_dir=self.config.prompt_dir)
        self.silero = SileroModel(str(resolve("vad"))) if self.config.vad == "silero" else None
        self.smart_turn = SmartTurnModel(str(resolve("turn"))) if self.config.end_of_turn == "smart_turn" else None

    def scorer(self) -> SpeechScorer:
        return self.silero.stream() if self.silero is not None else WebrtcScorer()

    def warm_prompts(self, domain: Domain) -> int:
        """Synthesise the domain's fixed prompts once, for every output rate."""
        return self.tts.warm(domain.spec.prompts.values(), self.config.output_rates)


async def run_bot(stream: MediaStream, *, engines: Engines, backend: Backend, store: RecordStore, call_id: str,
                  dialog: Dialog, first_event: Event | None = None) -> BotEnd:
    """Run the bot on a call until it hangs up, transfers, or the caller leaves, and say which.
    The record's end is the caller's business (``run_call`` or ``calls.Call``): the bot may
    hand a call on that goes on long after it.  ``first_event`` resumes a call whose transfer
    failed (``TransferFailed``) with everything the caller already said."""
    clock = TurnClock(store, call_id, privacy=dialog.privacy)
    seg_config = SegmenterConfig(**vars(engines.config.segmenter))
    guess_ahead = engines.config.guess_after_s is not None
    if engines.smart_turn is not None:
        seg_config.pause_candidate_s = engines.config.smart_turn_pause_s
        seg_config.end_of_turn_s = engines.config.smart_turn_fallback_s
    elif guess_ahead:
        seg_config.pause_candidate_s = engines.config.guess_after_s
    segmenter = Segmenter(engines.scorer(), seg_config)
    output = MediaOutput(stream)
    talk = DialogProcessor(dialog, backend, clock, call_id, no_input_s=engines.config.no_input_s, first_event=first_event)
    pipeline = Pipeline([
        MediaInput(stream),
        TurnProcessor(segmenter, engines.smart_turn, guess_ahead=guess_ahead),
        Recognizer(engines.asr, complete=dialog.complete_turn if guess_ahead else None),
        talk,
        Synthesizer(engines.tts, stream.output_sample_rate),
        output,
    ])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000,
                                                            audio_out_sample_rate=stream.output_sample_rate),
                            idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False,
                            check_dangling_tasks=False)
    end: BotEnd | None = None
    try:
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(worker)
        await runner.run()
        end = talk.end
    except Exception:
        log.exception("call %s pipeline failed", call_id)
        store.event(call_id, "pipeline_error")
    finally:
        if not stream.closed and not output.let_go:  # once let go, the stream may be a bridge's now
            await stream.close("pipeline_ended")
    if end is None:
        end = BotEnd("error", "pipeline_error") if not dialog.ended else BotEnd("hangup", "completed")
    return end


async def run_call(stream: MediaStream, *, engines: Engines, domain: Domain, backend: Backend,
                   store: RecordStore, channel: str, caller: str = "", call_id: str | None = None,
                   today: date | None = None) -> str:
    """One whole call with the bot alone, its record ended when the bot is done (benchmarks,
    tests); returns the call id.  A server's calls go through ``calls.Call`` instead."""
    if call_id is None or store.get_call(call_id) is None:
        call_id = store.start_call(channel, caller, domain.name, call_id)
    dialog = Dialog(domain, DialogContext(caller_number=caller, channel=channel, today=today or date.today()))
    end = await run_bot(stream, engines=engines, backend=backend, store=store, call_id=call_id, dialog=dialog)
    TurnClock(store, call_id).ended(end.outcome, dialog)
    return call_id
