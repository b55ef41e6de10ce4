"""SIP digest authentication of INVITEs (RFC 3261 §22, RFC 8760 for SHA-256), sans-I/O.

Nonces are stateless: a timestamp signed with a per-process key, so any number of challenges
costs no memory, and a forged nonce is refused and an expired one (older than ``nonce_ttl_s``)
challenged again with ``stale=true``.  What is remembered is only what a correct answer
proved: the highest nonce-count each nonce was used with, so a replayed Authorization (the
same nonce and nc again, or an older nc) is challenged again as stale instead of letting a
captured INVITE place a call.  That memory is bounded: entries go when their nonce expires,
and when ``max_nonces`` are in use the oldest go and every nonce up to theirs counts as
expired.  The digest ``uri`` must be the Request-URI, so an answer cannot be moved onto
another request.  SHA-256 is offered first and MD5 for older PBXs, as RFC 8760 recommends;
``algorithms`` leaves MD5 out where no PBX needs it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')
_NC = re.compile(r"^[0-9A-Fa-f]{8}$")


def parse_digest(header: str) -> dict[str, str]:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {k.lower(): v[1:-1].replace('\\"', '"') if v.startswith('"') else v for k, v in _PARAM.findall(rest)}


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def digest_response(algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str = "", cnonce: str = "") -> str:
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def check_algorithms(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The digest algorithms to offer, strongest first; ValueError naming what is unknown."""
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown or not names:
        raise ValueError(f"digest algorithms must be some of {', '.join(ALGORITHMS)}; got {list(names)}")
    return tuple(sorted(dict.fromkeys(names), key=list(ALGORITHMS).index))


@dataclass
class DigestAuthenticator:
    realm: str
    users: dict[str, str]
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_ttl_s: float = 300.0
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    max_nonces: int = 10000
    _counts: dict[str, int] = field(default_factory=dict, repr=False)  # nonce → highest nc accepted, oldest first
    _floor: int = field(default=-1, repr=False)  # nonces stamped at or before this count as expired

    def __post_init__(self) -> None:
        self.algorithms = check_algorithms(self.algorithms)

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:24]

    def _nonce(self, now: float) -> str:
        """``stamp.salt.signature``: every challenge its own nonce, so no two clients share a count."""
        text = f"{int(now)}.{secrets.token_hex(6)}"
        return f"{text}.{self._sign(text)}"

    def _nonce_state(self, nonce: str, now: float) -> str:
        """"fresh", "stale" (ours, but expired: the client may retry) or "forged"."""
        text, _, sig = nonce.rpartition(".")
        stamp, _, salt = text.partition(".")
        if not stamp.isdigit() or len(stamp) > 12 or not salt:
            return "forged"
        if not hmac.compare_digest(sig, self._sign(text)):
            return "forged"
        fresh = 0 <= now - int(stamp) <= self.nonce_ttl_s and int(stamp) > self._floor
        return "fresh" if fresh else "stale"

    def challenge(self, now: float | None = None, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, strongest algorithm first."""
        nonce = self._nonce(time.time() if now is None else now)
        extra = ", stale=true" if stale else ""
        return [f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
                for alg in self.algorithms]

    def verify(self, method: str, uri: str, authorization: str | None, now: float | None = None) -> str:
        """"ok", or why not: "missing", "stale", "bad" (answer 401 to the first two, 403 to bad).
        ``uri`` is the request's Request-URI; "stale" also means a replayed nonce-count."""
        now = time.time() if now is None else now
        if not authorization:
            return "missing"
        params = parse_digest(authorization)
        algorithm = params.get("algorithm", "MD5").upper()
        username = params.get("username", "")
        if (algorithm not in self.algorithms or params.get("realm") != self.realm or username not in self.users
                or not params.get("response") or not params.get("nonce") or params.get("uri") != uri):
            return "bad"
        state = self._nonce_state(params["nonce"], now)
        if state != "fresh":
            return "stale" if state == "stale" else "bad"
        qop = params.get("qop")
        if qop not in (None, "auth") or (qop and (not _NC.match(params.get("nc", "")) or not params.get("cnonce"))):
            return "bad"
        expected = digest_response(algorithm, username, self.realm, self.users[username], method, params["uri"],
                                   params["nonce"], qop, params.get("nc", ""), params.get("cnonce", ""))
        if not hmac.compare_digest(expected, params["response"].lower()):
            return "bad"
        return "ok" if self._count(params["nonce"], int(params["nc"], 16) if qop else 0, now) else "stale"

    def _count(self, nonce: str, nc: int, now: float) -> bool:
        """Take this use of ``nonce`` if its nonce-count is higher than any before (without
        qop there is no count: the nonce is good once)."""
        seen = self._counts.get(nonce)
        if seen is not None and nc <= seen:
            return False
        while self._counts:  # forget the expired, then the oldest beyond max_nonces
            oldest = next(iter(self._counts))
            stamp = int(oldest.partition(".")[0])
            if now - stamp <= self.nonce_ttl_s and len(self._counts) < self.max_nonces:
                break
            del self._counts[oldest]
            self._floor = max(self._floor, stamp)
        if int(nonce.partition(".")[0]) <= self._floor:
            return False  # its record was just forgotten: a replay can no longer be told apart
        self._counts[nonce] = nc  # (an update keeps its place: the order is of first use)
        return True
