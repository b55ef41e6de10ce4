"""Composition root: builds settings, engines, the domain registry, backend, records and the web
app, then serves.  Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import AsyncIterator

from voicebot.config import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    import uvicorn

    from voicebot.backends import backend_for
    from voicebot.domain_reload import DomainRegistry
    from voicebot.nlu.nlu import Domain, default_embedder, load_domain
    from voicebot.nlu.yamlsource import DomainError
    from voicebot.pipeline.asr import AsrConfig
    from voicebot.pipeline.call import Engines, VoiceConfig
    from voicebot.pipeline.service import CallService
    from voicebot.pipeline.vad import SegmenterConfig
    from voicebot.records.store import RecordStore
    from voicebot.web.app import create_app

    engines = Engines(VoiceConfig(
        asr_model=settings.asr_model,
        asr=AsrConfig(device=settings.asr_device, compute_type=settings.asr_compute_type,
                      language=settings.asr_language, trim_window=settings.asr_trim_window),
        vad=settings.vad, end_of_turn=settings.end_of_turn, segmenter=SegmenterConfig(end_of_turn_s=settings.end_of_turn_s),
        no_input_s=settings.no_input_s))
    embedder = default_embedder()

    def load(root) -> Domain:  # type: ignore[no-untyped-def]
        domain = load_domain(root, embedder)
        engines.warm_prompts(domain)  # fixed prompts cost nothing to say later
        return domain

    try:
        registry = DomainRegistry(settings.domain, load)
    except DomainError as exc:
        print(f"refusing to start: domain {settings.domain} is invalid:\n{exc}", file=sys.stderr)
        return 2
    store = RecordStore(settings.records_db)
    backend = backend_for(registry.current.spec.settings.backend)
    calls = CallService(engines, registry, backend, store, settings.max_calls)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        watcher = asyncio.create_task(registry.watch())
        sip = None
        if settings.sip:
            from voicebot.sip.endpoint import SipConfig, SipEndpoint
            from voicebot.sip.access import Trunk
            from voicebot.sip.transfer import TransferTarget

            sip = SipEndpoint(SipConfig(host=settings.sip_host, port=settings.sip_port,
                                        advertised_host=settings.sip_advertised_host,
                                        allowed_networks=settings.sip_allowed_networks,
                                        provisional=settings.sip_provisional,
                                        credentials=settings.sip_credentials, tcp=settings.sip_tcp,
                                        trunks=[Trunk(t.name, t.networks, t.credentials) for t in settings.sip_trunks],
                                        max_setups_per_s=settings.sip_max_setups_per_s,
                                        transfer_targets={q: TransferTarget(t.uri, t.method, t.ring_s)
                                                          for q, t in settings.sip_transfer_targets.items()},
                                        context_base_url=f"http://{settings.host}:{settings.port}",
                                        answer_after_s=settings.sip_answer_after_s,
                                        max_calls=settings.max_calls), calls.start, store, calls.resume)
            try:
                await sip.start()
            except OSError as exc:  # the web caller page still works without SIP
                print(f"  SIP disabled: cannot listen on {settings.sip_host}:{settings.sip_port}: {exc}", flush=True)
                await sip.stop()
                sip = None
        base = f"http://{settings.host}:{settings.port}"
        print(f"voicebot: serving domain {registry.current.name!r} from {settings.domain}", flush=True)
        print(f"  caller page    {base}/", flush=True)
        print(f"  call records   {base}/api/calls   metrics {base}/metrics   API docs {base}/docs", flush=True)
        print(f"  text chat API  {base}/api/chat", flush=True)
        if sip is not None:
            transports = "UDP+TCP" if settings.sip_tcp else "UDP"
            print(f"  SIP ({transports})  sip:voicebot@{settings.sip_host}:{sip.config.port}", flush=True)
        print("  agent desktop: not built yet (ACD issue)", flush=True)
        yield
        watcher.cancel()
        if sip is not None:
            await sip.stop()
        await calls.shutdown()
        store.close()

    app = create_app(registry, backend, lifespan, store=store, calls=calls)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0
