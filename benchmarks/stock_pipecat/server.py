"""The stock pipecat bot as a small server: FastAPI + uvicorn, ``POST /api/offer`` handled by
pipecat's ``SmallWebRTCRequestHandler`` (as ``pipecat.runner.run`` serves SmallWebRTC), one
pipeline per connection, run by a ``WorkerRunner``::

    python -m benchmarks.stock_pipecat.server --host 198.18.0.1 --port 8081

The pipeline is the cascade of ``pipecat init``'s template, with ``CannedResponder`` for the LLM:

    transport.input() → WhisperSTTService → user aggregator (SileroVADAnalyzer, default turn
    strategies: VAD start, smart-turn v3 stop) → CannedResponder → PiperTTSService →
    transport.output() → assistant aggregator

Besides the offer it serves ``GET /healthz`` and ``GET /api/turns?pc_id=`` (what the responder
heard and answered on that connection) and ``GET /api/config`` (the classes and parameters
above), for the benchmark to check the calls and record the configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import BackgroundTasks, FastAPI, HTTPException
from loguru import logger

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequest, SmallWebRTCRequestHandler
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from benchmarks.stock_pipecat.responder import GREETING, CannedResponder
from voicebot.modelstore import resolve

PIPER_VOICE = "en_US-joe-medium"


def pipeline_description() -> dict[str, Any]:
    """How the pipeline is configured, for the benchmark's JSON."""
    return {
        "transport": "SmallWebRTCTransport(TransportParams(audio_in_enabled=True, audio_out_enabled=True))",
        "stt": f"WhisperSTTService(settings=Settings(model={str(resolve('asr'))!r}), device='cpu', "
               "compute_type='int8')  # defaults: language en, no_speech_prob 0.4, faster-whisper beam_size 5",
        "vad": "SileroVADAnalyzer()  # VADParams defaults: confidence 0.7, start_secs 0.2, stop_secs 0.2, "
               "min_volume 0.6",
        "turn": "LLMUserAggregatorParams(vad_analyzer=...) with user_turn_strategies=None: "
                "[VADUserTurnStartStrategy, TranscriptionUserTurnStartStrategy] / "
                "[TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3())]  # SmartTurnParams stop_secs 3",
        "llm": "CannedResponder (benchmarks/stock_pipecat/responder.py): LLMFullResponseStart, one LLMTextFrame, End",
        "tts": f"PiperTTSService(settings=Settings(voice={PIPER_VOICE!r}), "
               f"download_dir={str(resolve('tts').parent)!r})",
        "worker": "PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True, enable_usage_metrics=True)) "
                  "on WorkerRunner(handle_sigint=False)",
    }


async def run_bot(connection: SmallWebRTCConnection, turns: dict[str, list[dict[str, str]]]) -> None:
    transport = SmallWebRTCTransport(webrtc_connection=connection,
                                     params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    stt = WhisperSTTService(settings=WhisperSTTService.Settings(model=str(resolve("asr"))), device="cpu",
                            compute_type="int8")
    tts = PiperTTSService(settings=PiperTTSService.Settings(voice=PIPER_VOICE), download_dir=resolve("tts").parent)
    responder = CannedResponder()
    turns[connection.pc_id] = responder.turns

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([transport.input(), stt, user_aggregator, responder, tts, transport.output(),
                         assistant_aggregator])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):  # type: ignore[no-untyped-def]
        logger.info("Client connected")
        await worker.queue_frames([TTSSpeakFrame(GREETING)])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):  # type: ignore[no-untyped-def]
        logger.info("Client disconnected")
        await runner.cancel()

    await runner.run()


def create_app() -> FastAPI:
    handler = SmallWebRTCRequestHandler()
    turns: dict[str, list[dict[str, str]]] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await handler.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/offer")
    async def offer(request: SmallWebRTCRequest, background_tasks: BackgroundTasks) -> dict[str, str] | None:
        async def on_connection(connection: SmallWebRTCConnection) -> None:
            background_tasks.add_task(run_bot, connection, turns)

        return await handler.handle_web_request(request=request, webrtc_connection_callback=on_connection)

    @app.get("/api/config")
    async def config() -> dict[str, Any]:
        return pipeline_description()

    @app.get("/api/turns")
    async def connection_turns(pc_id: str) -> list[dict[str, str]]:
        if pc_id not in turns:
            raise HTTPException(404, "no such connection")
        return turns[pc_id]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--log-level", default="DEBUG", help="loguru level (pipecat's examples log DEBUG)")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
