"""Step 11: the expected launch measurement, its check, and why a check failed.

``MEASURE = HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE)``
(firmware-API doc §7); the launch digest LD comes from :mod:`sevlaunch.owner.launch_digest`.
:func:`validate` raises on a mismatch; :func:`diagnose` then tries the usual mistakes and
says which one would have matched. The expected MAC itself is never reported: with the
host's MNONCE it would be a valid measurement the host could replay.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from sevlaunch.crypto.launch import measurement_mac
from sevlaunch.errors import FormatError, MeasurementMismatchError, UsageError
from sevlaunch.formats.session import MEASUREMENT_SIZE, Measurement
from sevlaunch.owner.diagnosis import (
    Diagnosis,
    Finding,
    Variant,
    digest_variants,
    key_variants,
)
from sevlaunch.owner.launch_digest import (
    DirectBoot,
    MeasuredFirmware,
    launch_digest,
    measure_direct_boot,
    measure_firmware,
)
from sevlaunch.owner.vmsa import EsVmsas
from sevlaunch.protocol import LaunchSecurityInfo

__all__ = [
    "Diagnosis",
    "DirectBoot",
    "Finding",
    "LaunchInfo",
    "MeasuredFirmware",
    "diagnose",
    "expected_measurement",
    "launch_digest",
    "launch_info",
    "matches",
    "measure_direct_boot",
    "measure_firmware",
    "validate",
]


#: What the host reports after LAUNCH_MEASURE: the protocol's one typed form of it.
LaunchInfo = LaunchSecurityInfo


def launch_info(
    measurement: str, *, api_major: int, api_minor: int, build_id: int, policy: int
) -> LaunchInfo:
    """From the base64 measurement as QEMU and libvirt print it."""
    return LaunchInfo(decode_measurement(measurement), api_major, api_minor, build_id, policy)


def decode_measurement(text: str) -> Measurement:
    """The 48-byte LAUNCH_MEASURE blob from base64, with a message that says what to pass."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(
            "launch measurement",
            "base64",
            f"not base64: {text[:60]!r}; pass sev-measurement as virsh domlaunchsecinfo or "
            "QMP query-sev-launch-measure prints it",
            value=text,
        ) from exc
    if len(raw) != MEASUREMENT_SIZE:
        raise FormatError(
            "launch measurement",
            "length",
            f"expected {MEASUREMENT_SIZE} bytes (MEASURE ‖ MNONCE) once base64-decoded, got "
            f"{len(raw)}; pass the whole sev-measurement value",
            value=len(raw),
        )
    return Measurement.from_bytes(raw)


def expected_measurement(
    digest: bytes,
    *,
    api_major: int,
    api_minor: int,
    build_id: int,
    policy: int,
    mnonce: bytes,
    tik: bytes,
) -> Measurement:
    """The 48-byte blob LAUNCH_MEASURE returns for this digest, platform version and MNONCE."""
    measure = measurement_mac(
        tik,
        api_major=api_major,
        api_minor=api_minor,
        build_id=build_id,
        policy=policy,
        digest=digest,
        mnonce=mnonce,
    )
    return Measurement(measure, mnonce)


def _explains(info: LaunchInfo, digest: bytes, tik: bytes) -> bool:
    """Whether ``digest`` and ``tik`` explain the reported measurement (constant-time); the
    search predicate of :func:`diagnose`, never a verdict."""
    expected = expected_measurement(
        digest,
        api_major=info.api_major,
        api_minor=info.api_minor,
        build_id=info.build_id,
        policy=info.policy,
        mnonce=info.measurement.mnonce,
        tik=tik,
    )
    return hmac.compare_digest(expected.measure, info.measurement.measure)


def matches(info: LaunchInfo, digest: bytes, tik: bytes) -> None:
    """Raise :class:`MeasurementMismatchError` unless ``digest`` and ``tik`` explain the
    reported measurement (constant-time)."""
    if not _explains(info, digest, tik):
        raise MeasurementMismatchError(
            f"the measurement is not HMAC(TIK, API {info.api_major}.{info.api_minor} build "
            f"{info.build_id}, policy {info.policy:#x}, launch digest {digest.hex()}, MNONCE "
            f"{info.measurement.mnonce.hex()})"
        )


def validate(info: LaunchInfo, digest: bytes, tik: bytes) -> None:
    """Raise :class:`MeasurementMismatchError` unless the measurement is the expected one."""
    if len(digest) != 32:
        raise UsageError(f"a launch digest is 32 bytes (SHA-256), got {len(digest)}")
    if len(tik) != 16:
        raise UsageError(f"a TIK is 16 bytes, got {len(tik)}")
    if not _explains(info, digest, tik):
        raise MeasurementMismatchError(
            "Measurement does not match, VM is not trustworthy: expected HMAC(TIK, API "
            f"{info.api_major}.{info.api_minor} build {info.build_id}, policy {info.policy:#x}, "
            f"launch digest {digest.hex()}, MNONCE {info.measurement.mnonce.hex()}), found "
            f"MEASURE {info.measurement.measure.hex()}. Do not release secrets to this guest; "
            "check that the firmware, kernel, initrd, command line and TIK are the ones of this "
            "launch (sevlaunch owner validate tries the usual mistakes)"
        )


def diagnose(
    info: LaunchInfo,
    *,
    tik: bytes,
    tek: bytes | None = None,
    firmwares: Sequence[MeasuredFirmware] = (),
    boot: DirectBoot | None = None,
    digest: bytes | None = None,
    es: EsVmsas | None = None,
) -> Diagnosis:
    """Which usual mistake explains a mismatch: try each variant of the owner's inputs.

    Give the firmware images (the first is the one claimed) and the direct boot, or a launch
    digest alone (then only TEK and TIK swapped can be tried); for SEV-ES, ``es`` says how
    the VMSAs were obtained and their variants are tried too. Explanations come fewest
    mistakes first; only the smallest sets of mistakes that match are kept.
    """
    if (digest is None) == (not firmwares):
        raise UsageError(
            "diagnose needs exactly one of: firmware images (with the direct boot) or a digest"
        )
    variants = (
        digest_variants(firmwares, boot, es) if digest is None else iter([Variant((), digest)])
    )
    keys = key_variants(tik, tek)
    found: list[tuple[Finding, ...]] = []
    tried = 0
    for variant in variants:
        for key in keys:
            tried += 1
            if _explains(info, variant.digest, key.tik):
                found.append((*variant.findings, *key.findings))
    found.sort(key=len)
    fewest = [f for f in found if len(f) == len(found[0])] if found else []
    return Diagnosis(tuple(fewest), tried, es=es is not None)
