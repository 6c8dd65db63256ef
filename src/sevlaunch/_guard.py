"""The ASGI guard in front of the host manager's and the broker's APIs.

A request that carries a body must show a valid bearer token before one byte of the body is
read (FastAPI reads and parses the body before it runs any dependency, so an unauthenticated
512 MiB POST used to cost 2 GB); a body is cut off at :attr:`Limits.max_body` while it
streams in (413) and must arrive within :attr:`Limits.body_timeout` (408). Every refusal
closes the connection, so nothing more of that body is read. An exception no handler took
becomes a JSON 503 naming the cause when it is a storage fault (:mod:`sevlaunch._storage`),
else a JSON 500: never a plain-text error or a reset.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from sevlaunch import _storage
from sevlaunch.errors import SevlaunchError

log = logging.getLogger("sevlaunch.http")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``render(status, reason, message)`` -> the service's own JSON error body
Render = Callable[[int, str, str], dict[str, Any]]


@dataclass(frozen=True)
class Limits:
    """What one connection may cost a service; every ``serve`` applies these."""

    max_body: int = 1 << 20  # a launch request is ~12 KiB, a domain XML a few KiB
    header_timeout: float = 10.0  # from connect (or the end of the last response) to headers
    body_timeout: float = 30.0  # from the headers to the last byte of the body
    max_connections: int = 512  # the VM tool holds two per launch (calls + events)


class _RefusedError(SevlaunchError):
    """Raised into the app once the guard has answered for it (the guard catches it; the app's
    own answer, if it makes one, is dropped)."""


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def bearer(scope: Scope) -> bytes | None:
    """The bearer token of a request's Authorization header, if any."""
    value = _headers(scope).get(b"authorization", b"")
    scheme, _, token = value.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


class Guard:
    """Pure ASGI middleware: token before body, body size and time limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authorized: Callable[[Scope], bool | Awaitable[bool]],
        render: Render,
        limits: Limits | None = None,
    ) -> None:
        self.app, self.authorized, self.render = app, authorized, render
        self.limits = limits or Limits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        length = headers.get(b"content-length")
        has_body = b"transfer-encoding" in headers or (length is not None and length != b"0")
        if has_body and not await self._authorized(scope):
            await self._answer(send, 401, "unauthenticated", "a valid bearer token is required")
            return
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body):
            await self._too_large(send)
            return
        await self._run(scope, receive, send)

    async def _authorized(self, scope: Scope) -> bool:
        """``authorized`` may be a coroutine (the broker looks launchers' tokens up in its
        database, in a worker thread)."""
        allowed = self.authorized(scope)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        state = {"read": 0, "done": False, "answered": False, "started": False}

        async def guarded_receive() -> Message:
            if state["done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await refuse(408, "body-timeout", "the request body did not arrive in time")
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.limits.max_body:
                    await refuse(*self._too_large_args())
                state["done"] = not message.get("more_body", False)
            return message

        async def refuse(status: int, reason: str, text: str) -> None:
            if not state["started"]:
                state["answered"] = True
                await self._answer(send, status, reason, text)
            raise _RefusedError

        async def guarded_send(message: Message) -> None:
            if state["answered"]:
                return
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _RefusedError:
            pass
        except Exception as exc:
            if state["answered"]:
                return
            if state["started"]:
                raise
            await self._failed(send, scope, exc)

    async def _failed(self, send: Send, scope: Scope, exc: Exception) -> None:
        reason = _storage.fault(exc)
        if reason is None:
            log.error("internal error on %s %s", scope["method"], scope["path"], exc_info=exc)
            await self._answer(send, 500, "internal-error", f"internal error: {exc}", close=False)
            return
        log.warning("%s on %s %s: %s", reason, scope["method"], scope["path"], exc)
        await self._answer(send, 503, reason, _storage.describe(reason), close=False)

    def _too_large_args(self) -> tuple[int, str, str]:
        size = self.limits.max_body
        return 413, "payload-too-large", f"a request body may hold at most {size} bytes"

    async def _too_large(self, send: Send) -> None:
        await self._answer(send, *self._too_large_args())

    async def _answer(
        self, send: Send, status: int, reason: str, text: str, *, close: bool = True
    ) -> None:
        body = json.dumps(self.render(status, reason, text)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
