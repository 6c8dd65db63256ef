"""The guest's attestation agent: a 429 or 503 decided nothing, so it waits the Retry-After
(capped) and asks again a bounded number of times; a refusal is final at once."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sevlaunch.errors import LaunchRefusedError
from sevlaunch.protocol.snp import GuestAttestationConfig
from sevlaunch.vmm.attest_agent import MAX_WAIT, BrokerAgent

NONCE = base64.b64encode(b"n" * 32).decode()


@pytest.fixture
def broker() -> Iterator[tuple[str, list[tuple[int, dict[str, str], dict[str, object]]]]]:
    """A broker stand-in answering from a script of (status, headers, body), one per POST."""
    script: list[tuple[int, dict[str, str], dict[str, object]]] = []
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            status, headers, body = script.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()
    assert not script, "the agent made fewer requests than scripted"


def test_throttled_and_unavailable_answers_are_retried_after_their_wait(
    broker: tuple[str, list[tuple[int, dict[str, str], dict[str, object]]]],
) -> None:
    url, script = broker
    busy: dict[str, object] = {"error": "rate-limited", "detail": "later"}
    script += [
        (429, {"Retry-After": "7"}, busy),
        (503, {"Retry-After": "600"}, {"error": "kds-unavailable", "detail": "later"}),
        (200, {}, {"workload": "app", "nonce": NONCE, "expires": 1.0}),
    ]
    waits: list[float] = []
    agent = BrokerAgent(timeout=10, sleep=waits.append)
    challenge = asyncio.run(agent.challenge(GuestAttestationConfig(url, "app")))
    assert challenge.nonce == b"n" * 32
    assert waits == [7.0, MAX_WAIT]  # a long Retry-After is capped


def test_retries_are_bounded_and_a_refusal_is_final(
    broker: tuple[str, list[tuple[int, dict[str, str], dict[str, object]]]],
) -> None:
    url, script = broker
    script += [(503, {}, {"error": "kds-unavailable", "detail": "down"})] * 3
    script += [(403, {}, {"error": "replay", "detail": "spent"})]
    waits: list[float] = []
    agent = BrokerAgent(timeout=10, retries=2, sleep=waits.append)
    config = GuestAttestationConfig(url, "app")
    with pytest.raises(LaunchRefusedError) as info:
        asyncio.run(agent.challenge(config))
    assert (info.value.reason, waits) == ("kds-unavailable", [1.0, 1.0])
    with pytest.raises(LaunchRefusedError) as info:
        asyncio.run(agent.challenge(config))
    assert info.value.reason == "replay"
    assert waits == [1.0, 1.0]  # no wait before a refusal
