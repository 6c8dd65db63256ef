"""Expected measurements (sevctl and sev-tool known answers), validation, and the diagnosis."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sevlaunch.errors import FormatError, MeasurementMismatchError, UsageError
from sevlaunch.formats import Measurement
from sevlaunch.owner.diagnosis import Mistake
from sevlaunch.owner.measurement import (
    LaunchInfo,
    decode_measurement,
    diagnose,
    expected_measurement,
    launch_digest,
    launch_info,
    measure_direct_boot,
    measure_firmware,
    validate,
)
from tests.owner import ovmf_images

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
NONCE = base64.b64decode("wxP6tRHCFrFQWxsuqZA8QA==")
CMDLINE = "foo bar baz fake kernel=cmdline"


def _sevctl_info(blob: str) -> LaunchInfo:
    return launch_info(blob, api_major=1, api_minor=40, build_id=40, policy=0x03)


def _tik(vectors: Path) -> bytes:
    return (vectors / "sevctl/measurement/tik1.bin").read_bytes()


def _check_kat(vectors: Path, digest: bytes, blob: str) -> None:
    info = _sevctl_info(blob)
    assert info.measurement.mnonce == NONCE
    expected = expected_measurement(
        digest, api_major=1, api_minor=40, build_id=40, policy=3, mnonce=NONCE, tik=_tik(vectors)
    )
    assert base64.b64encode(expected.to_bytes()).decode() == blob
    validate(info, digest, _tik(vectors))


def test_sevctl_digest_given(vectors: Path) -> None:
    digest = base64.b64decode("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
    _check_kat(vectors, digest, "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA")


def test_sevctl_firmware_only(vectors: Path) -> None:
    digest = launch_digest((vectors / OVMF).read_bytes())
    _check_kat(vectors, digest, "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA")


def test_sevctl_firmware_and_kernel_hashes(vectors: Path) -> None:
    with (
        (vectors / OVMF).open("rb") as fw,
        (vectors / "sevctl/measurement/vmlinuz-fake").open("rb") as kernel,
        (vectors / "sevctl/measurement/initrd-fake").open("rb") as initrd,
    ):
        digest = launch_digest(fw, kernel, initrd, CMDLINE)
    _check_kat(vectors, digest, "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA")


def test_sevctl_sev_es_vmsas_extend_the_digest(vectors: Path) -> None:
    """The SEV-ES extension point: VMSAs appended after the firmware (issue 10 builds them)."""
    vmsa0 = (vectors / "sevctl/vmsa0.bin").read_bytes()
    vmsa1 = (vectors / "sevctl/vmsa1.bin").read_bytes()
    digest = launch_digest((vectors / OVMF).read_bytes(), vmsas=[vmsa0, vmsa1, vmsa1, vmsa1])
    blob = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"
    info = launch_info(blob, api_major=1, api_minor=49, build_id=6, policy=0x05)
    validate(info, digest, _tik(vectors))


def test_sev_tool_measure_known_answer() -> None:
    expected = expected_measurement(
        hashlib.sha256(b"").digest(),
        api_major=0,
        api_minor=0x12,
        build_id=0x0F,
        policy=0,
        mnonce=bytes.fromhex("4fbe0bedbad6c86ae8f68971d103e554"),
        tik=bytes.fromhex("66320db73158a35a255d051758e95ed4"),
    )
    assert expected.measure.hex() == (
        "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
    )


@pytest.mark.parametrize(
    "change", ["measure", "api_major", "api_minor", "build_id", "policy", "digest", "tik"]
)
def test_any_change_is_a_mismatch(vectors: Path, change: str) -> None:
    blob = "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"
    info = _sevctl_info(blob)
    digest = launch_digest((vectors / OVMF).read_bytes())
    tik = _tik(vectors)
    if change == "measure":
        raw = bytearray(info.measurement.to_bytes())
        raw[5] ^= 0x10
        info = LaunchInfo(Measurement.from_bytes(bytes(raw)), 1, 40, 40, 3)
    elif change in ("api_major", "api_minor", "build_id", "policy"):
        values = {"api_major": 1, "api_minor": 40, "build_id": 40, "policy": 3}
        values[change] += 1
        info = LaunchInfo(info.measurement, **values)
    elif change == "digest":
        digest = bytes([digest[0] ^ 1]) + digest[1:]
    else:
        tik = bytes([tik[0] ^ 1]) + tik[1:]
    with pytest.raises(MeasurementMismatchError, match="not trustworthy") as err:
        validate(info, digest, tik)
    assert digest.hex() in str(err.value)


def test_the_expected_mac_is_never_reported(vectors: Path) -> None:
    """With the host's MNONCE, the expected MAC would be a measurement the host could replay."""
    fw = (vectors / OVMF).read_bytes()
    other = launch_digest(fw[:-1] + b"\0")
    info = _sevctl_info("oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA")
    secret_mac = expected_measurement(
        other, api_major=1, api_minor=40, build_id=40, policy=3, mnonce=NONCE, tik=_tik(vectors)
    )
    with pytest.raises(MeasurementMismatchError) as err:
        validate(info, other, _tik(vectors))
    assert secret_mac.measure.hex() not in str(err.value)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(FormatError, match="not base64"):
        decode_measurement("not base64!")
    with pytest.raises(FormatError, match="expected 48 bytes"):
        decode_measurement(base64.b64encode(bytes(32)).decode())
    with pytest.raises(UsageError, match="byte"):
        LaunchInfo(Measurement(bytes(32), bytes(16)), 256, 0, 0, 0)
    info = LaunchInfo(Measurement(bytes(32), bytes(16)), 0, 0, 0, 0)
    with pytest.raises(UsageError, match="32 bytes"):
        validate(info, bytes(31), bytes(16))
    with pytest.raises(UsageError, match="16 bytes"):
        validate(info, bytes(32), bytes(15))
    with pytest.raises(UsageError, match="exactly one of"):
        diagnose(info, tik=bytes(16))


