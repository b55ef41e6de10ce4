"""An INVITE we send (RFC 3261 §17.1.1 client transaction, §13.2 UAC core): an agent's phone
rung for the ACD, a bridged transfer's target, or a customer called back through a trunk.  No
sockets and no clock of its own: ``dialer.py`` feeds responses and the time in, and sends the
bytes that come out.

A trunk challenges with 401/407 (§22.2, §22.3; RFC 8760 for SHA-256).  Given ``Credentials``
the INVITE answers each realm's challenge once: the same Call-ID and From tag, the next CSeq, a
new branch, and the credentials of every realm answered so far (a proxy's and the far end's).
A realm that challenges again was refused the credentials, and that challenge is the outcome:
never a loop of INVITEs, whatever a trunk answers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voicebot.sip.auth import ALGORITHMS, digest_response, parse_digest
from voicebot.sip.dialog import SipDialog, new_branch, new_tag
from voicebot.sip.message import NameAddr, SipParseError, SipRequest, SipResponse
from voicebot.sip.transaction import T1, T2

CHALLENGES = {401: ("WWW-Authenticate", "Authorization"), 407: ("Proxy-Authenticate", "Proxy-Authorization")}
MAX_REALMS = 2  # an outbound proxy's and the far end's: more is a server leading us on


@dataclass(frozen=True)
class Credentials:
    """What digest challenges are answered with; the password never shows in a repr."""

    username: str
    password: str = field(repr=False)


@dataclass
class _Answered:
    """A realm whose challenge we answered: sent again with every later INVITE (§22.3), its
    nonce-count going up each time."""

    header: str  # Authorization | Proxy-Authorization
    challenge: dict[str, str]
    algorithm: str
    nc: int = 0


def usable(challenge: dict[str, str]) -> bool:
    """A digest challenge we can answer: a realm and nonce, MD5 or SHA-256, and qop absent or
    offering "auth" (auth-int and the -sess variants are not spoken here)."""
    qops = [q.strip().lower() for q in challenge.get("qop", "auth").split(",")]
    return ("realm" in challenge and bool(challenge.get("nonce"))
            and challenge.get("algorithm", "MD5").upper() in ALGORITHMS and "auth" in qops)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(credentials: Credentials, answered: _Answered, method: str, uri: str) -> str:
    """The Authorization (or Proxy-Authorization) value answering ``answered``'s challenge for
    this request (§22.4, RFC 8760 §2): qop=auth with a fresh cnonce when the challenge offers
    qop, and its opaque echoed.  The nonce comes before the cnonce: some servers find a
    parameter by its first "name=" in the text."""
    challenge = answered.challenge
    qop = "auth" if "qop" in challenge else None
    nc = f"{answered.nc:08x}" if qop else ""
    cnonce = secrets.token_hex(8) if qop else ""
    response = digest_response(answered.algorithm, credentials.username, challenge["realm"], credentials.password,
                               method, uri, challenge["nonce"], qop, nc, cnonce)
    parts = [f"username={_quoted(credentials.username)}", f"realm={_quoted(challenge['realm'])}",
             f"nonce={_quoted(challenge['nonce'])}", f"uri={_quoted(uri)}", f'response="{response}"',
             f"algorithm={answered.algorithm}"]
    if qop:
        parts += [f'cnonce="{cnonce}"', "qop=auth", f"nc={nc}"]
    if "opaque" in challenge:
        parts.append(f"opaque={_quoted(challenge['opaque'])}")
    return "Digest " + ", ".join(parts)


@dataclass
class InviteOutcome:
    """What became of the INVITE: ``status`` is the final answer (408 when nobody answered)."""

    status: int
    reason: str = ""
    answer: bytes = b""  # the SDP of a 2xx
    dialog: SipDialog | None = None


@dataclass
class OutboundInvite:
    """One INVITE's client transaction, and the INVITEs that answer its challenges: ``request``
    is the one now in flight; the earlier ones are kept to ACK their challenges again."""

    request: SipRequest
    contact: str
    reliable: bool = False
    state: str = "calling"  # calling | proceeding | accepted | completed | terminated
    outcome: InviteOutcome | None = None
    provisional: int = 0  # the last 1xx seen (180 → the agent's phone is ringing)
    credentials: Credentials | None = None  # None: a 401/407 is the outcome
    _ack: bytes | None = None
    _retransmit_at: float | None = None
    _interval: float = T1
    _timeout_at: float = 0.0
    _cancel_sent: bool = field(default=False, repr=False)
    _answered: dict[str, _Answered] = field(default_factory=dict, repr=False)  # realm → its challenge
    _earlier: dict[int, SipRequest] = field(default_factory=dict, repr=False)  # CSeq → an INVITE challenged
    _arm_at_tick: bool = field(default=False, repr=False)
    _abandoned: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, target: str, from_uri: str, contact: str, via_host: str, via_port: int, sdp: bytes,
               now: float, transport: str = "UDP", extra: list[tuple[str, str]] | None = None,
               display: str = "", credentials: Credentials | None = None) -> "OutboundInvite":
        """``display``: the From's display name (a caller ID); ``credentials``: what a 401/407 is
        answered with."""
        request = SipRequest("INVITE", target)
        request.headers.add("Via", f"SIP/2.0/{transport} {via_host}:{via_port};branch={new_branch()};rport")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", str(NameAddr(display, from_uri, {"tag": new_tag()})))
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
        invite = cls(request, contact, reliable, credentials=credentials)
        invite._arm(now)
        return invite

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def cseqs(self) -> list[int]:
        """The CSeq numbers of every INVITE sent: responses to any of them come to ``receive``."""
        return [*self._earlier, self.request.cseq[0]]

    def first(self) -> bytes:
        return self.request.encode()

    def tick(self, now: float) -> list[bytes]:
        """Timer A (retransmit while nobody answered over UDP) and Timer B (give up)."""
        if self._arm_at_tick:
            self._arm(now)
        if self.state == "calling" and now >= self._timeout_at:
            self.state = "terminated"
            self.outcome = InviteOutcome(408, "no answer to INVITE")
            return []
        if self.state == "calling" and self._retransmit_at is not None and now >= self._retransmit_at:
            self._interval = min(self._interval * 2, T2)
            self._retransmit_at = now + self._interval
            return [self.request.encode()]
        return []

    def receive(self, response: SipResponse, now: float | None = None) -> list[bytes]:
        """A response to our INVITE: the bytes to send back (ACKs, an INVITE answering a
        challenge), and the outcome once final.  ``now`` starts that INVITE's timers (without
        it they start at the next ``tick``)."""
        if response.cseq[1] != "INVITE":
            return []
        if response.cseq[0] != self.request.cseq[0]:
            earlier = self._earlier.get(response.cseq[0])
            if earlier is not None and response.status >= 300:  # a challenge again: our ACK was lost
                return [self._ack_error(response, earlier).encode()]
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
        ack = self._ack_error(response, self.request).encode()
        if self.outcome is None and self.state in ("calling", "proceeding") and self._answer(response):
            self._arm(now)
            return [ack, self.request.encode()]
        if self.outcome is None:
            self.outcome = InviteOutcome(status, response.reason)
        self.state = "completed"
        self._retransmit_at = None
        return [ack]

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

    def abandon(self) -> None:
        """Its caller gave up on it: a challenge from now on is the outcome, not a new INVITE."""
        self._abandoned = True

    def _arm(self, now: float | None) -> None:
        """Timers A and B for the INVITE in flight, from ``now`` (None: from the next tick)."""
        self._arm_at_tick = now is None
        if now is not None:
            self._interval = T1
            self._retransmit_at = None if self.reliable else now + T1
            self._timeout_at = now + 64 * T1  # Timer B

    def _answer(self, response: SipResponse) -> bool:
        """Make ``request`` the INVITE that answers this 401/407, if it is a challenge we may
        answer: credentials given, the INVITE neither cancelled nor abandoned, and only realms not answered before
        (the first usable challenge of each, as RFC 8760 §2.4 says), MAX_REALMS in all.  A realm
        challenging again ends it, stale=true or not: we answer at once, so its nonce was fresh."""
        if self.credentials is None or self._cancel_sent or self._abandoned or response.status not in CHALLENGES:
            return False
        challenge_header, header = CHALLENGES[response.status]
        new: dict[str, _Answered] = {}
        for value in response.headers.get_all(challenge_header):
            challenge = parse_digest(value)
            realm = challenge.get("realm")
            if realm is None:
                continue
            if realm in self._answered:
                return False  # refused what we sent: the outcome
            if realm not in new and usable(challenge):
                new[realm] = _Answered(header, challenge, challenge.get("algorithm", "MD5").upper())
        if not new or len(self._answered) + len(new) > MAX_REALMS:
            return False
        self._answered.update(new)
        challenged = self.request
        self._earlier[challenged.cseq[0]] = challenged
        request = SipRequest("INVITE", challenged.uri)
        for name, value in challenged.headers:
            if name == "Via":
                value = value.split(";branch=", 1)[0] + f";branch={new_branch()};rport"
            elif name == "CSeq":
                value = f"{challenged.cseq[0] + 1} INVITE"
            elif name in ("Authorization", "Proxy-Authorization"):
                continue
            elif name == "Content-Type":
                self._authorize(request)
            request.headers.add(name, value)
        if "Content-Type" not in challenged.headers:
            self._authorize(request)
        request.body = challenged.body
        self.request = request
        self.state = "calling"
        return True

    def _authorize(self, request: SipRequest) -> None:
        assert self.credentials is not None
        for answered in self._answered.values():
            answered.nc += 1
            request.headers.add(answered.header, authorization(self.credentials, answered, "INVITE", request.uri))

    def _ack_error(self, response: SipResponse, request: SipRequest) -> SipRequest:
        ack = SipRequest("ACK", request.uri)
        for name in ("Via", "Max-Forwards", "From", "Call-ID"):
            ack.headers.add(name, request.headers.get(name) or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("CSeq", f"{request.cseq[0]} ACK")
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
