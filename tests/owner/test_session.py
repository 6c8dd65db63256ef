"""Launch sessions: the PDH's owner unwraps them, the GODH is what real firmware accepts."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.crypto import ecc
from sevlaunch.crypto.chain import VerifiedPlatform, verify_platform
from sevlaunch.crypto.kdf import master_secret
from sevlaunch.crypto.launch import TransportKeys, check_policy_mac, unwrap_keys
from sevlaunch.crypto.truststore import TrustStore
from sevlaunch.errors import FirmwareError, IntegrityError, UsageError, VerificationError
from sevlaunch.formats import Policy, PolicyFlags, SecretTable, Session, SevCert
from sevlaunch.formats.secret import LUKS_KEY_GUID
from sevlaunch.formats.sevcert import Algorithm, EccCurve, Usage
from sevlaunch.owner.launch_digest import measure_direct_boot
from sevlaunch.owner.measurement import LaunchInfo, launch_digest, validate
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.owner.session import LaunchSession, make_session
from sevlaunch.owner.verify import trust_store, verify_chain_file
from tests.owner import ovmf_images
from tests.strategies import ca_bytes, platform_bytes, synthetic_platform

SEED = 7
PDH_PRIVATE = ecc.generate_p384(SEED * 10)  # synthetic_platform's PDH key (first of its four)


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@pytest.fixture(scope="module")
def platform() -> VerifiedPlatform:
    keys = (pyca_rsa.generate_private_key(65537, 2048), pyca_rsa.generate_private_key(65537, 2048))
    chain = synthetic_platform(*keys, seed=SEED)
    assert chain.ca is not None
    return verify_platform(chain, TrustStore().with_root(chain.ca.ark, name="lab"))


def _unwrap(launch: LaunchSession) -> TransportKeys:
    """What LAUNCH_START does with the PDH's private key."""
    shared = ecc.ecdh(PDH_PRIVATE, launch.godh.ecc_key)
    return unwrap_keys(master_secret(shared, launch.session.nonce), launch.session)


def test_the_pdh_owner_unwraps_the_keys_and_checks_the_policy(platform: VerifiedPlatform) -> None:
    assert ecc.from_public_key(PDH_PRIVATE.public_key()) == platform.pdh.ecc_key
    launch = make_session(platform, Policy.parse("nodbg,noks"), rng=seeded_rng(1))
    keys = _unwrap(launch)
    assert (keys.tek, keys.tik) == (launch.keys.tek, launch.keys.tik)
    check_policy_mac(keys.tik, 0x3, launch.session.policy_mac)
    with pytest.raises(IntegrityError, match="POLICY_MAC"):
        check_policy_mac(keys.tik, 0x1, launch.session.policy_mac)


def test_a_tampered_session_does_not_unwrap(platform: VerifiedPlatform) -> None:
    launch = make_session(platform, 3, rng=seeded_rng(2))
    tampered = replace(launch, session=replace(launch.session, wrap_tk=bytes(32 - 1) + b"\x01"))
    with pytest.raises(IntegrityError, match="WRAP_MAC"):
        _unwrap(tampered)


def test_godh_is_what_sevctl_makes(platform: VerifiedPlatform) -> None:
    launch = make_session(platform, 0, rng=seeded_rng(3))
    raw = base64.b64decode(launch.godh_b64)
    assert len(raw) == 0x824
    assert raw[:8] == bytes((1, 0, 0, 0, 0, 0, 0, 0))  # version 1, API 0.0
    assert int.from_bytes(raw[8:12], "little") == Usage.PDH
    assert int.from_bytes(raw[12:16], "little") == Algorithm.ECDH_SHA256
    assert int.from_bytes(raw[16:20], "little") == EccCurve.P384
    for base in (0x414, 0x61C):  # both slots empty: usage INVALID, algo 0, zeros
        assert raw[base : base + 8] == (0x1000).to_bytes(4, "little") + bytes(4)
        assert raw[base + 8 : base + 0x208] == bytes(0x200)
    assert SevCert.from_bytes(raw) == launch.godh
    assert Session.from_bytes(base64.b64decode(launch.session_b64)) == launch.session


def test_sessions_are_deterministic_in_the_rng_and_fresh_otherwise(
    platform: VerifiedPlatform,
) -> None:
    a = make_session(platform, 3, rng=seeded_rng(4))
    assert a == make_session(platform, 3, rng=seeded_rng(4))
    b = make_session(platform, 3, rng=seeded_rng(5))
    assert a.session.nonce != b.session.nonce
    assert a.godh != b.godh
    assert a.keys.tek != b.keys.tek


def test_explicit_keys_are_used(platform: VerifiedPlatform) -> None:
    keys = TransportKeys(b"E" * 16, b"I" * 16)
    launch = make_session(platform, 1, rng=seeded_rng(6), keys=keys)
    assert _unwrap(launch) == keys
    assert launch.policy == Policy(PolicyFlags.NODBG)