# --- diagnosis: one case per mistake it claims to detect -------------------------------------

TIK = bytes(range(16))
TEK = bytes(range(16, 32))
FW_A = ovmf_images.image(b"firmware A" * 900)
FW_B = ovmf_images.image(b"firmware B" * 900)


@dataclass(frozen=True)
class Launch:
    """A launch: what the guest really ran, or what the owner claims it ran."""

    firmwares: tuple[bytes, ...] = (FW_A,)
    kernel: bytes | None = b"kernel image"
    initrd: bytes | None = b"initrd image"
    cmdline: str | None = "console=ttyS0 root=/dev/vda"
    keys: tuple[bytes, bytes | None] = field(default=(TIK, TEK))


def _actual_info(actual: Launch, key: bytes = TIK) -> LaunchInfo:
    digest = launch_digest(actual.firmwares[0], actual.kernel, actual.initrd, actual.cmdline)
    mnonce = bytes(range(100, 116))
    measurement = expected_measurement(
        digest, api_major=1, api_minor=55, build_id=3, policy=1, mnonce=mnonce, tik=key
    )
    return LaunchInfo(measurement, 1, 55, 3, 1)


def _diagnose(info: LaunchInfo, claimed: Launch) -> set[tuple[Mistake, ...]]:
    firmwares = [measure_firmware(fw, name=f"fw{i}.fd") for i, fw in enumerate(claimed.firmwares)]
    boot = None
    if claimed.kernel is not None:
        boot = measure_direct_boot(claimed.kernel, claimed.initrd, claimed.cmdline)
    tik, tek = claimed.keys
    diagnosis = diagnose(info, tik=tik, tek=tek, firmwares=firmwares, boot=boot)
    assert diagnosis.explained
    text = diagnosis.describe()
    assert text.startswith("The measurement matches if"), text
    return {tuple(f.mistake for f in findings) for findings in diagnosis.explanations}


