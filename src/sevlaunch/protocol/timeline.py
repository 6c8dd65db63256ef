"""A launch's steps as one row each, from every record kept of them.

A party may record a step more than once (the host records step 13 when the vCPUs resume and
again when the guest reports its boot); the terminal and both dashboards show one row per
step, made here in one way, so their figures agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from sevlaunch.protocol.steps import Outcome, Step
from sevlaunch.protocol.values import StepReport


def one_per_step(reports: Iterable[StepReport]) -> dict[Step, StepReport]:
    """Each step's records merged: from the first start to the last end, failed if any record
    failed, the details joined in order."""
    grouped: dict[Step, list[StepReport]] = {}
    for report in sorted(reports, key=lambda r: (r.started, int(r.step))):
        grouped.setdefault(report.step, []).append(report)
    return {step: _merge(found) for step, found in sorted(grouped.items())}


def _merge(found: list[StepReport]) -> StepReport:
    if len(found) == 1:
        return found[0]
    first = found[0]
    end = max(r.started + (r.duration or 0.0) for r in found)
    failed = any(r.outcome == Outcome.FAILED for r in found)
    details = [r.detail for r in found if r.detail]
    return StepReport(
        launch=first.launch,
        step=first.step,
        outcome=str(Outcome.FAILED) if failed else found[-1].outcome,
        started=first.started,
        duration=end - first.started,
        detail="; ".join(dict.fromkeys(details)),
    )