def test_repr_never_shows_key_material(platform: VerifiedPlatform) -> None:
    keys = TransportKeys(bytes(range(16)), bytes(range(16, 32)))
    text = repr(make_session(platform, 3, rng=seeded_rng(7), keys=keys))
    for secret in (keys.tek, keys.tik):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_only_a_verified_platform_is_accepted(platform: VerifiedPlatform) -> None:
    with pytest.raises(UsageError, match="VerifiedPlatform"):
        make_session(platform.chain, 3, rng=seeded_rng(8))  # type: ignore[arg-type]


def test_a_verified_platform_with_another_pdh_cannot_be_made(platform: VerifiedPlatform) -> None:
    """The PEK put in the PDH's place: only the chain verifier makes a VerifiedPlatform."""
    with pytest.raises(TypeError):
        replace(platform, chain=replace(platform.chain, pdh=platform.chain.pek))  # type: ignore[type-var]
    with pytest.raises(VerificationError, match=r"only by sevlaunch\.crypto\.chain"):
        VerifiedPlatform(object(), chain=platform.chain, ca=platform.ca, links=())


def test_short_randomness_and_bad_policy_are_refused(platform: VerifiedPlatform) -> None:
    with pytest.raises(UsageError, match="gave 8 bytes for the TEK"):
        make_session(platform, 3, rng=lambda n: bytes(8))
    with pytest.raises(ValueError, match="bits 6-15"):
        make_session(platform, 0x40, rng=seeded_rng(10))


def test_session_for_a_real_rome_platform(vectors: Path) -> None:
    verified = verify_chain_file(
        platform_bytes(vectors, "rome"), trust_store(), ca=ca_bytes(vectors, "rome")
    )
    launch = make_session(verified, 3, rng=seeded_rng(11))
    assert len(base64.b64decode(launch.session_b64)) == 128
    assert launch.godh.ecc_key.curve is EccCurve.P384


# --- cross-test against the emulated firmware ------------------------------------------------


def test_emulated_firmware_accepts_the_session_and_its_measurement_validates() -> None:
    """Steps 3-12 against the emulated PSP: the chain verifies, LAUNCH_START accepts the session,
    the measurement validates, the secret packet lands in the guest's secret area."""
    firmware_pkg = pytest.importorskip("sevlaunch.firmware")

    fw = firmware_pkg.Firmware(
        firmware_pkg.PROFILES["rome"],
        rng=seeded_rng(20),
        state=None,
        rsa_keygen=lambda: pyca_rsa.generate_private_key(65537, 2048),
    )
    fw.init()
    pdh, certs = fw.pdh_cert_export()
    platform = verify_chain_file(
        pdh + certs, trust_store([fw.ark()]), ca=fw.ca_chain(), cek=fw.signed_cek()
    )
    policy = 0x1  # nodbg
    launch = make_session(platform, policy, rng=seeded_rng(21))
    with pytest.raises(FirmwareError):  # POLICY_MAC binds the policy
        fw.launch_start(0x3, launch.godh.to_bytes(), launch.session.to_bytes())
    handle = fw.launch_start(policy, launch.godh.to_bytes(), launch.session.to_bytes())
    fw.activate(handle, fw.profile.sev_asids[0])

    memory = firmware_pkg.SparseMemory()
    image = ovmf_images.image(bytes(16384 - len(ovmf_images.footer())))
    kernel, initrd, cmdline = b"bzImage" * 100, b"initrd" * 100, "console=ttyS0 quiet"
    table = measure_direct_boot(kernel, initrd, cmdline).hashes().to_bytes()
    hashes_base, secret_base = ovmf_images.HASHES_AREA[0], ovmf_images.SECRET_AREA[0]
    memory.write(0x100000, image)
    memory.write(hashes_base, table)
    fw.launch_update_data(handle, memory, 0x100000, len(image))
    fw.launch_update_data(handle, memory, hashes_base, len(table))
    measurement = fw.launch_measure(handle)

    status = fw.platform_status()
    info = LaunchInfo(measurement, status.api_major, status.api_minor, status.build_id, policy)
    validate(info, launch_digest(image, kernel, initrd, cmdline), launch.keys.tik)

    packet = build_packet(
        secret_table([("luks-key", b"correct horse")]),
        launch.keys,
        measurement,
        rng=seeded_rng(22),
        area_size=ovmf_images.SECRET_AREA[1],
    )
    fw.launch_secret(handle, packet.header.to_bytes(), packet.payload, memory, secret_base)
    fw.launch_finish(handle)
    plain = fw.guest_read(handle, secret_base, len(packet.payload), memory)
    assert SecretTable.from_bytes(plain).get(LUKS_KEY_GUID) == b"correct horse"