CASES = {
    Mistake.KERNEL_HASHES_OFF: (Launch(kernel=None, initrd=None, cmdline=None), Launch()),
    Mistake.CMDLINE_NO_TRAILING_NEWLINE: (Launch(cmdline="quiet"), Launch(cmdline="quiet\n")),
    Mistake.CMDLINE_TRAILING_NEWLINE: (Launch(cmdline="quiet\n"), Launch(cmdline="quiet")),
    Mistake.CMDLINE_NO_TRAILING_WHITESPACE: (Launch(cmdline="quiet"), Launch(cmdline="quiet \t")),
    Mistake.CMDLINE_TRIMMED: (Launch(cmdline="quiet"), Launch(cmdline="  quiet")),
    Mistake.CMDLINE_EMPTY: (Launch(cmdline=None), Launch(cmdline="quiet")),
    Mistake.INITRD_MISSING: (Launch(initrd=None), Launch()),
    Mistake.OTHER_FIRMWARE: (Launch(firmwares=(FW_B,)), Launch(firmwares=(FW_A, FW_B))),
}


@pytest.mark.parametrize("mistake", list(CASES), ids=lambda m: m.value)
def test_diagnosis_names_the_mistake(mistake: Mistake) -> None:
    actual, claimed = CASES[mistake]
    assert _diagnose(_actual_info(actual), claimed) == {(mistake,)}


def test_diagnosis_names_swapped_keys() -> None:
    info = _actual_info(Launch(), key=TEK)
    assert _diagnose(info, Launch()) == {(Mistake.KEYS_SWAPPED,)}


def test_diagnosis_names_swapped_keys_for_a_given_digest() -> None:
    digest = bytes(range(32))
    mnonce = bytes(16)
    measurement = expected_measurement(
        digest, api_major=0, api_minor=24, build_id=15, policy=3, mnonce=mnonce, tik=TEK
    )
    info = LaunchInfo(measurement, 0, 24, 15, 3)
    diagnosis = diagnose(info, tik=TIK, tek=TEK, digest=digest)
    assert [[f.mistake for f in e] for e in diagnosis.explanations] == [[Mistake.KEYS_SWAPPED]]
    assert "swapped" in diagnosis.describe()


def test_diagnosis_combines_two_mistakes() -> None:
    actual = Launch(firmwares=(FW_B,), cmdline="quiet")
    claimed = Launch(firmwares=(FW_A, FW_B), cmdline="quiet\n")
    assert _diagnose(_actual_info(actual), claimed) == {
        (Mistake.OTHER_FIRMWARE, Mistake.CMDLINE_NO_TRAILING_NEWLINE)
    }


def test_diagnosis_skips_other_firmware_that_cannot_take_a_kernel() -> None:
    info = _actual_info(Launch(firmwares=(FW_B,), kernel=None, initrd=None, cmdline=None))
    debian = ovmf_images.debian_image(b"firmware B" * 900)
    found = _diagnose(info, Launch(firmwares=(FW_A, debian, FW_B)))
    assert found == {(Mistake.OTHER_FIRMWARE, Mistake.KERNEL_HASHES_OFF)}


def test_diagnosis_says_when_nothing_explains_it() -> None:
    info = _actual_info(Launch(kernel=b"another kernel"))
    firmwares = [measure_firmware(FW_A)]
    boot = measure_direct_boot(b"kernel image", b"initrd image", "quiet")
    diagnosis = diagnose(info, tik=TIK, tek=TEK, firmwares=firmwares, boot=boot)
    assert not diagnosis.explained
    assert diagnosis.tried > 10
    assert "None of the usual mistakes" in diagnosis.describe()
    assert diagnosis.to_dict()["explained"] is False


def test_diagnosis_of_a_matching_launch_says_so() -> None:
    info = _actual_info(Launch())
    firmwares = [measure_firmware(FW_A)]
    boot = measure_direct_boot(b"kernel image", b"initrd image", "console=ttyS0 root=/dev/vda")
    diagnosis = diagnose(info, tik=TIK, firmwares=firmwares, boot=boot)
    assert diagnosis.explanations == ((),)
    assert "matches the inputs as given" in diagnosis.describe()
