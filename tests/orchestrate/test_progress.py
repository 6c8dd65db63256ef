"""The terminal view: the 13 steps in the protocol's words, the host's own records marked."""

from __future__ import annotations

from rich.console import Console

from sevlaunch.orchestrate.launch import StepRecord
from sevlaunch.orchestrate.progress import Progress
from sevlaunch.protocol import Step


def _text(progress: Progress, width: int = 160) -> str:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(progress.render())
    return console.export_text()


def test_one_guest_shows_each_step_once_with_the_hosts_records_marked() -> None:
    progress = Progress(["vm"])
    progress("vm", StepRecord(Step.SEV_GUEST_BUILT, "ok", 1.0, 0.002, "policy 0x1", by_host=True))
    progress("vm", StepRecord(Step.MEASUREMENT_CHECKED, "failed", 2.0, 0.01, "mismatch"))
    text = _text(progress)
    for step in Step:
        assert text.count(f"{int(step):>2} {step.title}") == 1
    assert "host: policy 0x1" in text
    assert "✗" in text


def test_many_guests_one_row_each() -> None:
    progress = Progress(["a", "b"])
    progress("a", StepRecord(Step.LAUNCH_REQUESTED, "ok", 1.0, 0.5))
    text = _text(progress)
    assert "2 attested launches" in text
    assert "0.50 s" in text
