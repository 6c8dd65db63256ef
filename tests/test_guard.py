"""The ASGI guard in process: what the app sees of a refused request, and the error bodies."""

from __future__ import annotations

import asyncio
import errno
import json
from typing import Any

import httpx
import pytest

from sevlaunch._guard import Guard, Limits, Message, Receive, Scope, Send, bearer


class Recorder:
    """An app that reads the whole body and records how much of it it saw."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls = 0
        self.body = b""
        self.fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            self.body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.fail is not None:
            raise self.fail
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def render(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"status": status, "error": reason, "detail": message}


def guarded(app: Recorder, **limits: Any) -> Guard:
    return Guard(
        app,
        authorized=lambda scope: bearer(scope) == b"good",
        render=render,
        limits=Limits(**limits),
    )


def call(guard: Guard, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(**kwargs)

    return asyncio.run(go())


def test_a_body_without_the_token_is_refused_before_the_app_runs() -> None:
    app = Recorder()
    response = call(guarded(app), method="POST", url="/x", content=b"x" * 1000)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["connection"] == "close"
    assert app.calls == 0


def test_a_request_without_a_body_reaches_the_app_for_its_own_checks() -> None:
    app = Recorder()
    assert call(guarded(app), method="GET", url="/x").status_code == 200
    assert app.calls == 1


def test_a_streamed_body_is_cut_at_the_limit() -> None:
    app = Recorder()

    async def chunks() -> Any:
        for _ in range(64):
            yield b"y" * 1024

    response = call(
        guarded(app, max_body=10_000),
        method="POST",
        url="/x",
        content=chunks(),
        headers={"Authorization": "Bearer good"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload-too-large"
    assert len(app.body) <= 10_000 + 1024  # never more than one chunk past the limit


def test_a_body_at_the_limit_is_served() -> None:
    app = Recorder()
    response = call(
        guarded(app, max_body=4096),
        method="POST",
        url="/x",
        content=b"z" * 4096,
        headers={"Authorization": "Bearer good"},
    )
    assert response.status_code == 200
    assert app.body == b"z" * 4096


@pytest.mark.parametrize(
    ("fail", "status", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 503, "storage-full"),
        (OSError(errno.EROFS, "Read-only file system"), 503, "storage-read-only"),
        (RuntimeError("boom"), 500, "internal-error"),
    ],
)
def test_an_unhandled_exception_is_a_json_answer(
    fail: BaseException, status: int, reason: str
) -> None:
    response = call(
        guarded(Recorder(fail)), method="POST", url="/x", content=b"{}",
        headers={"Authorization": "Bearer good"},
    )  # fmt: skip
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.text)["error"] == reason


def test_a_stalled_body_times_out_with_408() -> None:
    app = Recorder()

    async def receive_stall() -> Message:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": [(b"authorization", b"Bearer good"), (b"content-length", b"10")],
    }
    asyncio.run(guarded(app, body_timeout=0.05)(scope, receive_stall, send))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"] == "body-timeout"
