"""A SIP call as the edge holds it: one dialog and its RTP, a caller's call voicebot answered
or a leg it placed (an agent's phone).  Also what the code that acts on calls (REFER, bridge,
dialling out) needs from the endpoint, as a protocol: it sits on this floor so that code and
the endpoint both import it and neither imports the other's module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from voicebot.sip.config import SipConfig
from voicebot.sip.dialog import SipDialog
from voicebot.sip.message import SipResponse
from voicebot.sip.rtp import RtpReceiver, RtpSender, RtpSession
from voicebot.sip.sdp import Negotiated
from voicebot.sip.transaction import ServerTransaction
from voicebot.sip.transfer import uri_address

Address = tuple[str, int]


@dataclass
class SipCall:
    dialog: SipDialog
    invite_tx: ServerTransaction | None  # None for a leg we placed
    rtp: RtpSession
    source: Address  # where its signalling goes
    answered: bool = False
    started: bool = False  # handed to start_call
    record_id: str | None = None  # what start_call returned, for the logs
    transport: str = "UDP"
    outbound: bool = False  # a leg voicebot placed (an agent's phone)
    trunk: str | None = None  # which trunk access control matched
    awaiting_answer: bool = False  # we sent the offer (delayed offer): the ACK brings the answer

    @property
    def live(self) -> bool:
        """Confirmed and with its media still there: something can still be done with it."""
        return self.dialog.state == "confirmed" and not self.rtp.released

    def from_peer(self, source: Address) -> bool:
        """Whether a request that would move this call's media (a re-INVITE, or the ACK that
        answers our offer) may come from ``source``: besides the dialog's tags (``SipDialog.
        matches``) it must come from the host this dialog's signalling comes from (where we
        send our requests), or from the host of its remote target (Contact) or first route.
        Ports are not compared: a TCP peer reconnects from a new one, and SBCs send from pools."""
        hosts = {self.source[0]}
        for uri in (self.dialog.remote_target, *self.dialog.route_set[:1]):
            try:
                hosts.add(uri_address(uri)[0])
            except ValueError:
                pass
        return source[0] in hosts

    def use(self, chosen: Negotiated) -> None:
        """Apply an offer/answer's outcome to the media."""
        self.rtp.configure(chosen.codec, chosen.payload_type, chosen.dtmf_payload_type,
                           (chosen.remote_ip, chosen.remote_port), chosen.on_hold)


def new_rtp(config: SipConfig, chosen: Negotiated | None, remote: Address = ("0.0.0.0", 0)) -> RtpSession:
    """RTP for a negotiated session, or (``chosen`` None: we offered and the answer is still to
    come) a silent PCMU one towards ``remote``, configured once the answer says how."""
    if chosen is None:
        return RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), remote,
                          inactivity_timeout_s=config.rtp_timeout_s, on_hold=True)
    return RtpSession(RtpReceiver(chosen.payload_type, chosen.codec, chosen.dtmf_payload_type),
                      RtpSender(chosen.payload_type, chosen.codec), (chosen.remote_ip, chosen.remote_port),
                      inactivity_timeout_s=config.rtp_timeout_s, on_hold=chosen.on_hold)


class Signalling(Protocol):
    """What REFER, the bridge and dialling out ask of the SIP endpoint (``SipEndpoint``)."""

    config: SipConfig
    calls: dict[str, SipCall]  # by SIP Call-ID: the calls in-dialog requests can reach

    def send(self, data: bytes, addr: Address) -> None: ...

    def next_session_version(self) -> int:
        """A fresh SDP o= session id/version."""
        ...

    def track(self, call: SipCall) -> None:
        """A leg we placed: route its in-dialog requests (the phone's BYE) to it."""
        ...

    def on_response(self, key: tuple[str, int], handler: Callable[[SipResponse], None] | None) -> None:
        """Route responses to our request (Call-ID, CSeq number) to ``handler`` (None: stop)."""
        ...

    def on_notify(self, call_id: str, handler: Callable[[int], None] | None) -> None:
        """Route the sipfrag statuses of a REFER's NOTIFYs on ``call_id`` (None: stop)."""
        ...

    async def request(self, call: SipCall, method: str, extra: list[tuple[str, str]], timeout_s: float = 8.0) -> int:
        """Send an in-dialog request until a final answer; its status (408: none came)."""
        ...

    async def hang_up(self, call: SipCall, reason: str) -> None:
        """BYE (retransmitted until answered) and free the media; idempotent."""
        ...
