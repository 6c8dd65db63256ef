"""A launch step as the host manager records it: a row in the store's timeline and a live
``launch-step`` event, with the same fields, so the dashboard and the CLI agree.
"""

from __future__ import annotations

import time

from sevlaunch.host.events import EventBus
from sevlaunch.host.store import DomainRow, Store


def record_step(
    store: Store,
    events: EventBus,
    row: DomainRow,
    launch: int,
    step: int,
    name: str,
    party: str,
    outcome: str,
    detail: str = "",
    began: float | None = None,
) -> None:
    """Record and publish one step; its duration runs from ``began`` when given."""
    now = time.time()
    duration = now - began if began is not None else None
    store.add_step(
        row.uuid,
        launch,
        step,
        name,
        party,
        outcome,
        detail,
        started=began or now,
        duration=duration,
    )
    events.publish(
        "launch-step",
        row.name,
        launch=launch,
        step=step,
        name=name,
        party=party,
        outcome=outcome,
        detail=detail,
        duration=duration,
    )
