"""A live view of launches with rich: the 13 steps of one guest, or one row per guest."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sevlaunch.orchestrate.launch import StepRecord
from sevlaunch.protocol import Step

_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "ok": "green",
    "failed": "bold red",
    "skipped": "dim",
}
_MARK = {"pending": "·", "running": "…", "ok": "✓", "failed": "✗", "skipped": "-"}


def _short(text: str, limit: int = 44) -> str:
    """One line of detail; the full text of a failure is printed after the table."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Progress:
    """Collects step updates from launcher threads and renders them."""

    def __init__(self, names: list[str], console: Console | None = None) -> None:
        self.console = console or Console()
        self.names = names
        self.records: dict[str, dict[Step, StepRecord]] = {n: {} for n in names}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __call__(self, domain: str, record: StepRecord) -> None:
        with self._lock:
            self.records.setdefault(domain, {})[record.step] = dataclasses.replace(record)
            if self._live is not None:
                self._live.update(self.render())

    def render(self) -> Table:
        return self._steps_table(self.names[0]) if len(self.names) == 1 else self._guests_table()

    def _steps_table(self, name: str) -> Table:
        table = Table(title=f"attested launch of {name}", expand=False)
        table.add_column("step", no_wrap=True)
        table.add_column("party", max_width=18, overflow="fold")
        table.add_column("", width=1, no_wrap=True)
        table.add_column("time", no_wrap=True, justify="right")
        table.add_column("detail", overflow="fold")
        records = self.records.get(name, {})
        for step in Step:
            rec = records.get(step, StepRecord(step))
            took = f"{rec.duration * 1000:.0f} ms" if rec.duration is not None else ""
            detail = ("host: " if rec.by_host else "") + rec.detail
            table.add_row(
                f"{int(step):>2} {step.title}",
                rec.party,
                Text(_MARK[rec.status], style=_STYLE[rec.status]),
                took,
                Text(_short(detail), style=_STYLE[rec.status] if rec.status == "failed" else ""),
            )
        return table

    def _guests_table(self) -> Table:
        table = Table(title=f"{len(self.names)} attested launches")
        table.add_column("domain")
        for step in Step:
            table.add_column(str(int(step)), justify="center")
        table.add_column("total")
        for name in self.names:
            records = self.records.get(name, {})
            marks = [
                Text(
                    _MARK[records[s].status] if s in records else "·",
                    style=_STYLE[records[s].status] if s in records else "dim",
                )
                for s in Step
            ]
            total = sum(r.duration or 0.0 for r in records.values())
            table.add_row(name, *marks, f"{total:.2f} s")
        return table

    @contextmanager
    def live(self, enabled: bool = True) -> Iterator[None]:
        if not enabled:
            yield
            return
        if not self.console.is_terminal:  # a log or a pipe: the final table once (rich's Live
            yield  # leaves it without its last newline there)
            self.console.print(self.render())
            return
        with Live(
            self.render(), console=self.console, refresh_per_second=10, transient=False
        ) as live:
            self._live = live
            try:
                yield
            finally:
                live.update(self.render())
                self._live = None
