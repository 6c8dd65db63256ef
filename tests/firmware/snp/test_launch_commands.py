"""SNP_GCTX_CREATE .. SNP_LAUNCH_FINISH: the launch digest of every page type, the RMP's
refusals, the CPUID check, and the ID block checks (sev-snp.md §3)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.errors import FirmwareError
from sevlaunch.firmware import Firmware
from sevlaunch.formats.snp.commands import SnpCommand, SnpLaunchFinishBuffer
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.snp.ecdsa import EcdsaPublicKey, EcdsaSignature
from sevlaunch.formats.snp.idblock import IdAuth, IdBlock
from sevlaunch.formats.status import Status
from tests.firmware.snp.conftest import MakeSnpFw
from tests.firmware.snp.helpers import (
    CPUID,
    NORMAL,
    PAGE,
    SECRETS,
    UNMEASURED,
    ZERO,
    SnpGuestLaunch,
    qemu_cpuid,
)


def _status(exc: pytest.ExceptionInfo[FirmwareError]) -> Status:
    return Status(exc.value.status)


def test_launch_digest_follows_page_info_for_every_page_type(launched: SnpGuestLaunch) -> None:
    guest = SnpGuestLaunch(launched.fw, asid=2, window=2 << 36)
    guest.start()
    guest.add(0x10_0000, NORMAL, b"kernel" * 100)
    guest.add(0x10_1000, UNMEASURED, b"not measured")
    guest.add(0x10_2000, ZERO, b"zeroed by the firmware")
    guest.add(0x10_3000, SECRETS)
    guest.add(0x10_4000, CPUID, qemu_cpuid().to_page())
    guest.finish()
    assert guest.report().measurement == guest.expected_ld


def test_pages_are_encrypted_in_place_and_read_back_by_the_guest(launched: SnpGuestLaunch) -> None:
    host_view = launched.memory.read(launched.spa(0xFFFF_F000), PAGE)
    assert host_view != b"\x90" * PAGE  # the hypervisor keeps ciphertext
    assert launched.read(0xFFFF_F000, PAGE) == b"\x90" * PAGE
    assert launched.read(0x80_0000, PAGE) == bytes(PAGE)  # ZERO pages are zeroed
    secrets = launched.secrets()
    assert len({secrets.vmpck(i) for i in range(4)}) == 4
    assert secrets.fms == 0x00A00F11  # Milan's CPUID 19h/01h/1


def test_gosvw_is_copied_to_the_secrets_page(snp_fw: Firmware) -> None:
    guest = SnpGuestLaunch(snp_fw)
    guest.start(gosvw=b"W" * 16)
    guest.add(0x80_D000, SECRETS)
    guest.finish()
    assert guest.secrets().gosvw == b"W" * 16


def test_rmp_refuses_a_page_twice_and_pages_of_other_guests(launched: SnpGuestLaunch) -> None:
    api = launched.fw.snp
    spa = launched.spa(0xFFFF_F000)
    with pytest.raises(FirmwareError, match="FAIL_INUSE"):
        api.rmp_assign(spa, 2, 0xFFFF_F000)  # assigned to ASID 1 already
    other = SnpGuestLaunch(launched.fw, asid=2, window=2 << 36)
    other.start()
    with pytest.raises(FirmwareError) as info:
        api.launch_update(other.gctx, launched.memory, spa, NORMAL)
    assert _status(info) is Status.INVALID_PAGE_OWNER
    with pytest.raises(FirmwareError) as info:
        api.launch_update(other.gctx, other.memory, other.spa(0x1000), NORMAL)
    assert _status(info) is Status.INVALID_PAGE_STATE  # never assigned


def test_a_validated_page_cannot_be_updated_again(snp_fw: Firmware) -> None:
    guest = SnpGuestLaunch(snp_fw)
    guest.start()
    guest.add(0x1000, NORMAL, b"once")
    with pytest.raises(FirmwareError) as info:
        snp_fw.snp.launch_update(guest.gctx, guest.memory, guest.spa(0x1000), NORMAL)
    assert _status(info) is Status.INVALID_PAGE_STATE
    assert "validated already" in str(info.value)


def test_update_needs_an_active_guest_and_a_4k_page(snp_fw: Firmware) -> None:
    api = snp_fw.snp
    guest = SnpGuestLaunch(snp_fw)
    api.gctx_create(guest.gctx)
    api.launch_start(guest.gctx)
    api.rmp_assign(guest.spa(0), 1, 0)
    with pytest.raises(FirmwareError) as info:
        api.launch_update(guest.gctx, guest.memory, guest.spa(0), NORMAL)
    assert _status(info) is Status.INACTIVE
    with pytest.raises(FirmwareError) as info:
        api.rmp_assign(guest.spa(0) + 8, 1, 0)
    assert _status(info) is Status.INVALID_PAGE_STATE


def test_cpuid_page_with_refused_bits_is_corrected_and_refused(snp_fw: Firmware) -> None:
    guest = SnpGuestLaunch(snp_fw)
    guest.start()
    asked = CpuidTable(
        (CpuidEntry(1, eax=0xA00F11, ecx=1 << 24 | 1), CpuidEntry(7, 0, edx=1 << 26))
    )
    spa = guest.spa(0x80_E000)
    guest.memory.write(spa, asked.to_page())
    snp_fw.snp.rmp_assign(spa, 1, 0x80_E000)
    with pytest.raises(FirmwareError) as info:
        snp_fw.snp.launch_update(guest.gctx, guest.memory, spa, CPUID)
    assert _status(info) is Status.INVALID_PARAM
    accepted = CpuidTable.from_bytes(guest.memory.read(spa, PAGE))  # plaintext, for the VMM
    assert accepted.entries == (CpuidEntry(1, eax=0xA00F11, ecx=1), CpuidEntry(7, 0, edx=0))


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (0x10000, "bit 17"),
        (0x30000 | 1 << 40, "reserved"),
        (0x30000 | 0x0140, "ABI 1.64"),
        (0x20000, "SMT"),
        (0x30000 | 1 << 22, "AES-256-XTS"),
    ],
)
def test_launch_start_refuses_policies_the_platform_cannot_honour(
    snp_fw: Firmware, policy: int, why: str
) -> None:
    guest = SnpGuestLaunch(snp_fw, policy=policy)
    snp_fw.snp.gctx_create(guest.gctx)
    with pytest.raises(FirmwareError) as info:
        snp_fw.snp.launch_start(guest.gctx, policy)
    assert _status(info) is Status.POLICY_FAILURE, why


class IdKeys:
    def __init__(self) -> None:
        self.id_key = ec.derive_private_key(0x1D, ec.SECP384R1())
        self.author = ec.derive_private_key(0xA0, ec.SECP384R1())

    def sign(self, block: IdBlock, *, author: bool = False) -> bytes:
        id_pub = ecdsa.to_snp_key(self.id_key.public_key())
        return IdAuth(
            id_block_sig=ecdsa.sign(self.id_key, block.to_bytes()),
            id_key=id_pub,
            id_key_sig=ecdsa.sign(self.author, id_pub.to_bytes())
            if author
            else EcdsaSignature(0, 0),
            author_key=ecdsa.to_snp_key(self.author.public_key())
            if author
            else EcdsaPublicKey(0, 0, 0),
        ).to_bytes()


def _measured_guest(fw: Firmware) -> SnpGuestLaunch:
    guest = SnpGuestLaunch(fw)
    guest.start()
    guest.standard_pages()
    return guest


def test_id_block_with_author_key_is_checked_and_recorded(snp_fw: Firmware) -> None:
    keys = IdKeys()
    guest = _measured_guest(snp_fw)
    block = IdBlock(guest.expected_ld, family_id=b"F" * 16, image_id=b"I" * 16, guest_svn=7)
    guest.finish(
        id_block=block.to_bytes(),
        id_auth=keys.sign(block, author=True),
        author_key=True,
        host_data=b"H" * 32,
    )
    report = guest.report()
    id_pub = ecdsa.to_snp_key(keys.id_key.public_key()).to_bytes()
    author_pub = ecdsa.to_snp_key(keys.author.public_key()).to_bytes()
    assert report.id_key_digest == hashlib.sha384(id_pub).digest()
    assert report.author_key_digest == hashlib.sha384(author_pub).digest()
    assert report.key.author_key_en
    assert (report.guest_svn, report.family_id, report.image_id) == (7, b"F" * 16, b"I" * 16)
    assert report.host_data == b"H" * 32


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("ld", Status.BAD_MEASUREMENT),
        ("policy", Status.POLICY_FAILURE),
        ("signature", Status.BAD_SIGNATURE),
        ("version", Status.INVALID_PARAM),
    ],
)
def test_id_block_refusals(make_snp_fw: MakeSnpFw, change: str, status: Status) -> None:
    fw = make_snp_fw()
    keys = IdKeys()
    guest = _measured_guest(fw)
    block = IdBlock(
        bytes(48) if change == "ld" else guest.expected_ld,
        policy=0x30001 if change == "policy" else 0x30000,
        version=2 if change == "version" else 1,
    )
    auth = keys.sign(block)
    if change == "signature":
        block = IdBlock(guest.expected_ld, family_id=b"x" * 16)  # signed block was another
    with pytest.raises(FirmwareError) as info:
        guest.finish(id_block=block.to_bytes(), id_auth=auth)
    assert _status(info) is status
    assert fw.snp.info()["guests"] == 1  # the guest stays in LAUNCH: nothing changed


def test_author_key_without_id_block_is_invalid(snp_fw: Firmware) -> None:
    guest = _measured_guest(snp_fw)
    buf = SnpLaunchFinishBuffer(guest.gctx, flags=SnpLaunchFinishBuffer.AUTH_KEY_EN)
    status, _ = snp_fw.execute(SnpCommand.SNP_LAUNCH_FINISH, buf.to_bytes(), guest.memory)
    assert status is Status.INVALID_PARAM


def test_decommission_frees_the_pages_and_the_asid_after_df_flush(launched: SnpGuestLaunch) -> None:
    api = launched.fw.snp
    api.decommission(launched.gctx)
    assert api.info()["guests"] == 0
    again = SnpGuestLaunch(launched.fw, asid=1)
    api.gctx_create(again.gctx)  # the context page is a hypervisor page again
    api.launch_start(again.gctx)
    with pytest.raises(FirmwareError) as info:
        api.activate(again.gctx, 1)
    assert _status(info) is Status.DF_FLUSH_REQUIRED
    api.df_flush()
    api.activate(again.gctx, 1)
    again.add(0xFFFF_F000, NORMAL, b"reused")  # RMPUPDATE works on the freed page
