"""A platform service on its own event loop in a daemon thread: the emulated ``/dev/sev``
inside a test or a single-process tool, on the same socket protocol as ``platform serve``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from sevlaunch.platform.service import PlatformService, serve_until


class BackgroundService:
    """Run a service on its own event loop in a daemon thread (tests, single-process tools).

    ``with BackgroundService(service, path):`` returns once the socket accepts connections.
    """

    def __init__(self, service: PlatformService, socket_path: str | Path, *, mode: int = 0o600):
        self.service = service
        self.socket_path = Path(socket_path)
        self.mode = mode
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="platform-service", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve_until(
                self.service, self.socket_path, self.mode, self._stop, self._ready.set
            )

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> BackgroundService:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
