"""Firmware status codes carry QEMU's wording."""

from __future__ import annotations

from sevlaunch.formats import Status, status_name


def test_status_names() -> None:
    assert status_name(Status.BAD_MEASUREMENT) == "Bad measurement"
    assert status_name(0x0A) == "Bad signature"
    assert status_name(Status.RING_BUFFER_EXIT) == "RING_BUFFER_EXIT"
    assert status_name(0x99) == "unknown status 0x99"
