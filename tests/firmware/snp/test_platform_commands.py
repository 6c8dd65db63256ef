"""SNP platform state: SNP_INIT beside SEV, SNP_PLATFORM_STATUS, SNP_CONFIG, SNP_COMMIT with
reported / committed / current TCB, SNP_VLEK_LOAD, SNP_SHUTDOWN; generations without SNP."""

from __future__ import annotations

import pytest

from sevlaunch.errors import FirmwareError
from sevlaunch.firmware import PROFILES, Firmware, SparseMemory
from sevlaunch.firmware.snp.profiles import SNP_PROFILES, SnpFirmwareVersion
from sevlaunch.formats.snp.commands import SnpCommand, SnpConfigBuffer
from sevlaunch.formats.snp.tcb import TcbLayout, TcbVersion
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.snp.conftest import MakeSnpFw
from tests.firmware.snp.helpers import SnpGuestLaunch

MILAN = SNP_PROFILES["milan"].firmware


def _status(info: pytest.ExceptionInfo[FirmwareError]) -> Status:
    return Status(info.value.status)


@pytest.mark.parametrize("profile", ["naples", "rome"])
def test_generations_without_snp_do_not_know_the_commands(make_fw: MakeFw, profile: str) -> None:
    fw = make_fw(PROFILES[profile])
    for command in (SnpCommand.SNP_INIT, SnpCommand.SNP_PLATFORM_STATUS):
        assert fw.execute(command, b"", SparseMemory())[0] is Status.INVALID_COMMAND


@pytest.mark.parametrize(
    "command",
    [SnpCommand.SNP_PAGE_MOVE, SnpCommand.SNP_DBG_DECRYPT, SnpCommand.SNP_FEATURE_INFO],
)
def test_unemulated_snp_commands_are_unsupported(snp_fw: Firmware, command: SnpCommand) -> None:
    assert snp_fw.execute(command, bytes(24), SparseMemory())[0] is Status.UNSUPPORTED


def test_snp_comes_up_before_sev_and_both_then_run(make_fw: MakeFw) -> None:
    fw = make_fw()
    fw.init()
    with pytest.raises(FirmwareError) as info:
        fw.snp.init()
    assert _status(info) is Status.INVALID_PLATFORM_STATE
    fw.shutdown()
    fw.snp.init()
    fw.init(es=True)
    status = fw.snp.platform_status()
    assert (status.state, status.rmp_initialized, status.build_id) == (1, True, MILAN.build)
    assert status.current_tcb == status.reported_tcb == MILAN.tcb
    with pytest.raises(FirmwareError) as info:
        fw.snp.shutdown()
    assert _status(info) is Status.SHUTDOWN_REQUIRED


def test_sev_shutdown_keeps_snp_guests_on_their_asids(launched: SnpGuestLaunch) -> None:
    fw = launched.fw
    fw.init(es=True)
    fw.shutdown()
    other = SnpGuestLaunch(fw, asid=1, window=2 << 36)
    fw.snp.gctx_create(other.gctx)
    fw.snp.launch_start(other.gctx)
    with pytest.raises(FirmwareError) as info:
        fw.snp.activate(other.gctx, 1)
    assert _status(info) is Status.ASID_OWNED
    assert launched.report().measurement == launched.expected_ld


def test_platform_status_counts_guests_and_shutdown_drops_them(launched: SnpGuestLaunch) -> None:
    api = launched.fw.snp
    assert api.platform_status().guest_count == 1
    api.shutdown()
    assert api.platform_status().state == 0
    api.init()
    assert api.platform_status().guest_count == 0


def test_config_sets_reported_tcb_at_most_the_installed(snp_fw: Firmware) -> None:
    current = TcbVersion.from_int(MILAN.tcb, TcbLayout.MILAN)
    above = TcbVersion(TcbLayout.MILAN, current.bootloader + 1, 0, current.snp, current.microcode)
    with pytest.raises(FirmwareError) as info:
        snp_fw.snp.config(above.to_int())
    assert _status(info) is Status.INVALID_PARAM
    below = TcbVersion(TcbLayout.MILAN, 1, 0, 1, current.microcode)
    snp_fw.snp.config(below.to_int())
    assert snp_fw.snp.platform_status().reported_tcb == below.to_int()
    bad = SnpConfigBuffer(below.to_int(), flags=1 << 5).to_bytes()
    assert snp_fw.execute(SnpCommand.SNP_CONFIG, bad, SparseMemory())[0] is Status.INVALID_PARAM


def test_commit_makes_provisional_firmware_committed_and_it_persists(
    make_snp_fw: MakeSnpFw,
) -> None:
    current = TcbVersion.from_int(MILAN.tcb, TcbLayout.MILAN)
    newer_tcb = TcbVersion(
        TcbLayout.MILAN, current.bootloader, 0, current.snp + 1, current.microcode
    )
    newer = SnpFirmwareVersion(1, 55, MILAN.build + 2, newer_tcb.to_int())
    fw = make_snp_fw(snp_firmware=newer)
    guest = SnpGuestLaunch(fw)
    guest.start()
    guest.standard_pages()
    guest.finish()
    report = guest.report()
    assert report.current_tcb == newer.tcb
    assert report.committed_tcb == MILAN.tcb
    assert report.current_build == newer.build
    assert report.committed_build == MILAN.build
    fw.snp.commit()
    assert guest.report().committed_tcb == newer.tcb
    again = Firmware(fw.profile, state=fw.persistent_state())
    again.snp.init()
    assert again.snp.info()["committed_tcb"] == newer.tcb


def test_vlek_load_needs_this_chip_and_the_reported_tcb(make_snp_fw: MakeSnpFw) -> None:
    fw = make_snp_fw()
    tcb = fw.snp.info()["reported_tcb"]
    stick = fw.snp.host("vlek_hashstick", csp_id="CN=cloud", tcb=tcb)
    bent = bytearray(stick)
    bent[0x60] ^= 1  # the wrapped seed: what another chip's wrapping key cannot open either
    with pytest.raises(FirmwareError) as info:
        fw.snp.vlek_load(bytes(bent))
    assert _status(info) is Status.BAD_SIGNATURE
    older = fw.snp.host("vlek_hashstick", csp_id="CN=cloud", tcb=tcb - 1)
    with pytest.raises(FirmwareError) as info:
        fw.snp.vlek_load(older)
    assert _status(info) is Status.BAD_SVN
    fw.snp.vlek_load(stick)
    assert fw.snp.platform_status().vlek_loaded
    with pytest.raises(FirmwareError) as info:
        fw.snp.vlek_load(b"\0" * 432)
    assert _status(info) is Status.INVALID_PARAM
