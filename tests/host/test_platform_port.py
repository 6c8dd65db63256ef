"""The host's one door to the emulated platform: the ASID split and facts, none on a real host
(no socket) or when the platform does not answer, and freeing a dead guest's handle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sevlaunch.host.platform_port import (
    PlatformFacts,
    asid_counts,
    free_sev_context,
    platform_facts,
)
from tests.host.conftest import Platform


def test_the_platform_gives_its_split_and_facts(platform: Platform) -> None:
    counts = asid_counts(str(platform.socket))
    assert counts is not None
    assert all(n > 0 for n in counts)
    facts = platform_facts(str(platform.socket))
    assert facts.profile is not None


def test_no_socket_is_a_real_host_and_a_dead_one_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert asid_counts(None) is None
    assert platform_facts(None) == PlatformFacts()
    with caplog.at_level(logging.WARNING, "sevlaunch.host"):
        assert asid_counts(str(tmp_path / "gone.sock")) is None
    assert "gave no ASID split" in caplog.text


def test_freeing_a_handle_the_platform_does_not_know_is_logged_not_raised(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "sevlaunch.host"):
        asyncio.run(free_sev_context(str(platform.socket), 0xDEAD))
    assert "freeing SEV handle 57005" in caplog.text
