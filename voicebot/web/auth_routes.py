"""Logins over HTTP: ``POST /api/login``, ``POST /api/logout``, ``GET /api/me``, and the
dependencies that guard the other routes.

Browsers hold a session cookie (HttpOnly, SameSite=Strict: page scripts cannot read it and
other sites cannot make the browser send it, which is this API's defence against CSRF);
machines send ``Authorization: Bearer <api token>``.  Wiring, in the app factory::

    current = principal_dependency(directory, sessions)
    app.include_router(auth_router(directory, sessions, throttle))
    guarded = APIRouter(dependencies=[Depends(current)])       # every route: logged in
    @guarded.get("/api/calls", dependencies=[Depends(require("supervisor"))])
    def calls(...): ...
    app.include_router(guarded)

:func:`require` reads the principal that ``current`` left on ``request.state``, so ``current``
must come first (app, router or decorator dependencies run before the endpoint's own); without
it every request is refused with 401.

Behind a reverse proxy, run uvicorn with ``--proxy-headers --forwarded-allow-ips=<proxy>`` so
that the client address (login throttling) and the scheme (the cookie's Secure flag) are the
browser's, not the proxy's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from voicebot.auth import MAX_SECRET_CHARS, ROLES, Directory, LoginThrottle, Principal, Role, SessionStore, role_allows

log = logging.getLogger(__name__)

SESSION_COOKIE = "voicebot_session"
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}

_bearer = HTTPBearer(auto_error=False, description="an API token from settings.api_tokens")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the session from POST /api/login")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_SECRET_CHARS)


class PrincipalOut(BaseModel):
    id: str
    name: str
    role: Role
    kind: Literal["user", "token"]

    @classmethod
    def of(cls, principal: Principal) -> PrincipalOut:
        return cls(id=principal.id, name=principal.name, role=principal.role, kind=principal.kind)


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _cookie_attributes(request: Request) -> dict[str, object]:
    """The same attributes on set and delete, or the browser keeps a second cookie."""
    return {"path": "/", "httponly": True, "samesite": "strict", "secure": request.url.scheme == "https"}


def principal_dependency(directory: Directory, sessions: SessionStore) -> Callable[..., Principal]:
    """A dependency giving the caller's Principal, from the bearer token when one is sent, else
    the session cookie; 401 with ``WWW-Authenticate: Bearer`` otherwise.  It also leaves the
    principal on ``request.state.principal`` for :func:`require`.

    Synchronous on purpose: FastAPI runs it in a worker thread, where a token's first Argon2
    check cannot stall the event loop the calls' audio runs on."""

    def current_principal(request: Request,
                          bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                          session: str | None = Depends(_cookie)) -> Principal:
        principal: Principal | None = None
        if bearer is not None:
            principal = directory.by_token(bearer.credentials)
        elif session:
            principal = sessions.get(session)
        if principal is None:
            raise HTTPException(401, "login required", headers=_UNAUTHORIZED)
        request.state.principal = principal
        return principal

    return current_principal


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that passes principals holding one of ``roles`` or a higher one (an admin
    passes ``require("supervisor")``) and answers 403 to the rest.  Needs the dependency from
    :func:`principal_dependency` to have run first; refuses with 401 when it has not."""
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"require() takes roles among {ROLES}, got {roles}")

    async def check_role(request: Request) -> Principal:
        principal = getattr(request.state, "principal", None)
        if not isinstance(principal, Principal):
            log.error("require%s on %s without the principal dependency before it", roles, request.url.path)
            raise HTTPException(401, "login required", headers=_UNAUTHORIZED)
        if not any(role_allows(principal.role, role) for role in roles):
            raise HTTPException(403, f"needs the {' or '.join(roles)} role")
        return principal

    return check_role


def principal_from_websocket(websocket: WebSocket, sessions: SessionStore, check_origin: bool = True) -> Principal | None:
    """The logged-in principal of a WebSocket handshake (by session cookie), else None: the
    endpoint then refuses it (``refuse_websocket``).

    With ``check_origin``, a browser's handshake from another origin is refused too:
    SameSite=Strict keeps the cookie from other sites, but not from sibling subdomains of the
    same site.  Turn it off behind a proxy that rewrites the Host header."""
    if check_origin:
        origin = websocket.headers.get("origin")
        if origin and urlsplit(origin).netloc.lower() != websocket.headers.get("host", "").lower():
            return None
    token = websocket.cookies.get(SESSION_COOKIE)
    principal = sessions.get(token) if token else None
    if principal is not None:
        websocket.state.principal = principal
    return principal


async def refuse_websocket(websocket: WebSocket, code: int) -> None:
    """Refuse with an application close code (4401: not signed in, 4403: not for this role).
    Accept first: a handshake refused outright reaches a browser only as 1006, and its page
    could not tell "sign in again" from "the server is away"."""
    await websocket.accept()
    await websocket.close(code=code)


class _NoEchoRoute(APIRoute):
    """Answers 422 without the ``input`` FastAPI copies into validation errors: on these
    routes it may be a password, and proxies log response bodies."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
                return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

        return route


def auth_router(directory: Directory, sessions: SessionStore, throttle: LoginThrottle) -> APIRouter:
    """``POST /api/login``, ``POST /api/logout`` and ``GET /api/me``."""
    router = APIRouter(tags=["auth"], route_class=_NoEchoRoute)
    current = principal_dependency(directory, sessions)

    @router.post("/api/login", responses={401: {"description": "wrong user or password"},
                                          429: {"description": "too many failed logins; see Retry-After"}})
    def login(body: LoginBody, request: Request, response: Response) -> PrincipalOut:
        """Check a user and password and set the session cookie.  Synchronous: Argon2 runs in a
        worker thread, off the event loop."""
        source = _source(request)
        wait = throttle.retry_after(body.user, source)
        if wait > 0:
            raise HTTPException(429, "too many failed logins; try again later",
                                headers={"Retry-After": str(math.ceil(wait))})
        principal = directory.authenticate(body.user, body.password)
        if principal is None:
            if throttle.failure(body.user, source):
                log.warning("login: %r from %s locked out for %.0f s after %d failures",
                            body.user, source, throttle.lockout_s, throttle.max_failures)
            else:
                log.info("login: failed for %r from %s", body.user, source)
            raise HTTPException(401, "wrong user or password", headers=_UNAUTHORIZED)
        throttle.success(body.user, source)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            sessions.revoke(old)
        token = sessions.create(principal)
        response.set_cookie(SESSION_COOKIE, token, max_age=int(sessions.ttl_s), **_cookie_attributes(request))  # type: ignore[arg-type]
        response.headers["Cache-Control"] = "no-store"
        log.info("login: %s %r from %s", principal.role, principal.id, source)
        return PrincipalOut.of(principal)

    @router.post("/api/logout", status_code=204, response_class=Response)
    async def logout(request: Request) -> Response:
        """End this browser's session and clear its cookie (idempotent)."""
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            sessions.revoke(token)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, **_cookie_attributes(request))  # type: ignore[arg-type]
        return response

    @router.get("/api/me", responses={401: {"description": "not logged in"}})
    def me(principal: Principal = Depends(current)) -> PrincipalOut:
        """Who this session or token is: pages use it to choose what to show."""
        return PrincipalOut.of(principal)

    return router
