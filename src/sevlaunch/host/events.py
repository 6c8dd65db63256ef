"""The host manager's event stream: lifecycle events (libvirt's names) and launch steps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

QUEUE_LIMIT = 1000


class EventBus:
    """Fan-out of events to every subscriber; a slow subscriber loses its oldest events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, kind: str, domain: str | None, **fields: Any) -> dict[str, Any]:
        event = {"event": kind, "domain": domain, "timestamp": time.time(), **fields}
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        return event

    def lifecycle(self, domain: str, kind: str, detail: str) -> None:
        """libvirt's lifecycle event: ``kind`` Started/Suspended/Resumed/Stopped/Defined/Undefined."""
        self.publish("lifecycle", domain, type=kind, detail=detail)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
