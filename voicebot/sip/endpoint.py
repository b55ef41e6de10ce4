"""The SIP endpoint: asyncio UDP glue around the sans-I/O message, transaction, dialog, SDP
and RTP code.  It answers every request in protocol and never lets one bad datagram take
down the process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter

from voicebot.media import MediaStream
from voicebot.sip.access import AccessPolicy, Trunk
from voicebot.sip.dialog import ALLOW, REASONS, SipDialog, new_tag, response_to
from voicebot.sip.message import SipParseError, SipRequest, SipResponse, StreamParser, parse
from voicebot.sip.rtp import RtpReceiver, RtpSender, RtpSession
from voicebot.sip.sdp import NotAcceptable, SdpError, build_answer, build_offer, negotiate, parse_sdp, sdp_body
from voicebot.sip.transaction import Send, ServerTransaction, ServerTransactions, TimedOut
from voicebot.sip.transfer import TransferTarget, sipfrag_status

log = logging.getLogger(__name__)

SIP_MESSAGES = Counter("voicebot_sip_messages_total", "SIP messages by outcome", ["kind"])
SIP_ACCESS = Counter("voicebot_sip_access_total", "INVITEs by trunk and what access control decided",
                     ["trunk", "decision"])
MAX_ECHO_LINES = 64
KNOWN_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "PRACK", "UPDATE", "REFER", "PUBLISH"}


@dataclass
class SipConfig:
    host: str = "127.0.0.1"
    port: int = 5060
    advertised_host: str | None = None  # the address put in SDP/Contact (NAT)
    rtp_host: str | None = None
    provisional: str = "180"  # 180, 183 or none: what the caller sees before the answer
    answer_after_s: float = 0.0  # ring this long before answering (a CANCEL may come first)
    max_calls: int = 20
    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    rtp_timeout_s: float = 30.0
    tcp: bool = True
    max_setups_per_s: float = 10.0  # new INVITEs accepted per second (burst: one second's worth)
    transfer_targets: dict[str, TransferTarget] = field(default_factory=dict)  # queue → where and how
    context_base_url: str = "http://127.0.0.1:8080"
    credentials: dict[str, str] = field(default_factory=dict)  # digest users for sources off the allow-list
    realm: str = "voicebot"
    trunks: list[Trunk] = field(default_factory=list)  # when set, replaces allowed_networks/credentials

    def access_trunks(self) -> list[Trunk]:
        """The trunks, or the two that allowed_networks and credentials stand for."""
        if self.trunks:
            return self.trunks
        implicit = [Trunk("allowed", networks=self.allowed_networks)] if self.allowed_networks else []
        return implicit + ([Trunk("digest", credentials=self.credentials)] if self.credentials else [])

    def __post_init__(self) -> None:
        self.transfer_targets = {queue: TransferTarget(t) if isinstance(t, str) else t
                                 for queue, t in self.transfer_targets.items()}

    @property
    def public_host(self) -> str:
        return self.advertised_host or self.host


@dataclass
class SipCall:
    dialog: SipDialog
    invite_tx: ServerTransaction | None  # None for a leg we placed
    rtp: RtpSession
    source: tuple[str, int]
    answered: bool = False
    started: bool = False
    call_id: str | None = None
    transport: str = "UDP"
    outbound: bool = False  # a leg voicebot placed (a bridged transfer's agent side)
    trunk: str | None = None  # which trunk access control matched
    awaiting_answer: bool = False  # we sent the offer (delayed offer): the ACK brings the answer


StartCall = Callable[[MediaStream, str, str], str]  # (stream, channel, caller) -> call record id
ResumeCall = Callable[[MediaStream, str, str, "int | None"], Awaitable[bool]]  # stream, call id, queue, target status


class CallRecords(Protocol):
    """The part of the record store the SIP edge writes to (a RecordStore)."""

    def get_call(self, call_id: str) -> dict[str, Any] | None: ...
    def event(self, call_id: str, kind: str, data: dict[str, Any] | None = None) -> None: ...
    def set_state(self, call_id: str, state: str) -> None: ...
    def finish_call(self, call_id: str, state: str = "ended") -> None: ...


class SipEndpoint(asyncio.DatagramProtocol):
    def __init__(self, config: SipConfig, start_call: StartCall, records: CallRecords | None = None,
                 resume_call: ResumeCall | None = None) -> None:
        self.config = config
        self.start_call = start_call
        self.records = records
        self.resume_call = resume_call
        self._responses: dict[tuple[str, int], Callable[[SipResponse], None]] = {}  # our requests' answers
        self._notify: dict[str, Callable[[int], None]] = {}  # call → where its REFER's sipfrag statuses go
        self._byes: set[asyncio.Future[int]] = set()
        self.transactions = ServerTransactions()
        self.calls: dict[str, SipCall] = {}
        self._answering: set[str] = set()  # INVITEs accepted, media being set up
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.Task[None] | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tcp_writers: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self.access = AccessPolicy(config.access_trunks(), config.realm)
        self.session_counter = int(time.time())
        self._setup_tokens = max(1.0, config.max_setups_per_s)
        self._setup_tokens_at = time.monotonic()

    # ------------------------------------------------------------------ asyncio glue

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.config.host, self.config.port))
        if self.config.tcp:
            self._tcp_server = await asyncio.start_server(self._tcp_connection, self.config.host, self.config.port)
        self._timer = asyncio.create_task(self._timers(), name="sip-timers")

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP connection: Content-Length framing; responses go back the same way."""
        peer = writer.get_extra_info("peername")[:2]
        self._tcp_writers[peer] = writer
        parser = StreamParser()
        try:
            while data := await reader.read(65536):
                for message in parser.feed(data):
                    try:
                        self._dispatch(message, peer, reliable=True)
                    except Exception:
                        SIP_MESSAGES.labels("internal_error").inc()
                        log.exception("SIP/TCP: failed to handle a message from %s", peer)
                await writer.drain()
                if parser.error is not None:
                    SIP_MESSAGES.labels("malformed").inc()
                    log.info("SIP/TCP: closing %s: %s", peer, parser.error.reason)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tcp_writers.pop(peer, None)
            writer.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.config.port == 0:
            self.config.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._handle(data, addr)
        except Exception:  # the last line of defence: log, count, keep serving
            SIP_MESSAGES.labels("internal_error").inc()
            log.exception("SIP: failed to handle a datagram from %s", addr)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        writer = self._tcp_writers.get(addr)
        if writer is not None:
            writer.write(data)
        elif self.transport is not None:
            self.transport.sendto(data, addr)

    def _out(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.send(out.data, out.address)
            elif isinstance(out, TimedOut) and out.kind == "no_ack_2xx":
                call = self.calls.get(out.call_id)
                if call is not None:
                    log.warning("SIP: no ACK for our 200 on %s; hanging up", out.call_id)
                    asyncio.ensure_future(self.hang_up(call, "no_ack"))

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._out(self.transactions.tick(time.monotonic()))

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await self.hang_up(call, "shutdown")
        if self._byes:  # give the BYEs a moment to be answered before the socket goes
            await asyncio.wait(set(self._byes), timeout=0.5)
            for bye in list(self._byes):
                bye.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for writer in list(self._tcp_writers.values()):
            writer.close()

    # ------------------------------------------------------------------ requests

    def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip(b"\r\n \x00"):
            return  # keep-alive
        try:
            message = parse(data)
        except SipParseError as exc:
            SIP_MESSAGES.labels("malformed").inc()
            log.info("SIP: malformed message from %s: %s", addr, exc.reason)
            self._reject_malformed(data, addr, exc)
            return
        self._dispatch(message, addr, reliable=False)

    def _dispatch(self, message: SipRequest | SipResponse, addr: tuple[str, int], reliable: bool) -> None:
        if isinstance(message, SipResponse):
            SIP_MESSAGES.labels("response").inc()
            handler = self._responses.get((message.call_id, message.cseq[0]))
            if handler is not None:
                handler(message)
            return
        SIP_MESSAGES.labels(message.method.lower() if message.method in ALLOW else "other").inc()
        now = time.monotonic()
        if message.method == "ACK":
            self.transactions.receive(message, addr, now, reliable)
            self._on_ack(message)
            return
        tx, outputs = self.transactions.receive(message, addr, now, reliable)
        self._out(outputs)
        if tx is None:
            return  # a retransmission, already answered
        handler = {"INVITE": self._on_invite, "BYE": self._on_bye, "CANCEL": self._on_cancel,
                   "OPTIONS": self._on_options, "NOTIFY": self._on_notify}.get(message.method)
        if handler is not None:
            if message.method not in ("INVITE", "CANCEL") and self._unsupported(message, tx):
                return  # (an INVITE is checked after who sent it)
            handler(message, tx, addr)
        elif message.method in KNOWN_METHODS:
            self._respond(tx, response_to(message, 405, to_tag=new_tag()), allow=True)
        else:
            self._respond(tx, response_to(message, 501, to_tag=new_tag()), allow=True)

    def _reject_malformed(self, data: bytes, addr: tuple[str, int], exc: SipParseError) -> None:
        """Answer a broken request when it names enough (Via, From, To, Call-ID, CSeq) to address
        a response to; otherwise drop it.  Never answers responses or ACKs."""
        if exc.status == 0 or data[:4].upper() == b"SIP/":
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        first, _, rest = head.partition("\r\n")
        if first.split(" ", 1)[0].upper() == "ACK":
            return
        wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
                  "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
        response = SipResponse(exc.status, REASONS.get(exc.status, "Bad Request"))
        found = set()
        for line in rest.split("\r\n")[:MAX_ECHO_LINES]:
            name, sep, value = line.partition(":")
            key = wanted.get(name.strip().lower())
            if sep and key and len(value) < 1024:
                response.headers.add(key, value.strip())
                found.add(key)
        if found != {"Via", "From", "To", "Call-ID", "CSeq"}:
            return
        response.headers.add("Warning", f'399 voicebot "{exc.reason[:100]}"')
        self.send(response.encode(), addr)

    def _unsupported(self, request: SipRequest, tx: ServerTransaction) -> bool:
        """§8.2.2.3: we support no extensions, so any Require gets 420 naming them."""
        required = [r for r in request.headers.get_all("Require") if r.strip()]
        if required:
            response = response_to(request, 420, to_tag=new_tag())
            response.headers.add("Unsupported", ", ".join(required))
            self._respond(tx, response)
        return bool(required)

    def _respond(self, tx: ServerTransaction, response: SipResponse, allow: bool = False) -> None:
        if allow:
            response.headers.add("Allow", ALLOW)
        response.headers.add("Server", "voicebot")
        self._out(self.transactions.respond(tx, response, time.monotonic()))

    def _take_setup_token(self) -> bool:
        """Token bucket on call setups: an INVITE flood gets 503s, not a stalled server."""
        now = time.monotonic()
        capacity = max(1.0, self.config.max_setups_per_s)
        self._setup_tokens = min(capacity, self._setup_tokens + (now - self._setup_tokens_at) * self.config.max_setups_per_s)
        self._setup_tokens_at = now
        if self._setup_tokens < 1.0:
            SIP_MESSAGES.labels("rate_limited").inc()
            return False
        self._setup_tokens -= 1.0
        return True

    def _on_options(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int]) -> None:
        response = response_to(request, 200, to_tag=new_tag())
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", "")
        self._respond(tx, response, allow=True)

    def _on_invite(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int]) -> None:
        existing = self.calls.get(request.call_id)
        if existing is not None:
            self._on_reinvite(existing, request, tx)
            return
        if ";tag=" in (request.headers.get("To") or "").replace(" ", ""):
            self._respond(tx, response_to(request, 481))
            return
        verdict = self.access.check(addr[0], "INVITE", request.headers.get("Authorization"))
        SIP_ACCESS.labels(verdict.trunk or "none", verdict.decision).inc()
        if verdict.decision == "challenge":
            response = response_to(request, 401, to_tag=new_tag())
            for value in verdict.challenge:
                response.headers.add("WWW-Authenticate", value)
            self._respond(tx, response)
            return
        if verdict.decision != "allow":
            log.info("SIP: refused INVITE from %s (%s)", addr, verdict.why)
            self._respond(tx, response_to(request, 403, to_tag=new_tag()))
            return
        if self._unsupported(request, tx):
            return
        inbound = sum(1 for c in self.calls.values() if not c.outbound)  # agent legs don't count
        if not self._take_setup_token() or inbound + len(self._answering) >= self.config.max_calls:
            response = response_to(request, 503, to_tag=new_tag())
            response.headers.add("Retry-After", "5")
            self._respond(tx, response)
            return
        if not request.body:  # delayed offer (RFC 3264 §4 via §13.2.1): we offer in the 200, the ACK answers
            self._respond(tx, response_to(request, 100))
            self._answering.add(request.call_id)
            asyncio.ensure_future(self._answer(request, tx, addr, None, None, verdict.trunk))
            return
        sdp = sdp_body(request.headers.get("Content-Type") or "", request.body)
        if sdp is None:
            response = response_to(request, 415, to_tag=new_tag())
            response.headers.add("Accept", "application/sdp, multipart/mixed")
            self._respond(tx, response)
            return
        try:
            offer = parse_sdp(sdp.decode("utf-8", "replace"))
            chosen = negotiate(offer)
        except SdpError as exc:
            self._respond(tx, response_to(request, 400, f"Bad SDP: {exc}"[:80], to_tag=new_tag()))
            return
        except NotAcceptable:
            response = response_to(request, 488, to_tag=new_tag())
            response.headers.add("Warning", '304 voicebot "PCMU or PCMA over RTP/AVP required"')
            self._respond(tx, response)
            return
        self._respond(tx, response_to(request, 100))
        self._answering.add(request.call_id)
        asyncio.ensure_future(self._answer(request, tx, addr, offer, chosen, verdict.trunk))

    async def _answer(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int], offer, chosen,  # type: ignore[no-untyped-def]
                      trunk: str | None) -> None:
        host = self.config.public_host
        contact = f"sip:voicebot@{host}:{self.config.port}"
        dialog = SipDialog.from_invite(request, contact)
        if chosen is None:  # no offer yet: silent until the ACK's answer says where and how
            rtp = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), ("0.0.0.0", 0),
                             inactivity_timeout_s=self.config.rtp_timeout_s, on_hold=True)
        else:
            rtp = RtpSession(RtpReceiver(chosen.payload_type, chosen.codec, chosen.dtmf_payload_type),
                             RtpSender(chosen.payload_type, chosen.codec), (chosen.remote_ip, chosen.remote_port),
                             inactivity_timeout_s=self.config.rtp_timeout_s, on_hold=chosen.on_hold)
        try:
            port = await rtp.open(self.config.rtp_host or self.config.host)
        except OSError as exc:
            log.error("SIP: no RTP port for %s: %s", request.call_id, exc)
            self._answering.discard(request.call_id)
            self._respond(tx, response_to(request, 503, to_tag=dialog.local_tag))
            return
        call = SipCall(dialog, tx, rtp, addr, transport="TCP" if tx.reliable else "UDP", trunk=trunk)
        # a transfer to a configured target keeps the caller's media for a bridge or the bot
        rtp.retain = lambda reason: reason.startswith("transfer:") and reason[9:] in self.config.transfer_targets
        self.calls[request.call_id] = call
        self._answering.discard(request.call_id)
        if self.config.provisional in ("180", "183"):
            self._respond(tx, dialog.answer(request, int(self.config.provisional)))
        if self.config.answer_after_s > 0:
            await asyncio.sleep(self.config.answer_after_s)
            if self.calls.get(request.call_id) is not call:  # cancelled while ringing
                return
        self.session_counter += 1
        if chosen is None:
            body = build_offer(host, port, self.session_counter).encode()
            call.awaiting_answer = True
        else:
            body = build_answer(offer, chosen, host, port, self.session_counter).encode()
        self._respond(tx, dialog.answer(request, 200, body, "application/sdp"))
        call.answered = True

    def _on_reinvite(self, call: SipCall, request: SipRequest, tx: ServerTransaction) -> None:
        """Hold, unhold, a new media address, a session refresh: answer with our SDP."""
        sdp = sdp_body(request.headers.get("Content-Type") or "", request.body) if request.body else None
        try:
            offer = parse_sdp(sdp.decode("utf-8", "replace")) if sdp else None
            chosen = negotiate(offer) if offer is not None else None
        except (SdpError, NotAcceptable):
            self._respond(tx, call.dialog.answer(request, 488))
            return
        call.dialog.remote_cseq = request.cseq[0]
        self.session_counter += 1
        if offer is None or chosen is None:  # an offerless refresh: we offer, the ACK answers
            body = build_offer(self.config.public_host, call.rtp.local_port, self.session_counter).encode()
            call.awaiting_answer = True
        else:
            call.rtp.configure(chosen.codec, chosen.payload_type, chosen.dtmf_payload_type,
                               (chosen.remote_ip, chosen.remote_port), chosen.on_hold)
            body = build_answer(offer, chosen, self.config.public_host, call.rtp.local_port, self.session_counter).encode()
        self._respond(tx, call.dialog.answer(request, 200, body, "application/sdp"))

    def _on_ack(self, request: SipRequest) -> None:
        self.transactions.ack_2xx(request.call_id, request.cseq[0])
        call = self.calls.get(request.call_id)
        if call is None or not call.answered:
            return
        if call.awaiting_answer and not self._take_answer(call, request):
            return
        if call.started:
            return
        call.started = True
        call.dialog.state = "confirmed"
        caller = call.dialog.remote
        call.call_id = self.start_call(call.rtp, "sip", _caller_number(caller))
        # what an operator needs to find this call in the PBX's logs too
        self._record(call, "sip_call", {"trunk": call.trunk, "source": f"{call.source[0]}:{call.source[1]}",
                                        "sip_call_id": call.dialog.call_id, "from": caller[:200]})
        asyncio.ensure_future(self._watch(call))

    def _take_answer(self, call: SipCall, ack: SipRequest) -> bool:
        """The SDP answer to our offer rides in the ACK; without a usable one the call ends (§13.3.1.4)."""
        call.awaiting_answer = False
        sdp = sdp_body(ack.headers.get("Content-Type") or "", ack.body) if ack.body else None
        try:
            if sdp is None:
                raise SdpError("the ACK carries no SDP answer")
            chosen = negotiate(parse_sdp(sdp.decode("utf-8", "replace")))
        except (SdpError, NotAcceptable) as exc:
            SIP_MESSAGES.labels("bad_answer_in_ack").inc()
            log.info("SIP: %s: %s; hanging up", call.dialog.call_id, exc)
            call.dialog.state = "confirmed"
            asyncio.ensure_future(self.hang_up(call, "no_sdp_answer"))
            return False
        call.rtp.configure(chosen.codec, chosen.payload_type, chosen.dtmf_payload_type,
                           (chosen.remote_ip, chosen.remote_port), chosen.on_hold)
        return True

    async def _watch(self, call: SipCall) -> None:
        """When the bot lets go of the call: transfer it (REFER, or a bridge that keeps the
        caller if the target fails), or hang up with a BYE."""
        while True:
            await call.rtp.wait_closed()
            reason = call.rtp.close_reason or "ended"
            log.info("SIP call %s: bot done (%s); rtp %s", call.dialog.call_id, reason, call.rtp.receiver.stats)
            target = self.config.transfer_targets.get(reason[9:]) if reason.startswith("transfer:") else None
            if call.dialog.state != "confirmed" or call.rtp.released or target is None:
                break
            outcome = await self._transfer(call, target)
            if outcome.get("kept") and call.dialog.state == "confirmed" and not call.rtp.released:
                queue = reason[9:]
                if call.rtp.closed:
                    call.rtp.reopen()  # a bridge has already reopened it; after a REFER it is ours again
                if self.resume_call is not None and await self.resume_call(call.rtp, call.call_id or "", queue,
                                                                           outcome.get("target_status")):
                    continue  # back with the bot; watch for its next hang-up or transfer
            reason = outcome.get("end_reason", "transfer_failed" if not outcome["ok"] else reason)
            break
        await self.hang_up(call, reason)

    async def _transfer(self, call: SipCall, target: TransferTarget) -> dict[str, Any]:
        from voicebot.sip.bridge import bridge
        from voicebot.sip.refer import refer

        outcome: dict[str, Any] = {"ok": False}
        if target.method == "refer":
            outcome = await refer(self, call, target.uri)
            self._record(call, "sip_transfer", {"method": "REFER", "target": target.uri, **outcome})
            refused = outcome.get("refer_status") is not None and outcome["refer_status"] >= 300
            if not refused or call.dialog.state != "confirmed":
                # a transferee whose new call failed is still in this dialog (RFC 3515): keep it
                outcome["kept"] = not outcome["ok"] and outcome.get("target_status") is not None
                return outcome
            log.info("SIP: REFER refused for %s; bridging instead", call.dialog.call_id)
        outcome = await bridge(self, call, target)
        self._record(call, "sip_transfer", {"method": "bridge", "target": target.uri,
                                            **{k: v for k, v in outcome.items() if k != "end_reason"}})
        return outcome

    def on_response(self, key: tuple[str, int], handler: Callable[[SipResponse], None] | None) -> None:
        """Route responses for (Call-ID, CSeq) of a request we sent to ``handler`` (None: stop)."""
        if handler is None:
            self._responses.pop(key, None)
        else:
            self._responses[key] = handler

    def _record(self, call: SipCall, kind: str, data: dict[str, Any]) -> None:
        if self.records is not None and call.call_id:
            self.records.event(call.call_id, kind, data)

    async def request(self, call: SipCall, method: str, extra: list[tuple[str, str]], timeout_s: float = 8.0) -> int:
        """Send an in-dialog request, retransmitting over UDP (T1 doubling), until a final answer."""
        request = call.dialog.request(method, self.config.public_host, self.config.port, call.transport, extra=extra)
        key = (request.call_id, request.cseq[0])
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def answered(response: SipResponse) -> None:
            if response.status >= 200 and not waiter.done():
                waiter.set_result(response.status)

        self._responses[key] = answered
        data, interval, deadline = request.encode(), 0.5, time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                self.send(data, call.source)
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), interval if call.transport == "UDP" else timeout_s)
                except asyncio.TimeoutError:
                    interval = min(interval * 2, 4.0)
            return 408
        finally:
            self._responses.pop(key, None)

    def on_notify(self, call_id: str, handler: Callable[[int], None] | None) -> None:
        """Route the sipfrag statuses of a REFER's NOTIFYs on ``call_id`` (None: stop)."""
        if handler is None:
            self._notify.pop(call_id, None)
        else:
            self._notify[call_id] = handler

    def _on_notify(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int]) -> None:
        call = self.calls.get(request.call_id)
        handler = self._notify.get(request.call_id)
        if call is None or handler is None:
            self._respond(tx, response_to(request, 481))
            return
        self._respond(tx, call.dialog.answer(request, 200))
        status = sipfrag_status(request.body)
        if status is not None:
            handler(status)

    async def hang_up(self, call: SipCall, reason: str) -> None:
        if call.dialog.state == "terminated":
            await call.rtp.release()
            return
        call.dialog.state = "terminated"
        self.calls.pop(call.dialog.call_id, None)
        if call.answered:  # BYE is retransmitted until answered (Timer E), in the background
            bye = asyncio.ensure_future(self.request(call, "BYE", [("Reason", f'SIP;cause=200;text="{reason[:60]}"')]))
            self._byes.add(bye)
            bye.add_done_callback(self._byes.discard)
        await call.rtp.close(reason)
        await call.rtp.release()

    def _on_bye(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int]) -> None:
        call = self.calls.pop(request.call_id, None)
        if call is None:
            self._respond(tx, response_to(request, 481))
            return
        call.dialog.state = "terminated"
        self._respond(tx, call.dialog.answer(request, 200))

        async def gone() -> None:
            await call.rtp.close("caller_bye")
            await call.rtp.release()  # even if a transfer was keeping the media

        asyncio.ensure_future(gone())

    def _on_cancel(self, request: SipRequest, tx: ServerTransaction, addr: tuple[str, int]) -> None:
        invite = self.transactions.find_invite(request.call_id, request.cseq[0])
        if invite is None:
            self._respond(tx, response_to(request, 481))
            return
        self._respond(tx, response_to(request, 200, to_tag=new_tag()))
        call = self.calls.get(request.call_id)
        if invite.state in ("trying", "proceeding"):
            tag = call.dialog.local_tag if call else new_tag()
            self._respond(invite, response_to(invite.request, 487, to_tag=tag))
            if call is not None:
                self.calls.pop(request.call_id, None)
                call.dialog.state = "terminated"
                asyncio.ensure_future(call.rtp.close("cancelled"))


def _caller_number(from_header: str) -> str:
    from voicebot.sip.message import parse_name_addr

    try:
        uri = parse_name_addr(from_header).uri
    except SipParseError:
        return ""
    user = uri.split(":", 1)[-1].split("@", 1)[0]
    return user.split(";")[0]
