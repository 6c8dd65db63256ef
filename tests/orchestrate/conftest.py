"""One emulated host and broker for every test of the VM tool (starting them costs ~2 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.orchestrate.stack import RunningStack, running_stack


@pytest.fixture(scope="package")
def env() -> Iterator[RunningStack]:
    with running_stack() as running:
        yield running
