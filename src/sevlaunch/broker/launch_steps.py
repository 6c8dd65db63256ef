"""The VM tool's record of a launch's 13 steps, kept with the launch it belongs to.

The broker sees steps 4, 5 and 11 itself; the VM tool sees them all (the host's from the
host's own timeline). Once a launch is over, its launcher gives the broker the same table it
printed, and the broker keeps it in the audit log (``launch.steps``, one per launch), so that
the broker's page shows every step with the terminal's figures, keyed by the launch id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from sevlaunch.broker import db, store
from sevlaunch.broker.schema import audit
from sevlaunch.errors import ConflictError, FormatError
from sevlaunch.protocol import StepReport

ACTION = "launch.steps"
DETAIL_MAX = 2000  #: characters kept of one step's detail


class LaunchSteps:
    """The step half of :class:`~sevlaunch.broker.service.Broker` (which sets these)."""

    engine: sa.Engine
    _audit: Callable[..., None]

    def record_steps(
        self,
        launch_id: str,
        steps: Sequence[StepReport],
        *,
        host_launch: int | None = None,
        launcher: str = store.DEFAULT_LAUNCHER,
    ) -> int:
        """Keep ``launcher``'s record of its own launch's steps, once (ConflictError after);
        how many steps it holds."""
        numbers = [int(s.step) for s in steps]
        if len(set(numbers)) != len(numbers):
            raise FormatError("launch steps", "steps", "a step is given twice", value=numbers)
        with db.writing(self.engine) as conn:
            row = store.get_launch(conn, launch_id, launcher)
            done = conn.execute(
                sa.select(audit.c.id).where(audit.c.launch == row.id, audit.c.action == ACTION)
            ).first()
            if done is not None:
                raise ConflictError(
                    "steps-recorded", f"the steps of launch {row.id} are already recorded"
                )
            detail: dict[str, Any] = {"steps": [_wire(s) for s in steps]}
            if host_launch is not None:
                detail["host-launch"] = host_launch
            self._audit(
                conn,
                "launcher",
                ACTION,
                "ok",
                workload=row.workload,
                launch=row.id,
                detail=detail,
                launcher=row.launcher,
            )
        return len(steps)


def _wire(step: StepReport) -> dict[str, object]:
    return {
        "step": int(step.step),
        "outcome": step.outcome,
        "started": step.started,
        "duration": step.duration,
        "detail": step.detail[:DETAIL_MAX],
    }


def steps_of(detail: dict[str, Any], launch: int = 0) -> list[StepReport]:
    """The steps an audit entry's detail holds (none if it holds no well-formed ones)."""
    found = detail.get("steps")
    if not isinstance(found, list):
        return []
    try:
        return [StepReport.from_wire({**s, "launch": launch}) for s in found if isinstance(s, dict)]
    except FormatError:
        return []
