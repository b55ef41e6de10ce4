"""Who may call, per trunk, and how fast.  A trunk is the source networks a PBX, SBC or
carrier sends from, and/or the digest credentials it must present.  Pure: an address, an
Authorization header and the time in, a verdict out."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from voicebot.sip.auth import DigestAuthenticator


@dataclass
class Trunk:
    """``networks`` empty: anyone who authenticates with ``credentials``; ``credentials`` empty:
    anyone from ``networks``, unchallenged; both: from those networks *and* authenticated."""

    name: str
    networks: list[str] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.networks]
        if not self._networks and not self.credentials:
            raise ValueError(f"trunk {self.name!r} needs networks, credentials or both")

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in self._networks)


@dataclass(frozen=True)
class Verdict:
    decision: str  # allow | challenge | forbid
    trunk: str | None = None
    challenge: tuple[str, ...] = ()  # WWW-Authenticate values for a 401
    why: str = ""


class AccessPolicy:
    def __init__(self, trunks: list[Trunk], realm: str = "voicebot") -> None:
        self.trunks = trunks
        key = secrets.token_bytes(32)  # one nonce key: a challenge from any trunk verifies on all
        self._auth = {t.name: DigestAuthenticator(realm, t.credentials, key=key) for t in trunks if t.credentials}

    def check(self, source_ip: str, method: str, authorization: str | None) -> Verdict:
        """The first trunk whose networks hold the source decides; a source no trunk's networks
        hold may still authenticate against a credentials-only trunk."""
        try:
            ip = ipaddress.ip_address(source_ip)
        except ValueError:
            return Verdict("forbid", why="bad source address")
        by_network = next((t for t in self.trunks if t.matches(ip)), None)
        if by_network is not None:
            if not by_network.credentials:
                return Verdict("allow", by_network.name)
            return self._digest([by_network], method, authorization)
        open_to_all = [t for t in self.trunks if not t.networks]
        if not open_to_all:
            return Verdict("forbid", why="source on no trunk")
        return self._digest(open_to_all, method, authorization)

    def _digest(self, trunks: list[Trunk], method: str, authorization: str | None) -> Verdict:
        verdicts = [(t, self._auth[t.name].verify(method, authorization)) for t in trunks]
        ok = next((t for t, v in verdicts if v == "ok"), None)
        if ok is not None:
            return Verdict("allow", ok.name)
        first = trunks[0]
        if all(v == "bad" for _, v in verdicts) and authorization:
            return Verdict("forbid", first.name, why="bad credentials")
        stale = any(v == "stale" for _, v in verdicts)
        return Verdict("challenge", first.name, tuple(self._auth[first.name].challenge(stale=stale)),
                       why="stale nonce" if stale else "credentials required")


class SetupLimiter:
    """A token bucket on call setups (burst: one second's worth), so an INVITE flood gets 503s
    rather than a stalled server.  Pure: the time comes in."""

    def __init__(self, per_s: float, now: float) -> None:
        self.per_s = per_s
        self.capacity = max(1.0, per_s)
        self._tokens = self.capacity
        self._at = now

    def take(self, now: float) -> bool:
        """True when one more setup may start now."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
