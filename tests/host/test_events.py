"""The host's event stream: every subscriber sees every event; a slow one loses its oldest."""

from __future__ import annotations

import asyncio
import contextlib

from sevlaunch.host import events
from sevlaunch.host.events import EventBus


def test_every_subscriber_sees_every_event() -> None:
    async def body() -> tuple[list[str], list[str]]:
        bus = EventBus()
        async with bus.subscribe() as one, bus.subscribe() as two:
            bus.lifecycle("vm", "Started", "Booted")
            bus.publish("launch-step", "vm", step=8)
            return [one.get_nowait()["event"] for _ in range(2)], [
                two.get_nowait()["event"] for _ in range(2)
            ]

    assert asyncio.run(body()) == (["lifecycle", "launch-step"], ["lifecycle", "launch-step"])


def test_a_lifecycle_event_has_libvirts_type_and_detail() -> None:
    async def body() -> dict[str, object]:
        bus = EventBus()
        async with bus.subscribe() as queue:
            bus.lifecycle("vm", "Stopped", "Destroyed")
            return queue.get_nowait()

    event = asyncio.run(body())
    assert {k: event[k] for k in ("event", "domain", "type", "detail")} == {
        "event": "lifecycle", "domain": "vm", "type": "Stopped", "detail": "Destroyed",
    }  # fmt: skip
    assert isinstance(event["timestamp"], float)


def test_a_slow_subscriber_loses_its_oldest_events_only() -> None:
    async def body() -> list[int]:
        bus = EventBus()
        async with bus.subscribe() as queue:
            for n in range(events.QUEUE_LIMIT + 5):
                bus.publish("n", None, n=n)
            return [queue.get_nowait()["n"] for _ in range(queue.qsize())]

    kept = asyncio.run(body())
    assert kept == list(range(5, events.QUEUE_LIMIT + 5))


def test_nobody_listening_costs_nothing() -> None:
    assert EventBus().publish("x", None)["event"] == "x"


def test_a_domain_subscriber_gets_that_domains_events_only() -> None:
    async def body() -> tuple[list[object], list[object], int]:
        bus = EventBus()
        async with bus.subscribe("a") as mine, bus.subscribe() as everything:
            for domain in ("a", "b", None, "a"):
                bus.publish("step", domain)
            kept = [mine.get_nowait()["domain"] for _ in range(mine.qsize())]
            seen = [everything.get_nowait()["domain"] for _ in range(everything.qsize())]
        return kept, seen, len(bus._by_domain)

    kept, seen, left = asyncio.run(body())
    assert kept == ["a", "a"]
    assert seen == ["a", "b", None, "a"]
    assert left == 0  # a domain's last subscriber gone: nothing kept for it


def test_publishing_touches_only_the_events_subscribers() -> None:
    """The fan-out of one event is its domain's watchers plus the all-domain ones: with a
    watcher per domain, N events cost N deliveries, not N squared."""

    async def body() -> int:
        bus = EventBus()
        async with contextlib.AsyncExitStack() as stack:
            queues = [await stack.enter_async_context(bus.subscribe(f"d{i}")) for i in range(50)]
            for i in range(50):
                bus.publish("measurement-available", f"d{i}")
            return sum(q.qsize() for q in queues)

    assert asyncio.run(body()) == 50
