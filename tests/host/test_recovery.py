"""Restart safety: a surviving guest's progress carried over from its recorded steps, the run
directory of a row, and the state a recovered domain reports."""

from __future__ import annotations

from pathlib import Path

from sevlaunch.host import driver
from sevlaunch.host.recovery import recovered_reason, restore_progress, run_paths
from sevlaunch.host.runtime import Runtime
from sevlaunch.host.store import DomainRow, StepRow
from sevlaunch.host.timeline import GUEST_HALTED
from sevlaunch.protocol import Step


def row(state: str = "paused", reason: str = "user", run_dir: str | None = None) -> DomainRow:
    return DomainRow("u-1", "vm", "<domain/>", state, reason, 7, run_dir, 2)


def step(n: Step, outcome: str = "ok", detail: str = "") -> StepRow:
    return StepRow(2, int(n), "t", "p", 0.0, None, outcome, detail)


def runtime() -> Runtime:
    return Runtime(7, object(), driver.RunPaths(Path("/r")))  # type: ignore[arg-type]


def test_progress_is_restored_so_nothing_is_announced_or_recorded_twice() -> None:
    fresh = runtime()
    restore_progress(fresh, [step(Step.STARTED_PAUSED)])
    assert (fresh.measured, fresh.resumed, fresh.measurement_read, fresh.booted.is_set()) == (
        False, False, False, False,
    )  # fmt: skip
    done = runtime()
    restore_progress(
        done,
        [
            step(Step.LAUNCH_MEASURED),
            step(Step.MEASUREMENT_READ),
            step(Step.RESUMED_BOOTED, detail="LAUNCH_FINISH, vCPUs running"),
            step(Step.RESUMED_BOOTED, "failed", f"{GUEST_HALTED}: hashes differ"),
        ],
    )
    assert (done.measured, done.resumed, done.measurement_read, done.booted.is_set()) == (True,) * 4
    assert done.boot_failure == f"the {GUEST_HALTED}: hashes differ"


def test_the_run_directory_is_the_recorded_one_or_the_uuids() -> None:
    assert run_paths(row(run_dir="/state/run/x"), Path("/state/run")).root == Path("/state/run/x")
    assert run_paths(row(), Path("/state/run")).root == Path("/state/run/u-1")


def test_a_paused_guest_keeps_its_reason_and_a_running_one_is_unpaused() -> None:
    assert recovered_reason(row("paused", "user"), running=False) == "user"
    assert recovered_reason(row("paused", "user"), running=True) == "unpaused"
    assert recovered_reason(row("running", "unpaused"), running=True) == "unpaused"
