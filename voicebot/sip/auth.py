"""SIP digest authentication of INVITEs (RFC 3261 §22, RFC 8760 for SHA-256), sans-I/O.

Nonces are stateless: a timestamp signed with a per-process key, so any number of challenges
costs no memory and a forged or stale nonce is refused.  SHA-256 is offered first and MD5 for
older PBXs, as RFC 8760 recommends.
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


@dataclass
class DigestAuthenticator:
    realm: str
    users: dict[str, str]
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_ttl_s: float = 300.0
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _nonce(self, now: float) -> str:
        stamp = f"{int(now)}"
        sig = hmac.new(self.key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}.{sig}"

    def _nonce_state(self, nonce: str, now: float) -> str:
        """"fresh", "stale" (ours, but old: the client may retry) or "forged"."""
        stamp, _, sig = nonce.partition(".")
        if not stamp.isdigit() or len(stamp) > 12:
            return "forged"
        expected = hmac.new(self.key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(sig, expected):
            return "forged"
        return "fresh" if 0 <= now - int(stamp) <= self.nonce_ttl_s else "stale"

    def challenge(self, now: float | None = None, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, strongest algorithm first."""
        nonce = self._nonce(time.time() if now is None else now)
        extra = ", stale=true" if stale else ""
        return [f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
                for alg in self.algorithms]

    def verify(self, method: str, authorization: str | None, now: float | None = None) -> str:
        """"ok", or why not: "missing", "stale", "bad" (answer 401 to the first two, 403 to bad)."""
        now = time.time() if now is None else now
        if not authorization:
            return "missing"
        params = parse_digest(authorization)
        algorithm = params.get("algorithm", "MD5").upper()
        username = params.get("username", "")
        if (algorithm not in self.algorithms or params.get("realm") != self.realm or username not in self.users
                or not params.get("response") or not params.get("uri") or not params.get("nonce")):
            return "bad"
        state = self._nonce_state(params["nonce"], now)
        if state != "fresh":
            return "stale" if state == "stale" else "bad"
        qop = params.get("qop")
        if qop not in (None, "auth"):
            return "bad"
        expected = digest_response(algorithm, username, self.realm, self.users[username], method, params["uri"],
                                   params["nonce"], qop, params.get("nc", ""), params.get("cnonce", ""))
        return "ok" if hmac.compare_digest(expected, params["response"].lower()) else "bad"
