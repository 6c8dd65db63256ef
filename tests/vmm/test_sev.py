"""QEMU's SEV state machine (:class:`SevGuest`) on an in-memory platform: the real, pure
firmware behind the :class:`~sevlaunch.vmm.port.SevPlatform` protocol, no service, no mocks."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import VmmError
from sevlaunch.firmware import PROFILES, Firmware, PlatformState, SparseMemory
from sevlaunch.formats.hashes import PADDED_SIZE, KernelHashes
from sevlaunch.formats.ovmf import Area
from sevlaunch.formats.secret import LUKS_KEY_GUID, SecretTable
from sevlaunch.owner.measurement import launch_info, validate
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.owner.session import make_session
from sevlaunch.owner.verify import trust_store, verify_pdh_and_chain
from sevlaunch.vmm.memory import GuestMemory
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image
from sevlaunch.vmm.port import Capabilities, PlatformInfo
from sevlaunch.vmm.sev import SevGuest, SevGuestConfig, SevState
from tests.vmm.conftest import PROFILE, run_async

FIRMWARE = make_image(64 * 1024, seed=b"test_sev")
SECRET_GPA = 0x80C000


class InMemoryPlatform:
    """KVM and the PSP in one object: the pure :class:`Firmware` DMAing a private memory."""

    def __init__(self, firmware: Firmware, *, es: bool = True) -> None:
        self.firmware = firmware
        self.es = es
        self.memory = SparseMemory()
        self._next_asid = {True: 1, False: firmware.profile.max_es_asids + 1}

    async def info(self) -> PlatformInfo:
        if self.firmware.state is PlatformState.UNINIT:
            self.firmware.init(es=self.es)
        status = self.firmware.platform_status()
        prof = self.firmware.profile
        return PlatformInfo(
            status.api_major, status.api_minor, status.build_id,
            status.es_initialized, prof.cbitpos, prof.reduced_phys_bits,
        )  # fmt: skip

    async def capabilities(self) -> Capabilities:
        pdh, chain = self.firmware.pdh_cert_export()
        prof = self.firmware.profile
        return Capabilities(pdh, chain, self.firmware.get_id()[:64], prof.cbitpos, 1)

    async def launch_start(self, policy: int, godh: bytes | None, session: bytes | None) -> int:
        handle = self.firmware.launch_start(policy, godh, session)
        es = bool(policy & 0x4)
        self.firmware.activate(handle, self._next_asid[es])
        self._next_asid[es] += 1
        return handle

    async def launch_update_data(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        self.memory.write(paddr, plaintext)
        self.firmware.launch_update_data(handle, self.memory, paddr, len(plaintext))
        return self.memory.read(paddr, len(plaintext))

    async def launch_update_vmsa(self, handle: int, paddr: int, vmsa: bytes) -> bytes:
        self.memory.write(paddr, vmsa)
        self.firmware.launch_update_vmsa(handle, self.memory, paddr)
        return self.memory.read(paddr, len(vmsa))

    async def launch_measure(self, handle: int) -> bytes:
        return self.firmware.launch_measure(handle).to_bytes()

    async def launch_secret(
        self, handle: int, header: bytes, paddr: int, trans: bytes, guest_len: int
    ) -> bytes:
        self.firmware.launch_secret(handle, header, trans, self.memory, paddr)
        return self.memory.read(paddr, guest_len)

    async def launch_finish(self, handle: int) -> None:
        self.firmware.launch_finish(handle)

    async def attestation(self, handle: int, mnonce: bytes) -> bytes:
        return self.firmware.attestation(handle, mnonce)

    async def guest_read(self, handle: int, paddr: int, ciphertext: bytes) -> bytes:
        self.memory.write(paddr, ciphertext)
        return self.firmware.guest_read(handle, paddr, len(ciphertext), self.memory)

    async def guest_write(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        self.firmware.guest_write(handle, paddr, plaintext, self.memory)
        return self.memory.read(paddr, len(plaintext))

    async def teardown(self, handle: int) -> None:
        self.firmware.deactivate(handle)
        self.firmware.decommission(handle)


@dataclass
class Rig:
    platform: InMemoryPlatform
    config: SevGuestConfig
    keys: TransportKeys
    memory: GuestMemory

    def guest(self, **changes: object) -> SevGuest:
        return SevGuest(self.platform, replace(self.config, **changes))  # type: ignore[arg-type]


def _rig(identity: bytes, *, policy: int = 0x1, es: bool = True) -> Rig:
    firmware = Firmware(PROFILES[PROFILE], state=identity)
    firmware.init(es=es)
    pdh, chain = firmware.pdh_cert_export()
    verified = verify_pdh_and_chain(
        pdh, chain, trust_store([firmware.ark()]), ca=firmware.ca_chain(), cek=firmware.signed_cek()
    )
    launch = make_session(verified, policy, rng=os.urandom)
    config = SevGuestConfig(
        cbitpos=PROFILES[PROFILE].cbitpos,
        reduced_phys_bits=1,
        policy=policy,
        dh_cert_b64=launch.godh_b64.encode() + b"\n",
        session_b64=launch.session_b64.encode(),
        kernel_hashes=True,
    )
    return Rig(
        InMemoryPlatform(firmware, es=es),
        config,
        launch.keys,
        GuestMemory(256 << 20, len(FIRMWARE)),
    )


@pytest.fixture
def rig(rome_identity: bytes) -> Rig:
    return _rig(rome_identity)


def run(body: Callable[[], Awaitable[None]]) -> None:
    run_async(body)


def state_of(sev: SevGuest) -> SevState:
    """The state now (a call, so that type narrowing does not outlive the awaits)."""
    return sev.state


def _hashes() -> KernelHashes:
    return KernelHashes(
        cmdline=hashlib.sha256(b"console=ttyS0\0").digest(),
        initrd=hashlib.sha256(b"initrd").digest(),
        kernel=hashlib.sha256(b"kernel").digest(),
    )


async def _measured(rig: Rig, sev: SevGuest) -> None:
    await sev.kvm_init()
    await sev.encrypt(rig.memory, rig.memory.flash_base, FIRMWARE)
    await sev.add_kernel_hashes(rig.memory, FIRMWARE, _hashes().to_bytes())
    await sev.machine_done()


def _packet(rig: Rig, sev: SevGuest, value: bytes = b"passphrase") -> tuple[str, str]:
    raw = base64.b64decode(sev.launch_measure())
    packet = build_packet(secret_table([("luks-key", value)]), rig.keys, raw, rng=os.urandom)
    return packet.header_b64, packet.payload_b64


def test_the_whole_launch_in_qemus_order(rig: Rig) -> None:
    async def body() -> None:
        sev = rig.guest()
        assert sev.query()["state"] == "uninit"
        await sev.kvm_init()
        assert (state_of(sev), sev.handle > 0) == (SevState.LAUNCH_UPDATE, True)
        await sev.encrypt(rig.memory, rig.memory.flash_base, FIRMWARE)
        assert rig.memory.read(rig.memory.flash_base, len(FIRMWARE)) != FIRMWARE
        await sev.add_kernel_hashes(rig.memory, FIRMWARE, _hashes().to_bytes())
        await sev.machine_done()
        assert state_of(sev) is SevState.LAUNCH_SECRET
        info = launch_info(sev.launch_measure(), api_major=0, api_minor=24, build_id=15, policy=1)
        digest = hashlib.sha256(FIRMWARE + _hashes().to_bytes()).digest()
        validate(info, digest, rig.keys.tik)  # raises on a mismatch
        header, payload = _packet(rig, sev)
        await sev.inject_secret(rig.memory, header, payload, SECRET_GPA)
        await sev.vm_running()
        assert state_of(sev) is SevState.RUNNING
        size = len(base64.b64decode(payload))
        plain = await rig.platform.guest_read(
            sev.handle, SECRET_GPA, rig.memory.read(SECRET_GPA, size)
        )
        assert SecretTable.from_bytes(plain).get(LUKS_KEY_GUID) == b"passphrase"
        assert b"passphrase" not in rig.memory.read(SECRET_GPA, size)
        assert sev.query() == {
            "enabled": True, "api-major": 0, "api-minor": 24, "build-id": 15,
            "state": "running", "sev-type": "sev", "policy": 1, "handle": sev.handle,
        }  # fmt: skip

    run(body)


def test_operations_out_of_state_use_qemus_words(rig: Rig) -> None:
    async def body() -> None:
        sev = rig.guest()
        with pytest.raises(VmmError, match=r"^SEV: Not in correct state\. \(LUPDATE\) 0$"):
            await sev.encrypt(rig.memory, 0, b"x" * 16)
        with pytest.raises(VmmError, match=r"^SEV launch measurement is not available$"):
            sev.launch_measure()
        await sev.kvm_init()
        with pytest.raises(VmmError, match=r"^SEV: Not in correct state\. \(LSECRET\) 1$"):
            await sev.inject_secret(rig.memory, "AA==", "AA==", SECRET_GPA)
        with pytest.raises(VmmError, match=r"^SEV: Not in correct state\. \(LSECRET\) 1$"):
            await sev.vm_running()
        await sev.machine_done()
        measurement = sev.launch_measure()
        await sev.machine_done()  # only once, as QEMU's notifier checks the state
        assert sev.launch_measure() == measurement
        with pytest.raises(VmmError, match=r"^SEV: Not in correct state\. \(LUPDATE\) 2$"):
            await sev.encrypt(rig.memory, 0, b"x" * 16)
        await sev.vm_running()
        await sev.vm_running()  # a later stop/cont does not finish twice
        with pytest.raises(VmmError, match=r"^SEV: Not in correct state\. \(LSECRET\) 3$"):
            await sev.inject_secret(rig.memory, *_packet(rig, sev), SECRET_GPA)

    run(body)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cbitpos": 51}, "cbitpos check failed, host '47' requested '51'"),
        ({"reduced_phys_bits": 0}, "reduced_phys_bits check failed, it should be in the range of 1 to 63"),
        ({"reduced_phys_bits": 64}, "requested '64'"),
        ({"policy": 0x3}, "sev_launch_start: LAUNCH_START ret=1 fw_error=11 'Bad measurement'"),
        ({"dh_cert_b64": b"%% not base64 %%"}, "SEV: failed to decode dh-cert-file"),
        ({"session_b64": b"\n"}, "KVM refused the session-file: it holds no base64 data"),
        ({"dh_cert_b64": b"AAAA"}, "fw_error=4 'Buffer too small'"),
    ],
)  # fmt: skip
def test_kvm_init_refusals(rig: Rig, changes: dict[str, object], message: str) -> None:
    async def body() -> None:
        sev = rig.guest(**changes)
        with pytest.raises(VmmError, match=message.replace("(", r"\(").replace(")", r"\)")):
            await sev.kvm_init()
        assert state_of(sev) is SevState.UNINIT

    run(body)


def test_an_es_policy_needs_es_on_the_host(rome_identity: bytes) -> None:
    rig = _rig(rome_identity, policy=0x5, es=False)

    async def body() -> None:
        with pytest.raises(
            VmmError, match="guest policy requires SEV-ES, but host SEV-ES support unavailable"
        ):
            await rig.guest().kvm_init()

    run(body)


def test_a_launch_without_a_session_is_unauthenticated_but_allowed(rig: Rig) -> None:
    """No dh-cert-file and session-file: LAUNCH_START makes its own keys, as on hardware."""

    async def body() -> None:
        sev = rig.guest(dh_cert_b64=None, session_b64=None)
        await sev.kvm_init()
        await sev.encrypt(rig.memory, rig.memory.flash_base, FIRMWARE)
        await sev.machine_done()
        assert len(base64.b64decode(sev.launch_measure())) == 48

    run(body)


@pytest.mark.parametrize(
    ("header", "secret", "gpa", "message"),
    [
        ("not base64!", None, SECRET_GPA, "SEV: Failed to decode sequence header"),
        (None, "not base64!", SECRET_GPA, "SEV: Failed to decode data"),
        (None, base64.b64encode(bytes(0x4001)).decode(), SECRET_GPA, "SEV: secret too large"),
        (None, None, 1 << 40, "SEV: Failed to calculate guest address"),
        (base64.b64encode(bytes(52)).decode(), None, SECRET_GPA, "SEV: failed to inject secret ret=1 fw_error="),
    ],
)  # fmt: skip
def test_injection_refusals(
    rig: Rig, header: str | None, secret: str | None, gpa: int, message: str
) -> None:
    async def body() -> None:
        sev = rig.guest()
        await _measured(rig, sev)
        good_header, good_secret = _packet(rig, sev)
        with pytest.raises(VmmError, match=message):
            await sev.inject_secret(rig.memory, header or good_header, secret or good_secret, gpa)
        assert state_of(sev) is SevState.LAUNCH_SECRET
        await sev.inject_secret(rig.memory, good_header, good_secret, SECRET_GPA)

    run(body)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (OvmfLayout(hashes_area=None), "kernel specified but guest firmware has no hashes table GUID"),
        (OvmfLayout(hashes_area=Area(0x80CC00, 0x20)), "hashes table area is too small"),
    ],
)  # fmt: skip
def test_kernel_hashes_need_a_usable_area(rig: Rig, layout: OvmfLayout, message: str) -> None:
    image = make_image(64 * 1024, layout=layout)

    async def body() -> None:
        sev = rig.guest()
        await sev.kvm_init()
        with pytest.raises(VmmError, match=message):
            await sev.add_kernel_hashes(rig.memory, image, bytes(PADDED_SIZE))

    run(body)
