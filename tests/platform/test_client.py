"""The clients against the real firmware behind the service: admin path, a whole launch, errors."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto import ecc
from sevlaunch.errors import FirmwareError, PlatformError, UsageError
from sevlaunch.firmware import SparseMemory
from sevlaunch.firmware.states import GuestState, PlatformState
from sevlaunch.formats.chain import CaChain, PlatformChain
from sevlaunch.formats.commands import Command, PdhCertExportBuffer
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.sevcert import Algorithm, SevCert, Signature, Usage
from sevlaunch.formats.status import Status
from sevlaunch.owner.measurement import LaunchInfo, validate
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.owner.session import make_session
from sevlaunch.owner.verify import trust_store, verify_chain_file
from sevlaunch.platform import calls
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.client import AsyncPlatformClient, PlatformClient

GUEST_BASE = 0x10_0000
SECRET_PADDR = 0x20_0000


def _full_chain(client: PlatformClient) -> PlatformChain:
    chain = client.pdh_cert_export()
    return replace(
        chain,
        cek=SevCert.from_bytes(client.signed_cek()),
        ca=CaChain.from_bytes(client.ca_chain()),
    )


def test_export_inits_like_linux_and_the_full_chain_verifies(
    real_service: BackgroundService,
) -> None:
    with PlatformClient(real_service.socket_path) as client:
        assert client.platform_status().state == PlatformState.UNINIT
        raw = client.mailbox(Command.PDH_CERT_EXPORT, PdhCertExportBuffer().to_bytes())
        assert raw.status == Status.INVALID_PLATFORM_STATE  # the firmware itself stays strict
        chain = _full_chain(client)
        assert client.platform_status().state == PlatformState.INIT
        ark = client.ark()
    verified = verify_chain_file(chain.to_bytes(), trust_store([ark]))
    assert verified.pdh == chain.pdh


def test_get_id_is_the_chip_id_and_stable(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        first = client.get_id()
        assert first == client.get_id()
    assert len(first) == 64
    assert real_service.service.firmware.chip_id == first  # type: ignore[attr-defined]


def test_twenty_threads_export_and_status_at_once(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        expected = client.pdh_cert_export()
    results: list[object] = []

    def worker(i: int) -> None:
        try:
            with PlatformClient(real_service.socket_path) as client:
                results.append(
                    client.pdh_cert_export() if i % 2 else client.platform_status().state
                )
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(expected) == 10
    assert results.count(PlatformState.INIT) == 10


def _owner_signed(csr: bytes) -> tuple[bytes, bytes]:
    """An owner OCA (self-signed) and the CSR signed by it in slot 1, as sev-tool does."""
    key = ec.generate_private_key(ec.SECP384R1())
    oca = SevCert(
        Usage.OCA,
        Algorithm.ECDSA_SHA256,
        ecc.from_public_key(key.public_key()),
        Signature.empty(),
        Signature.empty(),
    )
    oca = replace(oca, sig1=ecc.sign(key, oca.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256))
    pek = SevCert.from_bytes(csr)
    pek = replace(pek, sig1=ecc.sign(key, pek.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256))
    return pek.to_bytes(), oca.to_bytes()


def test_ownership_round_trip(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        csr = client.pek_csr()
        assert client.platform_status().state == PlatformState.INIT
        pek, oca = _owner_signed(csr)
        client.pek_cert_import(pek, oca)
        assert client.platform_status().externally_owned
        assert client.pdh_cert_export().oca.to_bytes() == oca
        with pytest.raises(FirmwareError) as info:
            client.pek_cert_import(pek, oca)
        assert info.value.status == Status.ALREADY_OWNED
        client.platform_reset()
        status = client.platform_status()
        assert (status.state, status.externally_owned) == (PlatformState.UNINIT, False)
        client.pek_gen()
        client.pdh_gen()
        assert client.pdh_cert_export().oca.to_bytes() != oca


def test_a_whole_launch_through_the_client(real_service: BackgroundService) -> None:
    memory = SparseMemory()
    image = os.urandom(3 * 4096)
    memory.write(GUEST_BASE, image)
    with PlatformClient(real_service.socket_path) as client:
        client.ensure_init()
        chain = _full_chain(client)
        platform = verify_chain_file(chain.to_bytes(), trust_store([client.ark()]))
        launch = make_session(platform, Policy.from_int(0), rng=os.urandom)
        handle = client.launch_start(0, launch.godh.to_bytes(), launch.session.to_bytes())
        asid = client.profile().max_es_guests + 1  # the first plain-SEV ASID
        client.activate(handle, asid)
        client.launch_update_data(handle, GUEST_BASE, len(image), memory)
        assert memory.read(GUEST_BASE, len(image)) != image  # ciphertext to the host
        measurement = client.launch_measure(handle)
        status = client.platform_status()
        info = LaunchInfo(measurement, status.api_major, status.api_minor, status.build_id, 0)
        validate(info, hashlib.sha256(image).digest(), launch.keys.tik)

        table = secret_table([("luks-key", b"hunter2")])
        packet = build_packet(table, launch.keys, measurement, rng=os.urandom)
        client.launch_secret(handle, packet.header.to_bytes(), packet.payload, SECRET_PADDR, memory)
        client.launch_finish(handle)
        guest = client.guest_status(handle)
        assert (guest.state, guest.asid) == (GuestState.RUNNING, asid)
        secret = table.to_bytes()
        assert client.guest_read(handle, SECRET_PADDR, len(secret), memory) == secret
        assert client.dbg_decrypt(handle, GUEST_BASE, len(image), memory) == image

        client.guest_write(handle, GUEST_BASE + 5, b"written by the guest", memory)
        assert client.guest_read(handle, GUEST_BASE, 30, memory) == (
            image[:5] + b"written by the guest" + image[25:30]
        )
        client.dbg_encrypt(handle, GUEST_BASE, bytes(32), memory)
        assert client.guest_read(handle, GUEST_BASE, 32, memory) == bytes(32)
        assert len(client.attestation(handle, os.urandom(16))) == 0xD0

        with pytest.raises(PlatformError, match="cannot reset the platform while 1 guest"):
            client.platform_reset()
        client.deactivate(handle)
        client.df_flush()
        client.decommission(handle)
        assert client.platform_status().guest_count == 0


def test_a_tampered_policy_fails_like_qemu_reports_it(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        client.ensure_init()
        chain = _full_chain(client)
        platform = verify_chain_file(chain.to_bytes(), trust_store([client.ark()]))
        launch = make_session(platform, Policy.from_int(0), rng=os.urandom)
        with pytest.raises(FirmwareError) as info:
            client.launch_start(1, launch.godh.to_bytes(), launch.session.to_bytes())
    assert info.value.status == Status.BAD_MEASUREMENT
    assert "LAUNCH_START failed: fw_error=11 'Bad measurement'" in str(info.value)


def test_guest_memory_may_not_overlap_the_bounce_buffers(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client, pytest.raises(UsageError):
        client.launch_update_data(1, calls.SCRATCH_BASE, 16, SparseMemory())


def test_guest_access_to_an_unknown_guest_is_refused(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        with pytest.raises(PlatformError, match="BAD_ARGUMENT") as info:
            client.guest_read(77, 0, 16, SparseMemory())
        assert "fw_error=16" in str(info.value)
        assert client.platform_status().api_major == 1


def test_async_client_admin_path(real_service: BackgroundService) -> None:
    async def main() -> tuple[PlatformChain, bytes, str]:
        async with AsyncPlatformClient(real_service.socket_path) as client:
            chain, chip = await asyncio.gather(client.pdh_cert_export(), client.get_id())
            profile = await client.profile()
            return chain, chip, profile.name

    chain, chip, name = asyncio.run(main())
    assert chain.pdh.usage is Usage.PDH
    assert len(chip) == 64
    assert name == "milan"
