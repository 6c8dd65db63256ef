"""Fixtures for the platform tests: short socket paths and services over the fake firmware."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.service import open_service
from sevlaunch.platform.state import STATE_FILE
from tests.platform.fakes import FakeFirmware, fake_factory
from tests.platform.templates import template_state


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sevp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_service(short_dir: Path) -> Iterator[Callable[[], BackgroundService]]:
    """Start (once per call) a service over a FakeFirmware in ``short_dir``; stopped at teardown."""
    started: list[BackgroundService] = []

    def start() -> BackgroundService:
        service = open_service(short_dir / "state", factory=fake_factory)
        running = BackgroundService(service, short_dir / "sock").__enter__()
        started.append(running)
        return running

    yield start
    for running in started:
        running.__exit__(None, None, None)
        if running.service.store is not None:
            running.service.store.unlock()


def fake_of(running: BackgroundService) -> FakeFirmware:
    fw = running.service.firmware
    assert isinstance(fw, FakeFirmware)
    return fw


def copy_template(state_dir: Path) -> Path:
    """A state directory holding the shared, already generated milan platform."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state_dir / STATE_FILE).write_bytes(template_state())
    (state_dir / STATE_FILE).chmod(0o600)
    return state_dir


@pytest.fixture
def real_service(short_dir: Path) -> Iterator[BackgroundService]:
    """A service over the real firmware (a copy of the template platform), running."""
    service = open_service(copy_template(short_dir / "state"))
    with BackgroundService(service, short_dir / "sock") as running:
        yield running
    assert service.store is not None
    service.store.unlock()
