"""The SIP endpoint: the asyncio glue around the sans-I/O message, transaction, dialog, SDP and
RTP code.  It answers every request in protocol, hands each confirmed inbound call to its
owner as a ``CallerLeg``, and carries out in-dialog requests for the code that acts on calls
(``transfers.py``); what happens to a call is decided by its owner, never here."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from voicebot.legs import CallerLeg
from voicebot.sip.access import AccessPolicy, SetupLimiter
from voicebot.sip.call import Address, SipCall, new_rtp
from voicebot.sip.config import SipConfig
from voicebot.sip.dialog import ALLOW, SipDialog, new_tag, response_to
from voicebot.sip.message import SipMessage, SipRequest, SipResponse
from voicebot.sip.sdp import (NotAcceptable, Negotiated, SdpError, Session, build_answer, build_offer, negotiate, parse_sdp,
                              sdp_body)
from voicebot.sip.transaction import Output, Send, ServerTransaction, ServerTransactions, TimedOut
from voicebot.sip.transfer import sipfrag_status
from voicebot.sip.transport import SIP_MESSAGES, SipTransport

__all__ = ["SipConfig", "SipEndpoint", "StartCall"]

log = logging.getLogger(__name__)

SIP_ACCESS = Counter("voicebot_sip_access_total", "INVITEs by trunk and what access control decided",
                     ["trunk", "decision"])
KNOWN_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "PRACK", "UPDATE", "REFER", "PUBLISH"}

StartCall = Callable[[CallerLeg], str]  # a confirmed inbound call -> its record id


class SipEndpoint:
    """``start_call`` gets every inbound call once its ACK confirms it, and owns it from then
    on: it ends the call with ``leg.hang_up``.  A peer's BYE or CANCEL closes and releases the
    leg's stream, so whoever reads it sees the call end."""

    def __init__(self, config: SipConfig, start_call: StartCall) -> None:
        self.config = config
        self.start_call = start_call
        self.transport = SipTransport(self._dispatch)
        self.transactions = ServerTransactions()
        self.access = AccessPolicy(config.access_trunks(), config.realm)
        self.setups = SetupLimiter(config.max_setups_per_s, time.monotonic())
        self.calls: dict[str, SipCall] = {}
        self._answering: set[str] = set()  # INVITEs accepted, media being set up
        self._responses: dict[tuple[str, int], Callable[[SipResponse], None]] = {}  # our requests' answers
        self._notify: dict[str, Callable[[int], None]] = {}  # call → where its REFER's sipfrag statuses go
        self._byes: set[asyncio.Future[int]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._session_version = int(time.time())

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        self.config.port = await self.transport.start(self.config.host, self.config.port, self.config.tcp)
        self._timer = asyncio.create_task(self._timers(), name="sip-timers")

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await self.hang_up(call, "shutdown")
        if self._byes:  # give the BYEs a moment to be answered before the socket goes
            await asyncio.wait(set(self._byes), timeout=0.5)
            for bye in list(self._byes):
                bye.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self.transport.close()

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._out(self.transactions.tick(time.monotonic()))

    # ------------------------------------------------------------------ what transfer code uses

    def send(self, data: bytes, addr: Address) -> None:
        self.transport.send(data, addr)

    def next_session_version(self) -> int:
        self._session_version += 1
        return self._session_version

    def track(self, call: SipCall) -> None:
        self.calls[call.dialog.call_id] = call

    def on_response(self, key: tuple[str, int], handler: Callable[[SipResponse], None] | None) -> None:
        if handler is None:
            self._responses.pop(key, None)
        else:
            self._responses[key] = handler

    def on_notify(self, call_id: str, handler: Callable[[int], None] | None) -> None:
        if handler is None:
            self._notify.pop(call_id, None)
        else:
            self._notify[call_id] = handler

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

    async def hang_up(self, call: SipCall, reason: str) -> None:
        """BYE (retransmitted in the background until answered) and free the media; idempotent."""
        if call.dialog.state == "terminated":
            await call.rtp.release()
            return
        call.dialog.state = "terminated"
        self.calls.pop(call.dialog.call_id, None)
        if call.answered:
            bye = asyncio.ensure_future(self.request(call, "BYE", [("Reason", f'SIP;cause=200;text="{reason[:60]}"')]))
            self._byes.add(bye)
            bye.add_done_callback(self._byes.discard)
        await self._drop(call, reason)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message: SipMessage, addr: Address, reliable: bool) -> None:
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
        on_request = {"INVITE": self._on_invite, "BYE": self._on_bye, "CANCEL": self._on_cancel,
                      "OPTIONS": self._on_options, "NOTIFY": self._on_notify}.get(message.method)
        if on_request is not None:
            if message.method not in ("INVITE", "CANCEL") and self._unsupported(message, tx):
                return  # (an INVITE is checked after who sent it)
            on_request(message, tx, addr)
        else:
            self._respond(tx, response_to(message, 405 if message.method in KNOWN_METHODS else 501, to_tag=new_tag()),
                          allow=True)

    def _out(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.send(out.data, out.address)
            elif isinstance(out, TimedOut) and out.kind == "no_ack_2xx":
                call = self.calls.get(out.call_id)
                if call is not None:
                    log.warning("SIP: no ACK for our 200 on %s; hanging up", out.call_id)
                    asyncio.ensure_future(self.hang_up(call, "no_ack"))

    def _respond(self, tx: ServerTransaction, response: SipResponse, allow: bool = False) -> None:
        if allow:
            response.headers.add("Allow", ALLOW)
        response.headers.add("Server", "voicebot")
        self._out(self.transactions.respond(tx, response, time.monotonic()))

    def _unsupported(self, request: SipRequest, tx: ServerTransaction) -> bool:
        """§8.2.2.3: we support no extensions, so any Require gets 420 naming them."""
        required = [r for r in request.headers.get_all("Require") if r.strip()]
        if required:
            response = response_to(request, 420, to_tag=new_tag())
            response.headers.add("Unsupported", ", ".join(required))
            self._respond(tx, response)
        return bool(required)

    def _take_setup(self) -> bool:
        if self.setups.take(time.monotonic()):
            return True
        SIP_MESSAGES.labels("rate_limited").inc()
        return False

    def _on_options(self, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        response = response_to(request, 200, to_tag=new_tag())
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", "")
        self._respond(tx, response, allow=True)

    # ------------------------------------------------------------------ a call's setup

    def _on_invite(self, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
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
        if not self._take_setup() or inbound + len(self._answering) >= self.config.max_calls:
            response = response_to(request, 503, to_tag=new_tag())
            response.headers.add("Retry-After", "5")
            self._respond(tx, response)
            return
        offer: Session | None = None
        chosen: Negotiated | None = None
        if request.body:  # else a delayed offer (RFC 3264 §4 via §13.2.1): we offer in the 200, the ACK answers
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
        asyncio.ensure_future(self._answer(request, tx, addr, verdict.trunk, offer, chosen))

    async def _answer(self, request: SipRequest, tx: ServerTransaction, addr: Address, trunk: str | None,
                      offer: Session | None, chosen: Negotiated | None) -> None:
        dialog = SipDialog.from_invite(request, self.config.contact)
        rtp = new_rtp(self.config, chosen)
        try:
            port = await rtp.open(self.config.media_host)
        except OSError as exc:
            log.error("SIP: no RTP port for %s: %s", request.call_id, exc)
            self._answering.discard(request.call_id)
            self._respond(tx, response_to(request, 503, to_tag=dialog.local_tag))
            return
        call = SipCall(dialog, tx, rtp, addr, transport="TCP" if tx.reliable else "UDP", trunk=trunk)
        self.calls[request.call_id] = call
        self._answering.discard(request.call_id)
        if self.config.provisional in ("180", "183"):
            self._respond(tx, dialog.answer(request, int(self.config.provisional)))
        if self.config.answer_after_s > 0:
            await asyncio.sleep(self.config.answer_after_s)
            if self.calls.get(request.call_id) is not call:  # cancelled while ringing
                return
        host, version = self.config.public_host, self.next_session_version()
        if offer is None or chosen is None:
            body = build_offer(host, port, version).encode()
            call.awaiting_answer = True
        else:
            body = build_answer(offer, chosen, host, port, version).encode()
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
        host, port, version = self.config.public_host, call.rtp.local_port, self.next_session_version()
        if offer is None or chosen is None:  # an offerless refresh: we offer, the ACK answers
            body = build_offer(host, port, version).encode()
            call.awaiting_answer = True
        else:
            call.use(chosen)
            body = build_answer(offer, chosen, host, port, version).encode()
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
        # what an operator needs to find this call in the PBX's logs too
        details = {"trunk": call.trunk, "source": f"{call.source[0]}:{call.source[1]}",
                   "sip_call_id": call.dialog.call_id, "from": call.dialog.remote[:200]}
        leg = CallerLeg(call.rtp, "sip", call.dialog.remote_user, functools.partial(self.hang_up, call), details)
        try:
            call.record_id = self.start_call(leg)
        except Exception:  # no bot for it (at capacity, shutting down): never leave it answered and silent
            log.exception("SIP: could not start call %s; hanging up", call.dialog.call_id)
            asyncio.ensure_future(self.hang_up(call, "no_capacity"))

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
        call.use(chosen)
        return True

    # ------------------------------------------------------------------ the peer's requests in a call

    def _on_notify(self, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        call = self.calls.get(request.call_id)
        handler = self._notify.get(request.call_id)
        if call is None or handler is None:
            self._respond(tx, response_to(request, 481))
            return
        self._respond(tx, call.dialog.answer(request, 200))
        status = sipfrag_status(request.body)
        if status is not None:
            handler(status)

    def _on_bye(self, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        call = self.calls.pop(request.call_id, None)
        if call is None:
            self._respond(tx, response_to(request, 481))
            return
        call.dialog.state = "terminated"
        self._respond(tx, call.dialog.answer(request, 200))
        asyncio.ensure_future(self._drop(call, "agent_bye" if call.outbound else "caller_bye"))

    def _on_cancel(self, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        invite = self.transactions.find_invite(request.call_id, request.cseq[0])
        if invite is None:
            self._respond(tx, response_to(request, 481))
            return
        self._respond(tx, response_to(request, 200, to_tag=new_tag()))
        call = self.calls.get(request.call_id)
        if invite.state in ("trying", "proceeding"):
            self._respond(invite, response_to(invite.request, 487, to_tag=call.dialog.local_tag if call else new_tag()))
            if call is not None:
                self.calls.pop(request.call_id, None)
                call.dialog.state = "terminated"
                asyncio.ensure_future(self._drop(call, "cancelled"))

    @staticmethod
    async def _drop(call: SipCall, reason: str) -> None:
        """The call is over on the wire: end its stream's user and free the media, even if
        the call's owner was keeping it (``retain``) for a transfer."""
        log.info("SIP call %s ended (%s); rtp %s", call.dialog.call_id, reason, call.rtp.receiver.stats)
        await call.rtp.close(reason)
        await call.rtp.release()
