"""Shared fixtures: the real-hardware vectors and libvirt schemas live in ../shared.

They are read in place, never copied. On a fresh clone without ../shared the tests that need
them skip with a reason that says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis' default deadline fails an example that takes over 200 ms of wall-clock time: a
# timed assertion, which fails whenever the machine is loaded (a test process descheduled
# for 200 ms on 2 shared cores), not when the code is slow (parse_cmdline's worst example of
# 4000 hostile device lists took 8 ms). Speed is measured in bench/, against a baseline.
settings.register_profile("sevlaunch", deadline=None)
settings.load_profile("sevlaunch")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEVLAUNCH_SHARED", ROOT.parent / "shared"))
VECTORS = SHARED / "vectors"
SCHEMAS = SHARED / "schemas" / "libvirt"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"{path} is absent: these tests read the shared vectors beside the project checkout"
        )
    return path


@pytest.fixture(scope="session")
def vectors() -> Path:
    """``../shared/vectors`` (skips when absent)."""
    return _require(VECTORS)


@pytest.fixture(scope="session")
def schemas() -> Path:
    """``../shared/schemas/libvirt`` (skips when absent)."""
    return _require(SCHEMAS)


def read_vector(vectors: Path, relative: str) -> bytes:
    return (vectors / relative).read_bytes()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and an unrelated CA."""
    from tests.tlsca import make

    return make(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session", autouse=True)
def emulated_roots_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulated ARK/ASK cache of this test run, not the user's (sevlaunch.platform.roots):
    platforms made by the tests, in this process or in the services it starts, share it."""
    from sevlaunch.platform.roots import CACHE_ENV

    path = tmp_path_factory.mktemp("emulated-roots")
    os.environ[CACHE_ENV] = str(path)
    return path
