"""Who may call, per trunk, and how fast; how many TCP connections anyone may hold.  A trunk
is the source networks a PBX, SBC or carrier sends from, and/or the digest credentials it
must present.  Pure: an address, an Authorization header and the time in, a verdict out."""

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
    def __init__(self, trunks: list[Trunk], realm: str = "voicebot",
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5")) -> None:
        self.trunks = trunks
        key = secrets.token_bytes(32)  # one nonce key: a challenge from any trunk verifies on all
        self._auth = {t.name: DigestAuthenticator(realm, t.credentials, tuple(algorithms), key=key)
                      for t in trunks if t.credentials}

    def check(self, source_ip: str, method: str, uri: str, authorization: str | None) -> Verdict:
        """The first trunk whose networks hold the source decides; a source no trunk's networks
        hold may still authenticate against a credentials-only trunk.  ``uri`` is the
        request's Request-URI (the digest must name it)."""
        try:
            ip = ipaddress.ip_address(source_ip)
        except ValueError:
            return Verdict("forbid", why="bad source address")
        by_network = next((t for t in self.trunks if t.matches(ip)), None)
        if by_network is not None:
            if not by_network.credentials:
                return Verdict("allow", by_network.name)
            return self._digest([by_network], method, uri, authorization)
        open_to_all = [t for t in self.trunks if not t.networks]
        if not open_to_all:
            return Verdict("forbid", why="source on no trunk")
        return self._digest(open_to_all, method, uri, authorization)

    def _digest(self, trunks: list[Trunk], method: str, uri: str, authorization: str | None) -> Verdict:
        verdicts = [(t, self._auth[t.name].verify(method, uri, authorization)) for t in trunks]
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

    __slots__ = ("per_s", "capacity", "_tokens", "_at")

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


class SourceLimiter:
    """One ``SetupLimiter`` per source address, so one source's INVITE flood uses up its own
    setups and not everyone's.  Bounded: beyond ``max_sources`` addresses the one heard from
    least recently is forgotten (a flood from that many addresses still meets the global
    limit, the transaction table's and the call limit after this)."""

    def __init__(self, per_s: float, max_sources: int = 4096) -> None:
        self.per_s = per_s
        self.max_sources = max_sources
        self.buckets: dict[str, SetupLimiter] = {}  # by address, least recently heard first

    def take(self, source_ip: str, now: float) -> bool:
        bucket = self.buckets.pop(source_ip, None)
        if bucket is None:
            while len(self.buckets) >= self.max_sources:
                del self.buckets[next(iter(self.buckets))]
            bucket = SetupLimiter(self.per_s, now)
        self.buckets[source_ip] = bucket
        return bucket.take(now)


class ConnectionLimiter:
    """TCP connections: at most ``max_total`` at once and ``max_per_source`` from one address.
    ``admit`` before anything is kept for a connection; ``release`` when it closes."""

    def __init__(self, max_total: int = 256, max_per_source: int = 16) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.open: dict[str, int] = {}
        self.total = 0

    def admit(self, source_ip: str) -> bool:
        if self.total >= self.max_total or self.open.get(source_ip, 0) >= self.max_per_source:
            return False
        self.open[source_ip] = self.open.get(source_ip, 0) + 1
        self.total += 1
        return True

    def release(self, source_ip: str) -> None:
        count = self.open.get(source_ip, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self.open[source_ip]
        else:
            self.open[source_ip] = count - 1
