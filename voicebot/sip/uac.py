"""An INVITE we send (RFC 3261 §17.1.1 client transaction, §13.2 UAC core): an agent's phone
rung for the ACD, or a bridged transfer's target.  No sockets and no clock of its own:
``dialer.py`` feeds responses and the time in, and sends the bytes that come out."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voicebot.sip.dialog import SipDialog, new_branch, new_tag
from voicebot.sip.message import SipParseError, SipRequest, SipResponse
from voicebot.sip.transaction import T1, T2


@dataclass
class InviteOutcome:
    """What became of the INVITE: ``status`` is the final answer (408 when nobody answered)."""

    status: int
    reason: str = ""
    answer: bytes = b""  # the SDP of a 2xx
    dialog: SipDialog | None = None


@dataclass
class OutboundInvite:
    request: SipRequest
    contact: str
    reliable: bool = False
    state: str = "calling"  # calling | proceeding | accepted | completed | terminated
    outcome: InviteOutcome | None = None
    provisional: int = 0  # the last 1xx seen (180 → the agent's phone is ringing)
    _ack: bytes | None = None
    _retransmit_at: float | None = None
    _interval: float = T1
    _timeout_at: float = 0.0
    _cancel_sent: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, target: str, from_uri: str, contact: str, via_host: str, via_port: int, sdp: bytes,
               now: float, transport: str = "UDP", extra: list[tuple[str, str]] | None = None) -> "OutboundInvite":
        request = SipRequest("INVITE", target)
        request.headers.add("Via", f"SIP/2.0/{transport} {via_host}:{via_port};branch={new_branch()};rport")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<{from_uri}>;tag={new_tag()}")
        request.headers.add("To", f"<{target.split('?', 1)[0]}>")
        request.headers.add("Call-ID", f"{secrets.token_hex(12)}@{via_host}")
        request.headers.add("CSeq", "1 INVITE")
        request.headers.add("Contact", f"<{contact}>")
        request.headers.add("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")
        request.headers.add("Supported", "")
        for name, value in extra or []:
            request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp
        reliable = transport != "UDP"
        invite = cls(request, contact, reliable)
        invite._retransmit_at = None if reliable else now + T1
        invite._timeout_at = now + 64 * T1  # Timer B
        return invite

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def first(self) -> bytes:
        return self.request.encode()

    def tick(self, now: float) -> list[bytes]:
        """Timer A (retransmit while nobody answered over UDP) and Timer B (give up)."""
        if self.state == "calling" and now >= self._timeout_at:
            self.state = "terminated"
            self.outcome = InviteOutcome(408, "no answer to INVITE")
            return []
        if self.state == "calling" and self._retransmit_at is not None and now >= self._retransmit_at:
            self._interval = min(self._interval * 2, T2)
            self._retransmit_at = now + self._interval
            return [self.request.encode()]
        return []

    def receive(self, response: SipResponse) -> list[bytes]:
        """A response to our INVITE: the bytes to send back (ACKs), and the outcome once final."""
        if response.cseq[1] != "INVITE":
            return []
        status = response.status
        if status < 200:
            if self.state == "calling":
                self.state = "proceeding"
                self._retransmit_at = None
            self.provisional = max(self.provisional, status)
            return []
        if 200 <= status < 300:
            if self.outcome is None or self.outcome.status >= 300:
                try:
                    dialog = SipDialog.from_2xx(self.request, response, self.contact)
                except SipParseError:
                    dialog = None
                self.outcome = InviteOutcome(status, response.reason, response.body, dialog)
                self._ack = self._ack_2xx(response).encode()
            self.state = "accepted"
            self._retransmit_at = None
            return [self._ack] if self._ack else []  # a retransmitted 2xx gets the same ACK again
        # 3xx-6xx: the transaction ACKs it itself, on the INVITE's branch (§17.1.1.3)
        if self.outcome is None:
            self.outcome = InviteOutcome(status, response.reason)
        self.state = "completed"
        self._retransmit_at = None
        return [self._ack_error(response).encode()]

    def cancel(self) -> bytes | None:
        """CANCEL a ringing INVITE (§9.1): only once something provisional has come back."""
        if self.state != "proceeding" or self._cancel_sent:
            return None
        self._cancel_sent = True
        cancel = SipRequest("CANCEL", self.request.uri)
        for name in ("Via", "From", "To", "Call-ID", "Max-Forwards"):
            cancel.headers.add(name, self.request.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{self.request.cseq[0]} CANCEL")
        return cancel.encode()

    @property
    def cancelled(self) -> bool:
        return self._cancel_sent

    def _ack_error(self, response: SipResponse) -> SipRequest:
        ack = SipRequest("ACK", self.request.uri)
        for name in ("Via", "Max-Forwards", "From", "Call-ID"):
            ack.headers.add(name, self.request.headers.get(name) or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("CSeq", f"{self.request.cseq[0]} ACK")
        return ack

    def _ack_2xx(self, response: SipResponse) -> SipRequest:
        """The ACK for a 2xx is its own transaction, sent along the dialog's route (§13.2.2.4)."""
        top = self.request.headers.get("Via") or ""
        target = self.outcome.dialog.remote_target if self.outcome and self.outcome.dialog else self.request.uri
        ack = SipRequest("ACK", target)
        ack.headers.add("Via", top.split(";branch=", 1)[0] + f";branch={new_branch()};rport")
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", self.request.headers.get("From") or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("Call-ID", self.request.call_id)
        ack.headers.add("CSeq", f"{self.request.cseq[0]} ACK")
        for route in reversed(response.headers.get_all("Record-Route")):
            ack.headers.add("Route", route)
        return ack
