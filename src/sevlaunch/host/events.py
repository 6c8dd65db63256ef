"""The host manager's event stream: lifecycle events (libvirt's names) and launch steps.

A subscriber takes every domain's events (the dashboard) or one domain's, filtered here as
``virConnectDomainEventRegisterAny`` filters for the domain it is given: a VM tool waiting
for its own guest's measurement is not sent the other N - 1 launches' events, so the
stream's cost grows with the launches, not with their square.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

QUEUE_LIMIT = 1000


class EventBus:
    """Fan-out of events to every subscriber of all domains and to the subscribers of the
    event's domain; a slow subscriber loses its oldest events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._by_domain: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    def publish(self, kind: str, domain: str | None, **fields: Any) -> dict[str, Any]:
        event = {"event": kind, "domain": domain, "timestamp": time.time(), **fields}
        for queue in self._queues:
            _put(queue, event)
        for queue in self._by_domain.get(domain, ()) if domain is not None else ():
            _put(queue, event)
        return event

    def lifecycle(self, domain: str, kind: str, detail: str) -> None:
        """libvirt's lifecycle event: ``kind`` Started/Suspended/Resumed/Stopped/Defined/Undefined."""
        self.publish("lifecycle", domain, type=kind, detail=detail)

    @asynccontextmanager
    async def subscribe(
        self, domain: str | None = None
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of every event, or of ``domain``'s only."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        group = self._queues if domain is None else self._by_domain.setdefault(domain, set())
        group.add(queue)
        try:
            yield queue
        finally:
            group.discard(queue)
            if domain is not None and not group:
                self._by_domain.pop(domain, None)


def _put(queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)
