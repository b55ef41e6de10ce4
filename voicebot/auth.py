"""Who may use the server: accounts and roles, password hashes, login sessions, API tokens,
login throttling and signed links to one call's context.

Pure logic on the standard library and argon2-cffi, with injected clocks so the tests need no
sleeping; ``voicebot/web/auth_routes.py`` carries it over HTTP.

Roles are ordered ``agent < supervisor < admin``: a role passes every check a lower one passes.
Agents come from ``settings.agents``, supervisors and admins from ``settings.users``, machines
from ``settings.api_tokens``.  Stored secrets are Argon2id hashes from ``voicebot passwd``, or
plain text for demos (accepted, with one warning per account at load).

The secret that keys sessions and context links is ``settings.secret_key``, or random per process
start (:func:`load_secret`).  Sessions live in memory, so a restart logs everyone out either way;
context links survive a restart only with a configured ``secret_key`` (and stop working for
every server that does not share it).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

if TYPE_CHECKING:
    from voicebot.config import Settings

log = logging.getLogger(__name__)

Role = Literal["agent", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("agent", "supervisor", "admin")
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}

MAX_SECRET_CHARS = 1024  # a longer password or token is refused before any hashing

_HASHER = PasswordHasher()  # Argon2id, RFC 9106 low-memory parameters; stateless, thread-safe


def role_allows(role: str, required: str) -> bool:
    """True when ``role`` is ``required`` or above it (an admin passes a supervisor's check)."""
    return role in _RANK and required in _RANK and _RANK[role] >= _RANK[required]


# --- passwords -------------------------------------------------------------------------------

def hash_password(plain: str) -> str:
    """An Argon2id hash (``$argon2id$...``) to store in voicebot.yaml instead of the password."""
    return _HASHER.hash(plain)


def is_hashed(stored: str) -> bool:
    return stored.startswith("$argon2")


def verify_password(stored: str, plain: str) -> bool:
    """Check ``plain`` against a stored Argon2 hash, or against plain text (demo configs).

    Never raises: a malformed hash is a mismatch (and is reported at load, not per request)."""
    if len(plain) > MAX_SECRET_CHARS:
        return False
    if is_hashed(stored):
        try:
            return _HASHER.verify(stored, plain)
        except (VerificationError, InvalidHashError):
            return False
    return hmac.compare_digest(stored.encode(), plain.encode())


@cache
def _dummy_hash() -> str:
    """A hash nobody knows the password of: unknown users cost as much as known ones."""
    return hash_password(secrets.token_urlsafe(32))


def _burn_time(plain: str) -> None:
    """Spend one Argon2 verification, so timing tells neither "no such user" nor "plain text"."""
    verify_password(_dummy_hash(), plain[:MAX_SECRET_CHARS])


# --- accounts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """Who is asking: a person (``kind="user"``: agent, supervisor or admin) or an API token
    (``kind="token"``, ``id`` and ``name`` are the token's name).  Check ``kind`` before
    treating ``id`` as an agent id."""

    id: str
    name: str
    role: Role
    kind: Literal["user", "token"] = "user"


@dataclass(frozen=True)
class Account:
    """A principal and its stored secret (hash or demo plain text)."""

    principal: Principal
    secret: str


class Directory:
    """The accounts and API tokens from the settings, and the checks against them.

    Hashing is slow on purpose (tens of milliseconds): call :meth:`authenticate` and
    :meth:`by_token` from a worker thread, not from the event loop."""

    TOKEN_CACHE = 1024

    def __init__(self, accounts: Iterable[Account], tokens: Iterable[Account] = ()) -> None:
        self._accounts: dict[str, Account] = {}
        for account in accounts:
            self._accounts[account.principal.id] = account
        self._tokens: list[Account] = list(tokens)
        # Bearer tokens arrive with every API call; verifying each against every Argon2 hash
        # would cost tens of ms per request, so outcomes are remembered by the token's SHA-256.
        self._token_seen: OrderedDict[bytes, Principal | None] = OrderedDict()
        self._lock = threading.Lock()
        for account in [*self._accounts.values(), *self._tokens]:
            p = account.principal
            what = f"API token {p.name!r}" if p.kind == "token" else f"{p.role} {p.id!r}"
            if not is_hashed(account.secret):
                log.warning("%s has a plain-text %s in the settings; store a hash from `voicebot passwd`",
                            what, "token" if p.kind == "token" else "password")
            elif not _parses(account.secret):
                log.error("%s has a malformed password hash; it can never log in", what)
        _dummy_hash()  # pay for it at start, not on the first unknown user

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory:
        accounts = [Account(Principal(a.id, a.name or a.id, "agent"), a.password) for a in settings.agents]
        accounts += [Account(Principal(u.id, u.name or u.id, u.role), u.password) for u in settings.users]
        tokens = [Account(Principal(t.name, t.name, t.role, "token"), t.token) for t in settings.api_tokens]
        return cls(accounts, tokens)

    def authenticate(self, user: str, password: str) -> Principal | None:
        """The principal for a right user and password, else None (whichever was wrong)."""
        account = self._accounts.get(user)
        if account is None:
            _burn_time(password)
            return None
        if not is_hashed(account.secret):
            _burn_time(password)
        return account.principal if verify_password(account.secret, password) else None

    def by_token(self, token: str) -> Principal | None:
        """The API token's principal (from ``Authorization: Bearer <token>``), else None."""
        if not token or len(token) > MAX_SECRET_CHARS:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            if digest in self._token_seen:
                self._token_seen.move_to_end(digest)
                return self._token_seen[digest]
        found = None
        for account in self._tokens:
            if verify_password(account.secret, token) and found is None:
                found = account.principal
        with self._lock:
            self._token_seen[digest] = found
            while len(self._token_seen) > self.TOKEN_CACHE:
                self._token_seen.popitem(last=False)
        return found

    def get(self, user_id: str) -> Principal | None:
        """The person with this id (tokens excluded), else None."""
        account = self._accounts.get(user_id)
        return account.principal if account else None

    def is_agent(self, user_id: str) -> bool:
        account = self._accounts.get(user_id)
        return account is not None and account.principal.role == "agent"


def _parses(stored: str) -> bool:
    try:
        _HASHER.check_needs_rehash(stored)  # parses the hash's parameters
        return True
    except (InvalidHashError, ValueError):
        return False


# --- the process secret ----------------------------------------------------------------------

def load_secret(secret_key: str | None) -> bytes:
    """The key for sessions and context links: the configured one, or random for this process
    (links then stop working at the next start)."""
    if secret_key:
        if len(secret_key) < 16:
            log.warning("secret_key is shorter than 16 characters; use `python -c 'import secrets; "
                        "print(secrets.token_urlsafe(32))'`")
        return secret_key.encode()
    log.info("no secret_key configured: context links will not survive a restart")
    return secrets.token_bytes(32)


def _derive(secret: bytes | str, purpose: bytes) -> bytes:
    """One key per use of the secret, so a session key can never verify as a link."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, b"voicebot " + purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- sessions --------------------------------------------------------------------------------

class SessionStore:
    """Browser login sessions: an opaque random token maps to a principal until it expires.

    Held in memory (a restart logs everyone out) under HMACs of the tokens, so a lookup does
    not compare secrets byte by byte.  Bounded: past ``max_sessions`` the oldest goes, and one
    principal keeps at most ``max_per_principal`` (its oldest goes), so one password cannot
    crowd the others out.  Thread-safe: FastAPI runs sync handlers in a pool."""

    def __init__(self, secret: bytes | str, ttl_s: float, clock: Callable[[], float] = time.time,
                 max_sessions: int = 10_000, max_per_principal: int = 20) -> None:
        self._key = _derive(secret, b"session")
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._max_each = max_per_principal
        self._sessions: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def _id(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode(), hashlib.sha256).digest()

    def create(self, principal: Principal) -> str:
        """A new session token (32 random bytes, URL-safe) for the cookie."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            mine = [k for k, (p, _) in self._sessions.items() if p.id == principal.id]
            for key in mine[:max(0, len(mine) - self._max_each + 1)]:
                del self._sessions[key]
            while len(self._sessions) >= self._max:
                self._sessions.popitem(last=False)
            self._sessions[self._id(token)] = (principal, now + self.ttl_s)
        return token

    def get(self, token: str) -> Principal | None:
        """The session's principal, or None when unknown, revoked or expired."""
        if not token or len(token) > 256:
            return None
        key = self._id(token)
        with self._lock:
            entry = self._sessions.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[1]:
                del self._sessions[key]
                return None
            return entry[0]

    def revoke(self, token: str) -> bool:
        """End one session (logout); True if it existed."""
        with self._lock:
            return self._sessions.pop(self._id(token), None) is not None

    def revoke_all(self, principal_id: str) -> int:
        """End every session of one person (password changed, account removed); how many."""
        with self._lock:
            keys = [k for k, (p, _) in self._sessions.items() if p.id == principal_id]
            for key in keys:
                del self._sessions[key]
            return len(keys)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop_expired(self, now: float) -> None:
        # Sessions are appended with the same ttl, so the oldest expire first.
        while self._sessions:
            key, (_, expires) = next(iter(self._sessions.items()))
            if now < expires:
                break
            del self._sessions[key]


# --- context links ---------------------------------------------------------------------------

class LinkSigner:
    """Tokens for a URL to one call's context (sent with a SIP transfer): they open that call
    only, and only until they expire.  The token is ``<expiry>.<mac>``, where the MAC is
    HMAC-SHA256 over the call id and the expiry, URL-safe base64."""

    def __init__(self, secret: bytes | str) -> None:
        self._key = _derive(secret, b"context link")

    def _mac(self, call_id: str, expires: int) -> str:
        message = call_id.encode() + b"\x00" + str(expires).encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, call_id: str, ttl_s: float, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + ttl_s + 0.999)
        return f"{expires}.{self._mac(call_id, expires)}"

    def verify(self, token: str, call_id: str, now: float | None = None) -> bool:
        """True for a token signed for this call that has not expired; never raises."""
        if not isinstance(token, str) or len(token) > 128:
            return False
        expires_text, dot, mac = token.partition(".")
        if not dot or not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        if (time.time() if now is None else now) >= expires:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(call_id, expires).encode())


