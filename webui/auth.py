"""One gate in front of the whole app (REST API, docs, Gradio UI and its internal routes).

- With logins configured, every route needs one, except the few that draw the login page (``PUBLIC``):
  HTTP Basic (scripts, A1111 clients) or Gradio's login cookie (the browser).
- Failed logins (the login form or Basic credentials) are limited per client address: after
  ``login_failures_per_minute`` failures in a minute, 429 with ``Retry-After``.
- Passwords are compared in constant time (``hmac.compare_digest``).
- Request bodies over ``max_body_bytes`` get 413 (declared length or counted while streaming).

The caller's login is put in the ASGI scope (``scope[USER_KEY]``) for the API's per-user routes.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import json
import re
import threading
import time
from typing import Any, Callable, Optional

USER_KEY = "sdts.user"
ANONYMOUS = "local"  # the REST caller's identity when no login is configured

# Routes that work without a login: the page itself (it shows only the login form then), the login
# POST, and the static files that draw the form. Nothing here returns user data or changes state.
PUBLIC = [
    re.compile(p)
    for p in (
        r"^/$",
        r"^/login/?$",
        r"^/gradio_api/login_check/?$",  # tells the page to show the login form (401 until logged in)
        r"^/(assets|static|svelte)/.+",
        r"^/(favicon\.ico|theme\.css|robots\.txt|manifest\.json)$",
        r"^/gradio_api/theme\.css$",
        r"^/pwa_icon(/\d+)?$",
    )
]
BASIC_REALM_PATHS = re.compile(r"^/(sdapi/|docs|redoc|openapi\.json)")  # scripts and browsers get a Basic prompt
LOGIN_FORM = re.compile(r"^/login/?$")


def is_public(path: str) -> bool:
    return any(p.match(path) for p in PUBLIC)


class Logins:
    """The configured (user, password) pairs; ``verify`` compares in constant time."""

    def __init__(self, pairs: tuple[tuple[str, str], ...]):
        self._pairs = tuple((u.encode(), p.encode()) for u, p in pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def verify(self, username: str, password: str) -> bool:
        user_b, pass_b = username.encode(), password.encode()
        ok = False
        for user, password_ in self._pairs:  # every pair is compared: the time does not depend on which matched
            ok |= hmac.compare_digest(user, user_b) & hmac.compare_digest(password_, pass_b)
        return bool(ok)


class FailedLogins:
    """Sliding one-minute window of failed logins per client address."""

    WINDOW_S = 60.0

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self.limit = max(1, int(limit))
        self._clock = clock
        self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def _trim(self, address: str, now: float) -> collections.deque:
        q = self._failures[address]
        while q and now - q[0] >= self.WINDOW_S:
            q.popleft()
        return q

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: it may now)."""
        with self._lock:
            now = self._clock()
            q = self._trim(address, now)
            if len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.WINDOW_S - now + 0.999))

    def fail(self, address: str) -> None:
        with self._lock:
            self._trim(address, self._clock()).append(self._clock())


class _BodyTooLarge(Exception):
    pass


class Gate:
    """Pure ASGI middleware: body limit, login, rate limit. ``cookie_user(scope)`` reads Gradio's login."""

    def __init__(self, app, *, logins: Logins, max_body_bytes: int, failures: FailedLogins,
                 cookie_user: Callable[[dict], Optional[str]] = lambda scope: None,
                 may_read: Callable[[str, str], bool] = lambda path, user: True):
        self.app = app
        self.logins = logins
        self.max_body_bytes = int(max_body_bytes)
        self.failures = failures
        self.cookie_user = cookie_user
        self.may_read = may_read  # (request path, user) -> False: 404 (another user's output file)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        address = (scope.get("client") or ("unknown",))[0]

        # 1. Body size (declared)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await _respond(send, 413, {"detail": f"request body over {self.max_body_bytes} bytes"})

        # 2. Login
        if self.logins:
            user, tried_basic = self._basic_user(headers)
            if tried_basic and user is None:
                wait = self.failures.retry_after(address)
                if wait:
                    return await _respond(send, 429, {"detail": "too many failed logins"}, {"Retry-After": str(wait)})
                self.failures.fail(address)
            if user is None:
                user = self.cookie_user(scope)
            if LOGIN_FORM.match(path) and scope.get("method") == "POST":
                wait = self.failures.retry_after(address)
                if wait:
                    return await _respond(send, 429, {"detail": "too many failed logins"}, {"Retry-After": str(wait)})
                send = self._count_login_result(send, address)
            elif user is None and not is_public(path):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                extra = {"WWW-Authenticate": "Basic"} if BASIC_REALM_PATHS.match(path) else {}
                return await _respond(send, 401, {"detail": {"error": "Not authenticated", "auth_message": ""}}
                                      if not extra else {"detail": "Incorrect username or password"}, extra)
            if user is not None and not self.may_read(path, user):
                return await _respond(send, 404, {"detail": "Not Found"})
            scope = {**scope, USER_KEY: user}
        else:
            scope = {**scope, USER_KEY: ANONYMOUS}

        # 3. Body size (streamed)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _respond(send, 413, {"detail": f"request body over {self.max_body_bytes} bytes"})

    def _basic_user(self, headers: dict) -> tuple[Optional[str], bool]:
        value = headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None, False
        try:
            user, _, password = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None, True
        return (user if self.logins.verify(user, password) else None), True

    def _count_login_result(self, send, address: str):
        async def wrapped(message):
            if message["type"] == "http.response.start" and message["status"] != 200:
                self.failures.fail(address)
            await send(message)

        return wrapped


async def _respond(send, status: int, body: Any, headers: Optional[dict] = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def gradio_cookie_user(gradio_app) -> Callable[[dict], Optional[str]]:
    """The user of a Gradio login cookie (``access-token[-unsecure]-<cookie_id>``), via Gradio's own tokens."""
    from http.cookies import SimpleCookie

    def user_of(scope: dict) -> Optional[str]:
        raw = "; ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"cookie")
        if not raw:
            return None
        cookies = SimpleCookie()
        try:
            cookies.load(raw)
        except Exception:  # a malformed cookie header is no login
            return None
        cookie_id = getattr(gradio_app, "cookie_id", "")
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if name in cookies:
                user = gradio_app.tokens.get(cookies[name].value)
                if user is not None:
                    return user
        return None

    return user_of


def output_reader_check(outputs_dir, history, admins: tuple[str, ...]) -> Callable[[str, str], bool]:
    """Gradio's ``/gradio_api/file=<path>`` serves anything under outputs/: only to the job's owner (and admins)."""
    from pathlib import Path

    root = Path(outputs_dir).resolve()

    def may_read(path: str, user: str) -> bool:
        if not path.startswith(FILE_ROUTE) or user in admins:
            return True
        target = Path(path[len(FILE_ROUTE):]).resolve()
        if not target.is_relative_to(root):
            return True  # Gradio's own cache and static files: Gradio decides
        owner = history.owner_of(str(target))
        return owner is None or owner == user

    return may_read


FILE_ROUTE = "/gradio_api/file="
