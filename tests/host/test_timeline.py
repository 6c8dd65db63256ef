"""A launch step recorded once, twice seen: a store row and a live event with the protocol's
wording, and the boot helpers that read step 13's two records."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sevlaunch.host.events import EventBus
from sevlaunch.host.store import StepRow, Store
from sevlaunch.host.timeline import GUEST_BOOTED, GUEST_HALTED, boot_reported, booted, record_step
from sevlaunch.protocol import Outcome, Step

UUID = "5a1b2c3d-0000-4000-8000-000000000002"


def test_a_step_is_a_row_and_an_event_with_one_wording(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.put_domain(UUID, "vm", "<domain/>")
    row = store.domain(UUID)
    assert row is not None

    async def body() -> dict[str, object]:
        bus = EventBus()
        async with bus.subscribe() as queue:
            record_step(store, bus, row, 3, Step.STARTED_PAUSED, Outcome.OK, "pid 7", began=1.0)
            return queue.get_nowait()

    event = asyncio.run(body())
    (stored,) = store.steps(UUID)
    assert (stored.launch, stored.step, stored.name, stored.party, stored.outcome) == (
        3, int(Step.STARTED_PAUSED), Step.STARTED_PAUSED.title, Step.STARTED_PAUSED.party, "ok",
    )  # fmt: skip
    assert stored.started == 1.0
    assert stored.duration is not None
    assert stored.duration > 0
    assert {k: event[k] for k in ("step", "name", "party", "outcome", "detail", "launch")} == {
        "step": stored.step, "name": stored.name, "party": stored.party, "outcome": "ok",
        "detail": "pid 7", "launch": 3,
    }  # fmt: skip


def step13(outcome: str, detail: str) -> StepRow:
    return StepRow(1, int(Step.RESUMED_BOOTED), "t", "p", 0.0, None, outcome, detail)


def test_the_boot_is_read_from_step_13s_guest_record() -> None:
    resumed = step13("ok", "LAUNCH_FINISH, vCPUs running")
    assert not boot_reported([resumed])
    assert boot_reported([resumed, step13("failed", f"{GUEST_HALTED}: no kernel")])
    assert not booted([resumed, step13("failed", f"{GUEST_HALTED}: no kernel")])
    assert booted([resumed, step13("ok", f"{GUEST_BOOTED}: secrets luks-key, disk root")])
