"""Client construction + one request, against a bare request on an open client (issue 16).

Every sevlaunch HTTP client used to build its own verifying TLS context (httpx loads the
certifi bundle even for a Unix socket): that is the "old" side, built here exactly as the
clients were. The "new" side is :func:`sevlaunch._http.client`, which shares one unused
context for plain transports and one per CA file for HTTPS. The baseline is the same GET on
a client that is already open. All three run alternated against one uvicorn server on a
Unix socket in this process, so load moves them together.

    .venv/bin/python bench/http_clients.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvicorn

from sevlaunch import _http


async def app(
    scope: dict[str, object], receive: object, send: Callable[[dict[str, object]], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(path: Path) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, uds=str(path), log_level="error", lifespan="off"))
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server


def old_style(path: Path) -> None:
    """As the host and broker clients were built before: httpx's default context each time."""
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(base_url="http://sevlaunch-host", transport=transport, timeout=30) as c:
        c.get("/")


def new_style(path: Path) -> None:
    with _http.client(_http.parse(f"unix:{path}"), what="host manager") as c:
        c.get("/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sock"
        server = serve(path)
        open_client = _http.client(_http.parse(f"unix:{path}"), what="host manager")
        sides: dict[str, Callable[[], object]] = {
            "bare request": lambda: open_client.get("/"),
            "old client + request": lambda: old_style(path),
            "new client + request": lambda: new_style(path),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for run in sides.values():  # warm every path once
            run()
        for _ in range(args.rounds):
            for name, run in sides.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        open_client.close()
        server.should_exit = True
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:<22} median {value * 1e3:8.3f} ms")
    base = median["bare request"]
    print(f"old client + request / bare request: {median['old client + request'] / base:6.2f}")
    print(f"new client + request / bare request: {median['new client + request'] / base:6.2f}")
    print(
        f"old / new (construction saved): "
        f"{median['old client + request'] / median['new client + request']:6.2f}"
    )


if __name__ == "__main__":
    main()
