"""The host's event stream as step 10 uses it: the VM tool waits for the host's
``measurement-available`` event of its launch (the 2017 design's wish) before it reads the
measurement. Only when the stream is unavailable (the host does not serve it, or it broke)
does the tool poll ``launch_security_info`` instead, as a plain QEMU client would.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from sevlaunch.errors import SevlaunchError
from sevlaunch.host.client import HostClient

log = logging.getLogger("sevlaunch.host")

#: Seconds to wait for the stream to open before the start (a host without one: poll).
SUBSCRIBE_WAIT = 2.0


class MeasurementWatch:
    """This domain's ``measurement-available`` events (by launch number) and its stop, heard
    on a second connection to the host opened before the start."""

    #: How step 10 words a measurement this watch announced.
    announcement = "announced by the host"

    def __init__(self, host: HostClient, domain: str) -> None:
        self.domain = domain
        self._client = host.sibling()
        self._changed = threading.Condition()
        self._measured: set[int] = set()
        self._subscribed = False
        self._ended = False
        self._stopped = False
        self._thread = threading.Thread(target=self._listen, name=f"events-{domain}", daemon=True)

    def __enter__(self) -> MeasurementWatch:
        self._thread.start()
        deadline = time.monotonic() + SUBSCRIBE_WAIT
        with self._changed:  # the stream must be open before the start, or it misses events
            while not (self._subscribed or self._ended) and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._changed:
            self._ended = True
        self._client.close()

    @property
    def available(self) -> bool:
        """Whether the stream is open: events can still arrive."""
        with self._changed:
            return self._subscribed and not self._ended

    def _listen(self) -> None:
        try:
            for event in self._client.events(self.domain):
                if event.kind == "subscribed":
                    self._note(subscribed=True)
                elif event.domain != self.domain:
                    continue
                elif event.kind == "measurement-available":
                    launch = event.fields.get("launch")
                    self._note(launch=launch if isinstance(launch, int) else None)
                elif event.kind == "lifecycle" and event.fields.get("type") == "Stopped":
                    self._note(stopped=True)
        except (SevlaunchError, OSError, ValueError) as exc:
            log.debug("event stream of %s ended: %s", self.domain, exc)
        except (httpx.HTTPError, httpx.StreamError) as exc:  # as when the watch closes it
            log.debug("event stream of %s closed: %s: %s", self.domain, type(exc).__name__, exc)
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _note(
        self, *, subscribed: bool = False, launch: int | None = None, stopped: bool = False
    ) -> None:
        with self._changed:
            self._subscribed |= subscribed
            self._stopped |= stopped
            if launch is not None:
                self._measured.add(launch)
            self._changed.notify_all()

    def wait(self, launch: int, timeout: float) -> bool:
        """Until the host announces ``launch``'s measurement (True), or the domain stops, the
        stream ends or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while launch not in self._measured:
                left = deadline - time.monotonic()
                if self._ended or self._stopped or left <= 0:
                    return False
                self._changed.wait(left)
            return True
