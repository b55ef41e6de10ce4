"""SIP server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state): no sockets, no
clock of their own.  The endpoint feeds requests and the time in, and sends what comes out.

What this layer absorbs: retransmitted requests (answered with the last response), and the
retransmission of our own responses over UDP until the peer acknowledges them.

The table is bounded (``max_size``): the endpoint asks ``room()`` before a request may create
a transaction.  A new INVITE may use the whole table; other requests outside a dialog
(OPTIONS, REGISTER, methods we refuse) only half of it, so a flood of those cannot keep
calls out.  Requests in a live dialog and CANCELs of a live INVITE are few (they need the
dialog's tags) and always get one: a caller's BYE goes through under a flood.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from voicebot.sip.message import SipRequest, SipResponse, parse_via, tag_of

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC = "z9hG4bK"

Address = tuple[str, int]


@dataclass(frozen=True)
class Send:
    data: bytes
    address: Address


@dataclass(frozen=True)
class TimedOut:
    """The peer never acknowledged: ``kind`` is "no_ack_2xx" (hang the call up) or "no_ack"."""

    key: tuple[str, ...]
    call_id: str
    kind: str


Output = Union[Send, TimedOut]


@dataclass
class ServerTransaction:
    key: tuple[str, ...]
    request: SipRequest
    source: Address
    reliable: bool
    state: str = "trying"  # trying | proceeding | accepted | completed | confirmed | terminated
    last_response: bytes | None = None
    retransmit_at: float | None = None
    interval: float = T1
    expires_at: float | None = None
    status: int = 0

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


def transaction_key(request: SipRequest) -> tuple[str, ...]:
    vias = request.headers.get_all("Via")
    top = parse_via(vias[0]) if vias else None
    method = request.method
    if top is not None and top.branch and top.branch.startswith(MAGIC):
        sent_by = f"{top.host}:{top.port or 5060}"
        return (top.branch, sent_by, "INVITE" if request.method == "ACK" else method)
    # RFC 2543 peers: no magic cookie, match on the dialog-ish identity instead
    number, _ = request.cseq
    return (request.call_id, str(number), request.headers.get("From") or "", request.uri,
            "INVITE" if request.method == "ACK" else method)


@dataclass
class ServerTransactions:
    t1: float = T1
    t2: float = T2
    t4: float = T4
    table: dict[tuple[str, ...], ServerTransaction] = field(default_factory=dict)
    max_size: int = 4096

    def known(self, request: SipRequest) -> bool:
        """Whether ``request`` belongs to a transaction we hold (a retransmission)."""
        return transaction_key(request) in self.table

    def room(self, invite: bool) -> bool:
        """Whether a new transaction outside a dialog may be created: an INVITE while the
        table is not full, anything else while it is under half full."""
        return len(self.table) < (self.max_size if invite else self.max_size // 2)

    def receive(self, request: SipRequest, source: Address, now: float,
                reliable: bool = False) -> tuple[ServerTransaction | None, list[Output]]:
        """A new transaction for the TU, or None when the request was a retransmission or an
        ACK this layer consumed (with whatever must be resent)."""
        key = transaction_key(request)
        existing = self.table.get(key)
        if request.method == "ACK":
            if existing is not None and existing.state == "completed":
                existing.state = "confirmed"  # ACK for our non-2xx final response
                existing.retransmit_at = None
                existing.expires_at = now + (0 if existing.reliable else self.t4)
                return None, []
            return None, []  # ACK for a 2xx belongs to the dialog (see ack_2xx)
        if existing is not None:
            if existing.last_response is not None and existing.state in ("proceeding", "completed", "accepted", "trying"):
                return None, [Send(existing.last_response, existing.source)]
            return None, []
        tx = ServerTransaction(key, request, source, reliable)
        self.table[key] = tx
        if not tx.is_invite:
            tx.expires_at = now + 64 * self.t1  # bounds memory even if the TU never answers
        return tx, []

    def respond(self, tx: ServerTransaction, response: SipResponse, now: float) -> list[Output]:
        data = response.encode()
        tx.last_response = data
        tx.status = response.status
        out: list[Output] = [Send(data, tx.source)]
        if response.status < 200:
            tx.state = "proceeding"
            return out
        if tx.is_invite and response.status < 300:
            tx.state = "accepted"  # RFC 6026: 2xx retransmitted until the dialog sees the ACK
            tx.retransmit_at = None if tx.reliable else now + self.t1
            tx.interval = self.t1
            tx.expires_at = now + 64 * self.t1
        elif tx.is_invite:
            tx.state = "completed"
            tx.retransmit_at = None if tx.reliable else now + self.t1
            tx.interval = self.t1
            tx.expires_at = now + 64 * self.t1
        else:
            tx.state = "completed"
            tx.retransmit_at = None
            tx.expires_at = now + (0 if tx.reliable else 64 * self.t1)
        return out

    def ack_2xx(self, call_id: str, cseq: int) -> bool:
        """The dialog got the ACK for our 2xx: stop retransmitting it."""
        for tx in self.table.values():
            if tx.state == "accepted" and tx.request.call_id == call_id and tx.request.cseq[0] == cseq:
                tx.state = "terminated"
                tx.retransmit_at = None
                tx.expires_at = None
                return True
        return False

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        for key in list(self.table):
            tx = self.table[key]
            if tx.retransmit_at is not None and now >= tx.retransmit_at and tx.last_response is not None:
                out.append(Send(tx.last_response, tx.source))
                tx.interval = min(tx.interval * 2, self.t2)
                tx.retransmit_at += tx.interval  # on schedule, however late this tick ran
            if tx.expires_at is not None and now >= tx.expires_at:
                if tx.state == "accepted":
                    out.append(TimedOut(key, tx.request.call_id, "no_ack_2xx"))
                elif tx.state == "completed" and tx.is_invite:
                    out.append(TimedOut(key, tx.request.call_id, "no_ack"))
                del self.table[key]
            elif tx.state == "terminated":
                del self.table[key]
        return out

    def next_deadline(self) -> float | None:
        times = [t for tx in self.table.values() for t in (tx.retransmit_at, tx.expires_at) if t is not None]
        return min(times) if times else None

    def invite_for(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL cancels (§9.2): the one its top Via names (branch and
        sent-by, or for RFC 2543 peers Call-ID, CSeq number, From and Request-URI), and with
        the same Call-ID, CSeq number and From tag."""
        tx = self.table.get(transaction_key(cancel)[:-1] + ("INVITE",))
        if (tx is None or not tx.is_invite or tx.request.call_id != cancel.call_id
                or tx.request.cseq[0] != cancel.cseq[0]
                or tag_of(tx.request.headers.get("From")) != tag_of(cancel.headers.get("From"))):
            return None
        return tx
