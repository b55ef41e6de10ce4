"""Accounts, hashes, sessions, context links and throttling as plain calls with a fake clock;
then the login routes and guards through FastAPI's TestClient on a small app built here."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voicebot import auth
from voicebot.auth import (Directory, LinkSigner, LoginThrottle, Principal, SessionStore, hash_password, load_secret,
                           passwd_main, role_allows, verify_password)
from voicebot.config import Settings
from voicebot.web.auth_routes import SESSION_COOKIE, auth_router, principal_dependency, principal_from_websocket, require


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    """Hashing is slow on purpose: do it once for the module."""
    return {"ana": hash_password("ana-pw"), "sam": hash_password("sam-pw"), "robot": hash_password("tok-robot")}


@pytest.fixture(scope="module")
def settings(hashes: dict[str, str]) -> Settings:
    return Settings(
        agents=[{"id": "ana", "name": "Ana", "password": hashes["ana"]},
                {"id": "bob", "password": "bob-plain"}],
        users=[{"id": "sam", "name": "Sam", "password": hashes["sam"], "role": "supervisor"},
               {"id": "root", "password": "root-plain", "role": "admin"}],
        api_tokens=[{"name": "robot", "token": hashes["robot"], "role": "supervisor"},
                    {"name": "demo", "token": "demo-token", "role": "agent"}])


@pytest.fixture(scope="module")
def directory(settings: Settings) -> Directory:
    return Directory.from_settings(settings)


# --- hashes and accounts -----------------------------------------------------------------------

def test_hash_round_trip_and_rejection(hashes: dict[str, str]) -> None:
    stored = hashes["ana"]
    assert stored.startswith("$argon2id$")
    assert "ana-pw" not in stored
    assert verify_password(stored, "ana-pw")
    assert not verify_password(stored, "ana-pw ")
    assert not verify_password(stored, "")
    assert hash_password("ana-pw") != stored  # salted
    assert not verify_password("$argon2id$garbage", "anything")  # malformed: a mismatch, no exception


def test_plain_text_demo_passwords() -> None:
    assert verify_password("letmein", "letmein")
    assert not verify_password("letmein", "letmein2")
    assert verify_password("pässwörd", "pässwörd")  # non-ASCII compares too


def test_plain_text_accounts_warn_once_each_without_the_password(settings: Settings,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="voicebot.auth"):
        directory = Directory.from_settings(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # bob, root, the demo token; not the hashed ones
    assert sum("'bob'" in w for w in warnings) == 1
    assert sum("'root'" in w for w in warnings) == 1
    assert sum("'demo'" in w for w in warnings) == 1
    assert not any(secret in w for w in warnings for secret in ("bob-plain", "root-plain", "demo-token"))
    assert directory.authenticate("bob", "bob-plain") == Principal("bob", "bob", "agent")
    assert directory.authenticate("root", "root-plain") == Principal("root", "root", "admin")


def test_authenticate(directory: Directory) -> None:
    assert directory.authenticate("ana", "ana-pw") == Principal("ana", "Ana", "agent", "user")
    assert directory.authenticate("sam", "sam-pw") == Principal("sam", "Sam", "supervisor")
    assert directory.authenticate("ana", "sam-pw") is None
    assert directory.authenticate("bob", "wrong") is None
    assert directory.authenticate("nobody", "ana-pw") is None
    assert directory.authenticate("robot", "tok-robot") is None  # tokens are not logins
    assert directory.is_agent("ana") and directory.is_agent("bob")
    assert not directory.is_agent("sam") and not directory.is_agent("nobody") and not directory.is_agent("robot")
    assert directory.get("sam") == Principal("sam", "Sam", "supervisor")
    assert directory.get("robot") is None


def test_unknown_user_still_pays_for_a_hash(directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = auth.verify_password

    def spy(stored: str, plain: str) -> bool:
        checked.append(stored)
        return real(stored, plain)

    monkeypatch.setattr(auth, "verify_password", spy)
    assert directory.authenticate("nobody", "x") is None
    assert checked and checked[0].startswith("$argon2")
    checked.clear()
    assert directory.authenticate("bob", "x") is None  # plain-text accounts too
    assert any(s.startswith("$argon2") for s in checked)


def test_api_tokens(directory: Directory) -> None:
    robot = Principal("robot", "robot", "supervisor", "token")
    assert directory.by_token("tok-robot") == robot
    assert directory.by_token("tok-robot") == robot  # from the cache
    assert directory.by_token("demo-token") == Principal("demo", "demo", "agent", "token")
    assert directory.by_token("tok-robot2") is None
    assert directory.by_token("tok-robot2") is None
    assert directory.by_token("") is None
    assert directory.by_token("ana-pw") is None  # a password is not a token
    assert directory.by_token("x" * 5000) is None


def test_roles_are_ordered() -> None:
    assert role_allows("admin", "supervisor") and role_allows("admin", "agent")
    assert role_allows("supervisor", "supervisor") and not role_allows("supervisor", "admin")
    assert not role_allows("agent", "supervisor")
    assert not role_allows("root", "agent") and not role_allows("admin", "root")


def test_load_secret() -> None:
    assert load_secret("a configured secret key") == b"a configured secret key"
    first, second = load_secret(None), load_secret(None)
    assert len(first) == 32 and first != second


# --- sessions ----------------------------------------------------------------------------------

ANA = Principal("ana", "Ana", "agent")
SAM = Principal("sam", "Sam", "supervisor")


def test_session_lifecycle_and_expiry() -> None:
    clock = Clock()
    store = SessionStore(b"k" * 32, ttl_s=60, clock=clock)
    token = store.create(ANA)
    assert len(token) >= 43 and "=" not in token
    assert store.get(token) == ANA
    assert store.get(token + "x") is None and store.get("") is None
    clock.now += 59.9
    assert store.get(token) == ANA
    clock.now += 0.1
    assert store.get(token) is None
    assert len(store) == 0


def test_session_revoke_and_revoke_all() -> None:
    store = SessionStore(b"k", ttl_s=60, clock=Clock())
    a1, a2, s1 = store.create(ANA), store.create(ANA), store.create(SAM)
    assert a1 != a2
    assert store.revoke(a1) and not store.revoke(a1)
    assert store.get(a1) is None and store.get(a2) == ANA
    store.create(ANA)
    assert store.revoke_all("ana") == 2
    assert store.get(a2) is None and store.get(s1) == SAM


def test_sessions_are_bounded() -> None:
    clock = Clock()
    store = SessionStore(b"k", ttl_s=60, clock=clock, max_sessions=3, max_per_principal=2)
    ana = [store.create(ANA) for _ in range(3)]
    assert store.get(ana[0]) is None and store.get(ana[1]) == ANA  # one person keeps 2
    people = [store.create(Principal(f"p{i}", "", "agent")) for i in range(2)]
    assert len(store) == 3
    assert store.get(ana[1]) is None and store.get(ana[2]) == ANA and all(store.get(t) for t in people)
    clock.now += 61
    store.create(SAM)  # expired ones go first
    assert len(store) == 1


def test_sessions_do_not_cross_secrets() -> None:
    token = SessionStore(b"one", ttl_s=60).create(ANA)
    assert SessionStore(b"two", ttl_s=60).get(token) is None


# --- context links -----------------------------------------------------------------------------

def test_link_opens_its_call_until_it_expires() -> None:
    signer = LinkSigner(b"secret")
    token = signer.sign("call-1", ttl_s=3600, now=1000.0)
    assert token.isascii() and all(c.isalnum() or c in "-_." for c in token)
    assert signer.verify(token, "call-1", now=1000.0)
    assert signer.verify(token, "call-1", now=4599.0)
    assert not signer.verify(token, "call-1", now=4600.0)  # expired
    assert not signer.verify(token, "call-2", now=1000.0)  # another call
    assert not signer.verify(token, "call-", now=1000.0)
    assert not LinkSigner(b"other secret").verify(token, "call-1", now=1000.0)
    assert signer.verify(signer.sign("call-1", 60), "call-1")  # real clock


@pytest.mark.parametrize("tamper", [
    lambda t: t.replace(t.split(".")[0], str(int(t.split(".")[0]) + 3600)),  # later expiry
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # flipped MAC
    lambda t: t.split(".")[1],  # MAC alone
    lambda t: t.split(".")[0] + ".",  # no MAC
    lambda t: "",
    lambda t: "-5." + t.split(".")[1],
    lambda t: "９９９９９." + t.split(".")[1],  # non-ASCII digits
    lambda t: t + "." + t,
    lambda t: t * 10,
])
def test_tampered_links_are_rejected(tamper) -> None:
    signer = LinkSigner("secret")
    token = signer.sign("call-1", ttl_s=3600, now=1000.0)
    assert not signer.verify(tamper(token), "call-1", now=1000.0)


def test_links_use_a_key_of_their_own() -> None:
    """The link key is derived from the secret, so a MAC made with the raw secret (or the
    session key) for the same message does not pass."""
    import base64
    import hashlib
    import hmac

    signer = LinkSigner(b"secret")
    expires = signer.sign("c", 60, now=0).split(".")[0]
    raw = hmac.new(b"secret", b"c\x00" + expires.encode(), hashlib.sha256).digest()
    forged = f"{expires}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"
    assert not signer.verify(forged, "c", now=0)


# --- throttling --------------------------------------------------------------------------------

def test_throttle_locks_after_five_failures_in_five_minutes() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        assert not throttle.failure("ana", "10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("ana", "10.0.0.1") == 0
    assert throttle.failure("ana", "10.0.0.1")
    assert throttle.retry_after("ana", "10.0.0.1") == pytest.approx(300)
    assert throttle.retry_after("ana", "10.0.0.2") == 0  # another source
    assert throttle.retry_after("sam", "10.0.0.1") == 0  # another user
    clock.now += 299
    assert throttle.retry_after("ana", "10.0.0.1") == pytest.approx(1)
    clock.now += 1
    assert throttle.retry_after("ana", "10.0.0.1") == 0
    assert not throttle.failure("ana", "10.0.0.1")  # a fresh allowance


def test_throttle_window_slides_and_success_forgets() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.failure("ana", "a")
    clock.now += 301
    assert not throttle.failure("ana", "a")  # the old four fell out of the window
    for _ in range(3):
        throttle.failure("ana", "a")
    throttle.success("ana", "a")
    for _ in range(4):
        assert not throttle.failure("ana", "a")


def test_throttle_is_bounded() -> None:
    throttle = LoginThrottle(clock=Clock(), max_keys=10)
    for i in range(100):
        throttle.failure(f"u{i}", "a")
    assert len(throttle._failures) == 10


# --- voicebot passwd ---------------------------------------------------------------------------

def test_passwd_from_a_pipe(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pw\n"))
    assert passwd_main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password(printed, "s3cret pw")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert passwd_main(None) == 1
    assert "empty" in capsys.readouterr().err


def test_passwd_on_a_terminal_asks_twice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert passwd_main([]) == 1
    assert "differ" in capsys.readouterr().err
    answers = iter(["same", "same"])
    assert passwd_main([]) == 0
    assert verify_password(capsys.readouterr().out.strip(), "same")


# --- the routes --------------------------------------------------------------------------------

def build_app(directory: Directory, sessions: SessionStore, throttle: LoginThrottle) -> FastAPI:
    """The wiring the real app uses: the router, and guarded routes behind the principal."""
    app = FastAPI()
    current = principal_dependency(directory, sessions)
    app.include_router(auth_router(directory, sessions, throttle))
    guarded = APIRouter(dependencies=[Depends(current)])

    @guarded.get("/api/queues", dependencies=[Depends(require("supervisor"))])
    def queues() -> dict[str, list[str]]:
        return {"queues": ["general"]}

    @guarded.get("/api/whoami")
    def whoami(principal: Principal = Depends(require("agent"))) -> dict[str, str]:
        return {"id": principal.id}

    app.include_router(guarded)

    @app.get("/api/forgot_the_principal", dependencies=[Depends(require("agent"))])
    def miswired() -> dict[str, str]:
        return {"oops": "open"}

    @app.websocket("/ws/desk")
    async def desk(websocket: WebSocket) -> None:
        principal = principal_from_websocket(websocket, sessions)
        if principal is None:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await websocket.send_json({"id": principal.id})
        await websocket.close()

    return app


@pytest.fixture
def sessions() -> SessionStore:
    return SessionStore(b"test secret", ttl_s=3600)


@pytest.fixture
def client(directory: Directory, sessions: SessionStore) -> Iterator[TestClient]:
    with TestClient(build_app(directory, sessions, LoginThrottle())) as c:
        yield c


def login(client: TestClient, user: str, password: str) -> int:
    return client.post("/api/login", json={"user": user, "password": password}).status_code


def test_login_sets_a_strict_httponly_cookie(client: TestClient) -> None:
    response = client.post("/api/login", json={"user": "ana", "password": "ana-pw"})
    assert response.status_code == 200
    assert response.json() == {"id": "ana", "name": "Ana", "role": "agent", "kind": "user"}
    cookie = response.headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert attributes[0].startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain http here
    assert "max-age=3600" in attributes
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/api/me").json() == {"id": "ana", "name": "Ana", "role": "agent", "kind": "user"}


def test_cookie_is_secure_over_https(directory: Directory, sessions: SessionStore) -> None:
    with TestClient(build_app(directory, sessions, LoginThrottle()), base_url="https://testserver") as c:
        response = c.post("/api/login", json={"user": "ana", "password": "ana-pw"})
        assert "secure" in [p.strip().lower() for p in response.headers["set-cookie"].split(";")]


def test_bad_logins_look_alike(client: TestClient) -> None:
    unknown = client.post("/api/login", json={"user": "nobody", "password": "x"})
    wrong = client.post("/api/login", json={"user": "ana", "password": "x"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    assert "set-cookie" not in wrong.headers


def test_me_needs_a_login(client: TestClient) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    client.cookies.set(SESSION_COOKIE, "forged")
    assert client.get("/api/me").status_code == 401


def test_bearer_token(client: TestClient) -> None:
    ok = client.get("/api/me", headers={"Authorization": "Bearer tok-robot"})
    assert ok.json() == {"id": "robot", "name": "robot", "role": "supervisor", "kind": "token"}
    assert client.get("/api/queues", headers={"Authorization": "Bearer tok-robot"}).status_code == 200
    bad = client.get("/api/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/me", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401


def test_logout_revokes(client: TestClient, sessions: SessionStore) -> None:
    assert login(client, "ana", "ana-pw") == 200
    token = client.cookies[SESSION_COOKIE]
    assert sessions.get(token) == ANA
    response = client.post("/api/logout")
    assert response.status_code == 204
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"] or "max-age=0" in response.headers["set-cookie"].lower()
    assert sessions.get(token) is None
    client.cookies.set(SESSION_COOKIE, token)  # a copy kept elsewhere is dead too
    assert client.get("/api/me").status_code == 401
    assert client.post("/api/logout").status_code == 204  # idempotent


def test_login_again_replaces_the_session(client: TestClient, sessions: SessionStore) -> None:
    login(client, "ana", "ana-pw")
    first = client.cookies[SESSION_COOKIE]
    login(client, "ana", "ana-pw")
    assert sessions.get(first) is None and sessions.get(client.cookies[SESSION_COOKIE]) == ANA


def test_roles_guard_routes(client: TestClient) -> None:
    assert client.get("/api/queues").status_code == 401
    assert login(client, "ana", "ana-pw") == 200
    forbidden = client.get("/api/queues")
    assert forbidden.status_code == 403 and "supervisor" in forbidden.json()["detail"]
    assert client.get("/api/whoami").json() == {"id": "ana"}
    assert login(client, "sam", "sam-pw") == 200
    assert client.get("/api/queues").status_code == 200
    assert login(client, "root", "root-plain") == 200  # admin passes a supervisor's check
    assert client.get("/api/queues").json() == {"queues": ["general"]}
    assert client.get("/api/whoami").json() == {"id": "root"}
    assert client.get("/api/queues", headers={"Authorization": "Bearer demo-token"}).status_code == 403


def test_require_without_the_principal_fails_closed(client: TestClient) -> None:
    assert login(client, "root", "root-plain") == 200
    assert client.get("/api/forgot_the_principal").status_code == 401


def test_require_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError):
        require("root")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        require()


def test_login_is_throttled(directory: Directory, sessions: SessionStore) -> None:
    clock = Clock()
    with TestClient(build_app(directory, sessions, LoginThrottle(clock=clock))) as c:
        for _ in range(5):
            assert login(c, "ana", "wrong") == 401
        refused = c.post("/api/login", json={"user": "ana", "password": "ana-pw"})
        assert refused.status_code == 429  # even the right password, for a while
        assert refused.headers["retry-after"] == "300"
        assert login(c, "sam", "sam-pw") == 200  # others are not affected
        clock.now += 300
        assert login(c, "ana", "ana-pw") == 200


@pytest.mark.parametrize("kwargs", [
    {"content": b"not json", "headers": {"content-type": "application/json"}},
    {"content": b"user=ana&password=ana-pw", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    {"content": b'{"user": "ana", "password": "ana-pw"}', "headers": {"content-type": "text/plain"}},
    {"json": ["ana", "ana-pw"]},
    {"json": {"user": "ana"}},
    {"json": {"user": "ana", "password": "ana-pw", "admin": True}},
    {"json": {"user": "", "password": "x"}},
    {"json": {"user": "a" * 65, "password": "x"}},
    {"json": {"user": "ana", "password": "x" * 1025}},
    {"json": {"user": 7, "password": "ana-pw"}},
    {},
])
def test_malformed_login_bodies(client: TestClient, kwargs: dict) -> None:
    response = client.post("/api/login", **kwargs)
    assert response.status_code == 422
    assert all("input" not in error for error in response.json()["detail"])  # never echo a password
    assert "set-cookie" not in response.headers


def test_websocket_needs_the_session_cookie(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws/desk") as ws:
            ws.receive_json()
    assert refused.value.code == 1008
    assert login(client, "ana", "ana-pw") == 200
    with client.websocket_connect("/ws/desk") as ws:
        assert ws.receive_json() == {"id": "ana"}
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws/desk", headers={"origin": "https://evil.example"}) as ws:
            ws.receive_json()
    with client.websocket_connect("/ws/desk", headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_json() == {"id": "ana"}


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/login", "/api/logout", "/api/me"} <= set(paths)
