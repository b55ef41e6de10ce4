"""The SIP endpoint: the asyncio glue around the sans-I/O message, transaction, dialog, SDP and
RTP code.  It answers every request in protocol, hands each confirmed inbound call to its
owner as a ``CallerLeg``, and carries out in-dialog requests for the code that acts on calls
(``transfers.py``); what happens to a call is decided by its owner, never here.

Only the parties of a call can touch it, and nobody keeps state here without passing the
limits first.  What a request must get past before a transaction is created for it:

- a new INVITE: its source's setup rate (``SourceLimiter``: 503 + Retry-After), access
  control (401 or 403) and room in the transaction table (503 + Retry-After), all answered
  statelessly (RFC 3261 §8.2.7); then, in its transaction, the global setup rate, the
  edge's call limit and the call owner's ``can_take`` (503 + Retry-After);
- BYE, NOTIFY and re-INVITE: a dialog matched by Call-ID *and* tags (§12.2.2), else a
  stateless 481; a re-INVITE (or the ACK that answers our offer) that could move the media
  must also come from the dialog's peer (``SipCall.from_peer``), else 403;
- CANCEL: its INVITE's transaction (branch, Call-ID, CSeq number, From tag), else 481;
- anything else outside a dialog (OPTIONS, methods we refuse): room in the table, else it is
  dropped (answering a flood of those would only help reflect it elsewhere);
- an ACK creates nothing; one that matches no dialog by tags is ignored."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from voicebot.legs import CallerLeg
from voicebot.sip.access import AccessPolicy, ConnectionLimiter, SetupLimiter, SourceLimiter, Verdict
from voicebot.sip.call import Address, SipCall, new_rtp
from voicebot.sip.config import SipConfig
from voicebot.sip.dialog import ALLOW, SipDialog, new_tag, response_to
from voicebot.sip.message import SipMessage, SipParseError, SipRequest, SipResponse, tag_of
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
RETRY_AFTER_S = "5"


class SipEndpoint:
    """``start_call`` gets every inbound call once its ACK confirms it, and owns it from then
    on: it ends the call with ``leg.hang_up``.  A peer's BYE or CANCEL closes and releases the
    leg's stream, so whoever reads it sees the call end.  ``can_take`` is the call owner's
    word on whether one more call can have a bot (one limit for every channel): it is asked
    when an INVITE arrives and again just before the 200, and a no is a 503 + Retry-After."""

    def __init__(self, config: SipConfig, start_call: StartCall, can_take: Callable[[], bool] = lambda: True) -> None:
        self.config = config
        self.start_call = start_call
        self.can_take = can_take
        self.transport = SipTransport(self._dispatch,
                                      ConnectionLimiter(config.tcp_max_connections, config.tcp_max_per_source),
                                      config.tcp_idle_timeout_s, self._carries_call)
        self.transactions = ServerTransactions(max_size=config.max_transactions)
        self.access = AccessPolicy(config.access_trunks(), config.realm, config.digest_algorithms)
        self.setups = SetupLimiter(config.max_setups_per_s, time.monotonic())
        self.source_setups = SourceLimiter(config.setups_per_source_per_s)
        self.new_media = new_rtp  # how a call's RTP is made (the fuzzer stands in one without sockets)
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
            try:
                key = (message.call_id, message.cseq[0])
            except SipParseError:  # no CSeq to match it to a request of ours by
                SIP_MESSAGES.labels("malformed").inc()
                return
            handler = self._responses.get(key)
            if handler is not None:
                handler(message)
            return
        method = message.method
        SIP_MESSAGES.labels(method.lower() if method in ALLOW.split(", ") else "other").inc()
        now = time.monotonic()
        if method == "ACK":
            self.transactions.receive(message, addr, now, reliable)
            self._on_ack(message, addr)
            return
        known = self.transactions.known(message)  # a retransmission: its transaction answers it
        if method == "INVITE" and tag_of(message.headers.get("To")) is None:
            verdict = None if known else self._admit_call(message, addr, now)
            if verdict is None and not known:
                return
            tx = self._transaction(message, addr, now, reliable)
            if tx is not None and verdict is not None:
                self._on_invite(message, tx, addr, verdict)
        elif method in ("INVITE", "BYE", "NOTIFY"):
            call = self._dialog_of(message)
            if call is None and not known:
                self._stateless(message, addr, 481)
                return
            tx = self._transaction(message, addr, now, reliable)
            if (tx is None or call is None or self._unsupported(message, tx) or not self._from_peer(call, message, tx, addr)
                    or not self._in_order(call, message, tx)):
                return
            {"INVITE": self._on_reinvite, "BYE": self._on_bye, "NOTIFY": self._on_notify}[method](call, message, tx, addr)
        elif method == "CANCEL":
            invite = self.transactions.invite_for(message)
            if invite is None and not known:
                self._stateless(message, addr, 481)
                return
            tx = self._transaction(message, addr, now, reliable)
            if tx is not None and invite is not None:
                self._on_cancel(message, invite, tx)
        else:
            if not known and not self.transactions.room(invite=False):
                SIP_MESSAGES.labels("overload_dropped").inc()
                return
            tx = self._transaction(message, addr, now, reliable)
            if tx is None:
                return
            if method == "OPTIONS":
                if not self._unsupported(message, tx):
                    self._on_options(message, tx)
            else:
                self._respond(tx, response_to(message, 405 if method in KNOWN_METHODS else 501, to_tag=new_tag()),
                              allow=True)

    def _transaction(self, request: SipRequest, addr: Address, now: float, reliable: bool) -> ServerTransaction | None:
        """A new server transaction, or None for a retransmission (answered again here)."""
        tx, outputs = self.transactions.receive(request, addr, now, reliable)
        self._out(outputs)
        return tx

    def _admit_call(self, request: SipRequest, addr: Address, now: float) -> Verdict | None:
        """The checks a new INVITE passes before anything is kept for it; None when it did not
        (and has been answered, statelessly)."""
        if not self.source_setups.take(addr[0], now):
            SIP_MESSAGES.labels("rate_limited_source").inc()
            self._stateless(request, addr, 503, [("Retry-After", RETRY_AFTER_S)])
            return None
        verdict = self.access.check(addr[0], "INVITE", request.uri, request.headers.get("Authorization"))
        SIP_ACCESS.labels(verdict.trunk or "none", verdict.decision).inc()
        if verdict.decision == "challenge":
            self._stateless(request, addr, 401, [("WWW-Authenticate", value) for value in verdict.challenge])
            return None
        if verdict.decision != "allow":
            log.info("SIP: refused INVITE from %s (%s)", addr, verdict.why)
            self._stateless(request, addr, 403)
            return None
        if not self.transactions.room(invite=True):
            SIP_MESSAGES.labels("overload").inc()
            self._stateless(request, addr, 503, [("Retry-After", RETRY_AFTER_S)])
            return None
        return verdict

    def _dialog_of(self, request: SipRequest) -> SipCall | None:
        """The call whose dialog ``request`` is in: Call-ID and both tags (§12.2.2)."""
        call = self.calls.get(request.call_id)
        if call is None or not call.dialog.matches(request):
            if call is not None:
                SIP_MESSAGES.labels("dialog_mismatch").inc()
                log.info("SIP: %s for %s with tags that are not the dialog's; 481", request.method, request.call_id)
            return None
        return call

    def _from_peer(self, call: SipCall, request: SipRequest, tx: ServerTransaction, addr: Address) -> bool:
        """A re-INVITE can move the media: only from the dialog's peer (``SipCall.from_peer``)."""
        if request.method != "INVITE" or call.from_peer(addr):
            return True
        SIP_MESSAGES.labels("reinvite_refused").inc()
        log.warning("SIP: re-INVITE for %s from %s:%d, not the dialog's peer; 403", call.dialog.call_id, *addr)
        self._respond(tx, call.dialog.answer(request, 403))
        return False

    def _in_order(self, call: SipCall, request: SipRequest, tx: ServerTransaction) -> bool:
        """§12.2.2: a request with a lower CSeq than the peer's last is out of order (500)."""
        if request.cseq[0] < call.dialog.remote_cseq:
            self._respond(tx, call.dialog.answer(request, 500, extra=[("Retry-After", "1")]))
            return False
        call.dialog.remote_cseq = request.cseq[0]
        return True

    def _stateless(self, request: SipRequest, addr: Address, status: int,
                   headers: list[tuple[str, str]] | None = None) -> None:
        """Answer without keeping anything (§8.2.7): a retransmission is simply answered again."""
        response = response_to(request, status, to_tag=new_tag())
        for name, value in headers or []:
            response.headers.add(name, value)
        response.headers.add("Server", "voicebot")
        self.send(response.encode(), addr)

    def _carries_call(self, addr: Address) -> bool:
        return any(call.source == addr for call in self.calls.values())

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

    def _owner_can_take(self) -> bool:
        try:
            return bool(self.can_take())
        except Exception:  # a broken owner takes no calls, and says so once per INVITE
            log.exception("SIP: can_take failed; refusing the call")
            return False

    def _busy(self, tx: ServerTransaction, response: SipResponse) -> None:
        response.headers.add("Retry-After", RETRY_AFTER_S)
        self._respond(tx, response)

    def _on_options(self, request: SipRequest, tx: ServerTransaction) -> None:
        response = response_to(request, 200, to_tag=new_tag())
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", "")
        self._respond(tx, response, allow=True)

    # ------------------------------------------------------------------ a call's setup

    def _on_invite(self, request: SipRequest, tx: ServerTransaction, addr: Address, verdict: Verdict) -> None:
        if request.call_id in self.calls or request.call_id in self._answering:
            # a second INVITE without a To tag for a call we have: merged or looped, or a stranger (§8.2.2.2)
            self._respond(tx, response_to(request, 482, to_tag=new_tag()))
            return
        if self._unsupported(request, tx):
            return
        inbound = sum(1 for c in self.calls.values() if not c.outbound)  # agent legs don't count
        if (not self._take_setup() or inbound + len(self._answering) >= self.config.max_calls
                or not self._owner_can_take()):
            self._busy(tx, response_to(request, 503, to_tag=new_tag()))
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
        rtp = self.new_media(self.config, chosen)
        try:
            port = await rtp.open(self.config.media_host)
        except OSError as exc:
            log.error("SIP: no RTP port for %s: %s", request.call_id, exc)
            self._answering.discard(request.call_id)
            self._respond(tx, response_to(request, 503, to_tag=dialog.local_tag))
            return
        if tx.state not in ("trying", "proceeding"):  # CANCELled while the media was set up
            self._answering.discard(request.call_id)
            await rtp.release()
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
        if not self._owner_can_take():  # the last bot went to another channel's call meanwhile
            self.calls.pop(request.call_id, None)
            dialog.state = "terminated"
            self._busy(tx, dialog.answer(request, 503))
            await rtp.release()
            return
        host, version = self.config.public_host, self.next_session_version()
        if offer is None or chosen is None:
            body = build_offer(host, port, version).encode()
            call.awaiting_answer = True
        else:
            body = build_answer(offer, chosen, host, port, version).encode()
        self._respond(tx, dialog.answer(request, 200, body, "application/sdp"))
        call.answered = True

    def _on_reinvite(self, call: SipCall, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        """Hold, unhold, a new media address, a session refresh (from the dialog's peer, as
        ``_dispatch`` made sure): answer with our SDP."""
        sdp = sdp_body(request.headers.get("Content-Type") or "", request.body) if request.body else None
        try:
            offer = parse_sdp(sdp.decode("utf-8", "replace")) if sdp else None
            chosen = negotiate(offer) if offer is not None else None
        except (SdpError, NotAcceptable):
            self._respond(tx, call.dialog.answer(request, 488))
            return
        host, port, version = self.config.public_host, call.rtp.local_port, self.next_session_version()
        if offer is None or chosen is None:  # an offerless refresh: we offer, the ACK answers
            body = build_offer(host, port, version).encode()
            call.awaiting_answer = True
        else:
            call.use(chosen)
            body = build_answer(offer, chosen, host, port, version).encode()
        self._respond(tx, call.dialog.answer(request, 200, body, "application/sdp"))

    def _on_ack(self, request: SipRequest, addr: Address) -> None:
        """The ACK for our 2xx: only the dialog's (tags), and one carrying the answer to our
        offer only from its peer; others are ignored, and our 2xx goes on until the real one."""
        call = self._dialog_of(request)
        if call is None or (call.awaiting_answer and not call.from_peer(addr)):
            return
        self.transactions.ack_2xx(request.call_id, request.cseq[0])
        if not call.answered:
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

    def _on_notify(self, call: SipCall, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        handler = self._notify.get(call.dialog.call_id)
        if handler is None:
            self._respond(tx, call.dialog.answer(request, 481))
            return
        self._respond(tx, call.dialog.answer(request, 200))
        status = sipfrag_status(request.body)
        if status is not None:
            handler(status)

    def _on_bye(self, call: SipCall, request: SipRequest, tx: ServerTransaction, addr: Address) -> None:
        self.calls.pop(call.dialog.call_id, None)
        call.dialog.state = "terminated"
        self._respond(tx, call.dialog.answer(request, 200))
        asyncio.ensure_future(self._drop(call, "agent_bye" if call.outbound else "caller_bye"))

    def _on_cancel(self, request: SipRequest, invite: ServerTransaction, tx: ServerTransaction) -> None:
        """``invite`` is the transaction the CANCEL matched (``ServerTransactions.invite_for``)."""
        self._respond(tx, response_to(request, 200, to_tag=new_tag()))
        call = self.calls.get(request.call_id)
        if call is not None and call.invite_tx is not invite:
            call = None  # a CANCEL of a re-INVITE: answered, and the call goes on
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
