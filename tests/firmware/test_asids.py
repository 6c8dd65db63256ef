"""ASID ranges, ACTIVATE/DEACTIVATE/DF_FLUSH/DECOMMISSION rules and RESOURCE_LIMIT (doc §9)."""

from __future__ import annotations

import pytest

from sevlaunch.firmware import PROFILES, Firmware, PlatformState, Profile
from sevlaunch.formats import Policy
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.helpers import fails

ES = Policy.parse("es").to_int()
TINY = Profile("tiny", 1, 55, 1, 51, 1, max_sev_asids=2, max_es_asids=1)


@pytest.mark.parametrize(
    ("name", "es", "sev"),
    [("naples", 0, 15), ("rome", 99, 410), ("milan", 99, 410), ("genoa", 255, 751)],
)
def test_profile_asid_ranges(name: str, es: int, sev: int) -> None:
    p = PROFILES[name]
    assert (p.max_es_asids, p.max_sev_asids) == (es, sev)
    assert p.es_asids == range(1, es + 1)
    assert p.sev_asids == range(es + 1, es + sev + 1)
    assert p.cbitpos == (47 if name in ("naples", "rome") else 51)


def test_asid_must_match_the_guest_kind(make_fw: MakeFw) -> None:
    fw = make_fw(TINY)
    fw.init(es=True)
    sev, es = fw.launch_start(0), fw.launch_start(ES)
    fails(Status.INVALID_ASID, fw.activate, sev, 1)
    fails(Status.INVALID_ASID, fw.activate, es, 2)
    fails(Status.INVALID_ASID, fw.activate, sev, 0)
    fails(Status.INVALID_ASID, fw.activate, sev, 4)
    fw.activate(sev, 2)
    fw.activate(es, 1)
    assert (fw.guest_status(sev).asid, fw.guest_status(es).asid) == (2, 1)
    fails(Status.ACTIVE, fw.activate, sev, 3)


def test_reuse_needs_df_flush_and_decommission_needs_deactivate(make_fw: MakeFw) -> None:
    fw = make_fw(TINY)
    fw.init()
    first = fw.launch_start(0)
    fw.activate(first, 2)
    fails(Status.ACTIVE, fw.decommission, first)
    fw.deactivate(first)
    fw.deactivate(first)  # idempotent
    assert fw.guest_status(first).asid == 0
    fw.decommission(first)
    assert fw.state is PlatformState.INIT  # the last guest is gone
    second = fw.launch_start(0)
    fails(Status.DF_FLUSH_REQUIRED, fw.activate, second, 2)
    fw.activate(second, 3)
    fw.df_flush()
    third = fw.launch_start(0)
    fw.activate(third, 2)
    fails(Status.ASID_OWNED, fw.activate, fw.launch_start(0, share=second), 2)


def test_resource_limit_counts_keys_per_range(make_fw: MakeFw) -> None:
    fw = make_fw(TINY)
    fw.init(es=True)
    a, _ = fw.launch_start(0), fw.launch_start(0)
    fails(Status.RESOURCE_LIMIT, fw.launch_start, 0)
    sharer = fw.launch_start(0, share=a)  # a shared key needs no new ASID
    fw.launch_start(ES)
    fails(Status.RESOURCE_LIMIT, fw.launch_start, ES)
    fw.decommission(a)
    fails(Status.RESOURCE_LIMIT, fw.launch_start, 0)  # the sharer still holds a's key
    fw.decommission(sharer)
    assert fw.launch_start(0)


def test_es_init_is_refused_on_naples(make_fw: MakeFw) -> None:
    fw: Firmware = make_fw(PROFILES["naples"])
    fails(Status.INVALID_PARAM, fw.init, es=True)
    fw.init()
    assert not fw.platform_status().es_initialized


def test_shutdown_drops_guests_and_asids(make_fw: MakeFw) -> None:
    fw = make_fw(TINY)
    fw.init()
    fw.activate(fw.launch_start(0), 2)
    fw.shutdown()
    fw.init()
    assert fw.platform_status().guest_count == 0
    fw.activate(fw.launch_start(0), 2)  # neither owned nor awaiting a flush