# --- login throttling ------------------------------------------------------------------------

class LoginThrottle:
    """Slows password guessing: after ``max_failures`` failed logins for one key (user and
    source address) within ``window_s``, that key is refused for ``lockout_s``.

    Keyed on the pair so that a guesser elsewhere cannot lock a real user out.  Bounded to
    ``max_keys`` (oldest forgotten first).  Thread-safe."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._locked_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def retry_after(self, user: str, source: str) -> float:
        """Seconds until this user may try again from this source; 0 when not throttled."""
        key = (user, source)
        with self._lock:
            until = self._locked_until.get(key)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._locked_until[key]
                return 0.0
            return left

    def failure(self, user: str, source: str) -> bool:
        """Record a failed login; True when this one starts a lockout."""
        key = (user, source)
        now = self._clock()
        with self._lock:
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                return True  # forget the failures: after the lockout, a fresh allowance
            self._failures[key] = times
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)
            if len(self._locked_until) > self._max_keys:
                for k in [k for k, until in self._locked_until.items() if until <= now]:
                    del self._locked_until[k]
            return False

    def success(self, user: str, source: str) -> None:
        """A good login forgets that key's earlier failures."""
        with self._lock:
            self._failures.pop((user, source), None)


# --- `voicebot passwd` -----------------------------------------------------------------------

def passwd_main(argv: list[str] | None = None) -> int:
    """``voicebot passwd``: read a password (typed twice on a terminal, one line when piped)
    and print its Argon2id hash for voicebot.yaml.  ``argv`` holds the arguments after
    ``passwd``; None means none."""
    parser = argparse.ArgumentParser(
        prog="voicebot passwd",
        description="Print an Argon2id hash of a password or API token for voicebot.yaml "
                    "(agents[].password, users[].password, api_tokens[].token). Reads the "
                    "terminal (twice, hidden) or one line from stdin.")
    parser.parse_args([] if argv is None else argv)
    if sys.stdin.isatty():
        plain = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != plain:
            print("voicebot passwd: the passwords differ", file=sys.stderr)
            return 1
    else:
        plain = sys.stdin.readline().rstrip("\r\n")
    if not plain:
        print("voicebot passwd: empty password", file=sys.stderr)
        return 1
    if len(plain) > MAX_SECRET_CHARS:
        print(f"voicebot passwd: longer than {MAX_SECRET_CHARS} characters", file=sys.stderr)
        return 1
    print(hash_password(plain))
    return 0
