"""Composition root: builds settings, engines, the domain registry, backend, records and the web
app, then serves.  Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import secrets
import sys
from typing import Any, AsyncIterator

import uvicorn

from voicebot.auth import Directory, LinkSigner
from voicebot.backends import backend_for
from voicebot.domain_reload import DomainRegistry
from voicebot.nlu.nlu import Domain, default_embedder, load_domain
from voicebot.nlu.yamlsource import DomainError
from voicebot.pipeline.asr import AsrConfig
from voicebot.pipeline.call import Engines, VoiceConfig
from voicebot.pipeline.vad import SegmenterConfig
from voicebot.records.privacy import retention_loop
from voicebot.records.recording import Recordings, default_dir
from voicebot.records.voicemails import VoicemailBox
from voicebot.records.voicemails import default_dir as voicemail_dir
from voicebot.records.store import RecordStore
from voicebot.web.app import create_app
from voicebot.calls import CallService
from voicebot.config import Settings
from voicebot.handoff.acd import Acd
from voicebot.handoff.desk import DeskHub
from voicebot.handoff.events import AgentConfig, QueueConfig, RelaxRule
from voicebot.handoff.hours import Schedule
from voicebot.hold import MusicOnHold
from voicebot.nlu.domain import TransferSpec
from voicebot.sip.access import Trunk
from voicebot.sip.endpoint import SipConfig, SipEndpoint
from voicebot.sip.outbound import OutboundTrunk
from voicebot import voicemail
from voicebot.sip.transfer import TransferTarget
from voicebot.sip.transfers import SipTransfers
from voicebot.switchboard import Switchboard

log = logging.getLogger(__name__)


def schedules(settings: Settings) -> dict[str, Schedule]:
    """Each queue's opening hours, for the ACD's door and the words callers hear."""
    return {name: Schedule.from_settings(q.hours) for name, q in settings.queues.items() if q.hours is not None}


def queue_configs(settings: Settings) -> dict[str, QueueConfig]:
    hours = schedules(settings)
    return {name: QueueConfig(name=name, strategy=q.strategy, skills=dict(q.skills), max_penalty=q.max_penalty,
                              relax=tuple(RelaxRule(r.after_s, r.max_penalty, r.skills) for r in q.relax),
                              service_level_s=q.service_level_s, max_wait_s=q.max_wait_s, max_len=q.max_len,
                              wrap_up_s=q.wrap_up_s, ring_s=q.ring_s, join_empty=q.join_empty,
                              leave_when_empty=q.leave_when_empty, announce_every_s=q.announce_every_s,
                              overflow_to=q.overflow_to, overflow_after_s=q.overflow_after_s,
                              missed_offers_max=q.missed_offers_max, after_wrap_up=q.after_wrap_up, weight=q.weight,
                              default_handle_s=q.default_handle_s,
                              is_open=hours[name].is_open if name in hours else None, when_closed=q.when_closed,
                              callback_attempts=q.callback_attempts, callback_retry_s=q.callback_retry_s,
                              callback_give_up_s=q.callback_give_up_s, resume_abandoned_s=q.resume_abandoned_s)
            for name, q in settings.queues.items()}


def queue_keys(settings: Settings) -> dict[str, dict[str, str]]:
    """queue → {"callback": key, "voicemail": key}: what a waiting caller may press."""
    keys: dict[str, dict[str, str]] = {}
    for name, q in settings.queues.items():
        for what, key in (("callback", q.callback_key), ("voicemail", q.voicemail_key)):
            if key is not None:
                keys.setdefault(name, {})[what] = key
    return keys


def agent_configs(settings: Settings) -> list[AgentConfig]:
    return [AgentConfig(a.id, a.name or a.id, dict(a.queues), dict(a.skills), a.phone) for a in settings.agents]


def domain_queues(domain: Any) -> set[str]:
    """Every queue the domain can transfer to: its global rules and every flow step."""
    spec = domain.spec
    names = {value.queue for value in vars(spec.settings).values() if isinstance(value, TransferSpec)}
    steps = [step for flow in spec.flows.values() for step in flow.steps]
    while steps:
        step = steps.pop()
        if step.transfer is not None:
            names.add(step.transfer.queue)
        steps.extend([*step.on_no, *step.on_failure])
    return names


def unknown_queues(settings: Settings, domain: Any) -> list[str]:
    """An agent serving a queue nobody defines and no flow transfers to is a typo."""
    known = set(settings.queues) | domain_queues(domain)
    problems = []
    for agent in settings.agents:
        for queue in agent.queues:
            if queue not in known:
                close = difflib.get_close_matches(queue, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"agents.{agent.id}.queues: no queue {queue!r}{hint}")
    return problems


def serve(settings: Settings) -> int:
    engines = Engines(VoiceConfig(
        asr_model=settings.asr_model,
        asr=AsrConfig(device=settings.asr_device, compute_type=settings.asr_compute_type,
                      language=settings.asr_language, trim_window=settings.asr_trim_window,
                      min_window_s=settings.asr_min_window_s),
        vad=settings.vad, end_of_turn=settings.end_of_turn, segmenter=SegmenterConfig(end_of_turn_s=settings.end_of_turn_s),
        guess_after_s=settings.asr_guess_after_s, no_input_s=settings.no_input_s))
    embedder = default_embedder()

    def load(root) -> Domain:  # type: ignore[no-untyped-def]
        domain = load_domain(root, embedder)
        engines.warm_prompts(domain)  # fixed prompts cost nothing to say later
        engines.tts.warm(voicemail.PROMPTS, engines.config.output_rates)  # the review menu right after a message
        return domain

    try:
        registry = DomainRegistry(settings.domain, load)
    except DomainError as exc:
        print(f"refusing to start: domain {settings.domain} is invalid:\n{exc}", file=sys.stderr)
        return 2
    store = RecordStore(settings.records_db)
    if interrupted := store.close_calls_in_flight():  # a crash left them open: 'ended', outcome 'abnormal'
        print(f"  closed {len(interrupted)} call(s) left in flight by the last run (outcome 'abnormal')", flush=True)
    backend = backend_for(registry.current.spec.settings.backend)
    secret = (settings.secret_key or secrets.token_hex(32)).encode()
    directory = Directory.from_settings(settings)
    links = LinkSigner(secret)
    scheme = "https" if settings.tls_cert and settings.tls_key else "http"
    public_url = (settings.public_url or f"{scheme}://{settings.host}:{settings.port}").rstrip("/")

    def context_url(call_id: str) -> str:
        """The agent's way to the whole context: this one call only, for a while."""
        return f"{public_url}/api/calls/{call_id}?token={links.sign(call_id, settings.context_link_s)}"

    recordings = Recordings(settings.recordings_dir or default_dir(settings.records_db), store)
    voicemails = VoicemailBox(voicemail_dir(recordings.folder), store)
    calls = CallService(engines, registry, backend, store, settings.max_calls,
                        music=MusicOnHold.from_folder(settings.music_on_hold), context_url=context_url,
                        recordings=recordings)
    calls.voicemails = voicemails
    acd = Acd(queue_configs(settings), agent_configs(settings))
    if settings.sip_outbound is not None:
        acd.outbound_max = settings.sip_outbound.max_calls
    desk = DeskHub()
    problems = unknown_queues(settings, registry.current)
    if problems:
        print("refusing to start: " + "; ".join(problems), file=sys.stderr)
        return 2

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        watcher = asyncio.create_task(registry.watch())
        retention = asyncio.create_task(retention_loop(store, settings.retention_days, recordings.folder))
        sip = None
        transfers = None
        if settings.sip:
            sip = SipEndpoint(SipConfig(host=settings.sip_host, port=settings.sip_port,
                                        advertised_host=settings.sip_advertised_host,
                                        allowed_networks=settings.sip_allowed_networks,
                                        provisional=settings.sip_provisional,
                                        credentials=settings.sip_credentials, tcp=settings.sip_tcp,
                                        trunks=[Trunk(t.name, t.networks, t.credentials) for t in settings.sip_trunks],
                                        max_setups_per_s=settings.sip_max_setups_per_s,
                                        digest_algorithms=tuple(settings.sip_digest_algorithms),
                                        answer_after_s=settings.sip_answer_after_s,
                                        max_calls=settings.max_calls), calls.start, can_take=calls.can_take)
            try:
                await sip.start()
                transfers = SipTransfers(sip, {q: TransferTarget(t.uri, t.method, t.ring_s)
                                               for q, t in settings.sip_transfer_targets.items()})
            except OSError as exc:  # the web caller page still works without SIP
                print(f"  SIP disabled: cannot listen on {settings.sip_host}:{settings.sip_port}: {exc}", flush=True)
                await sip.stop()
                sip = None
        calls.outside = transfers
        outbound = OutboundTrunk(sip, settings.sip_outbound) if sip is not None and settings.sip_outbound else None
        board = Switchboard(acd, store, desk, dialer=transfers, context_url=context_url,
                            exit_keys={name: q.exit_key for name, q in settings.queues.items() if q.exit_key},
                            dispositions=settings.dispositions, not_ready_reasons=settings.not_ready_reasons,
                            outbound=outbound, keys=queue_keys(settings), schedules=schedules(settings),
                            max_voicemail_s={name: q.max_voicemail_s for name, q in settings.queues.items()})
        board.service = calls
        calls.switchboard = board
        if restored := board.restore_callbacks():
            print(f"  restored {restored} callback(s) promised before the restart", flush=True)
        app.state.switchboard = board
        board.start()
        base = public_url
        print(f"voicebot: serving domain {registry.current.name!r} from {settings.domain}", flush=True)
        print(f"  caller page    {base}/", flush=True)
        print(f"  agent desktop  {base}/agent", flush=True)
        print(f"  supervisor     {base}/supervisor (listen, whisper, barge, take over)", flush=True)
        print(f"  wallboard      {base}/wallboard (supervisors)", flush=True)
        print(f"  call records   {base}/api/calls   metrics {base}/metrics   API docs {base}/docs", flush=True)
        print(f"  text chat API  {base}/api/chat", flush=True)
        if sip is not None:
            transports = "UDP+TCP" if settings.sip_tcp else "UDP"
            print(f"  SIP ({transports})  sip:voicebot@{settings.sip_host}:{sip.config.port}", flush=True)
        queues = ", ".join(sorted(set(settings.queues) | domain_queues(registry.current))) or "none"
        print(f"  ACD queues     {queues}", flush=True)
        demo = [a.id for a in [*settings.agents, *settings.users] if not a.password.startswith("$argon2")]
        if settings.agents:
            print(f"  agents         {', '.join(a.id for a in settings.agents)}: log in at {base}/agent", flush=True)
        if demo:
            print(f"  demo logins    {', '.join(demo)} have plain-text passwords (the sample's are 'demo');"
                  " set hashes from `voicebot passwd` in voicebot.yaml", flush=True)
        yield
        watcher.cancel()
        retention.cancel()
        await board.stop()
        if sip is not None:
            await sip.stop()
        await calls.shutdown()
        store.close()

    app = create_app(registry, backend, lifespan, store=store, calls=calls, desk=desk, acd=acd, directory=directory,
                     links=links, settings=settings, secret=secret, voicemails=voicemails)
    tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)} if scheme == "https" else {}
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", **tls)
    return 0
