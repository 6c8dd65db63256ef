"""Step 11's one decision, for the broker and the local owner alike.

:func:`decide` takes what the host reported (:class:`~sevlaunch.protocol.LaunchSecurityInfo`),
what the owner registered for this launch (:class:`Registration`) and the launch's TEK and
TIK, and returns the launch digest that explains the measurement, or raises
:class:`~sevlaunch.errors.LaunchRefusedError` with one of :class:`Reason`'s codes. It never
returns a bool. Single use (replay) and expiry are the callers' transactions; their codes are
here too so that every refusal has one name. Pure: no clock, no randomness, no IO.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import LaunchRefusedError, MeasurementMismatchError
from sevlaunch.owner.measurement import diagnose, matches
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo


class Reason(enum.StrEnum):
    """Why a launch gets no secret (the broker's audit log and HTTP answers carry these)."""

    POLICY_MISMATCH = "policy-mismatch"
    FIRMWARE_TOO_OLD = "firmware-too-old"
    MEASUREMENT_MISMATCH = "measurement-mismatch"  #: the guest is not what was registered
    UNMEASURABLE = "unmeasurable-configuration"  #: the configuration cannot be measured so
    REPLAY = "replay"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Registration:
    """What the owner expects of one launch: the policy its session was made for, the launch
    digests it accepts, and the oldest firmware it trusts."""

    policy: int
    digests: tuple[bytes, ...]
    min_api: tuple[int, int] = (0, 0)
    min_build: int = 0
    workload: str = "the workload"


def refuse(reason: Reason, message: str, diagnosis: str | None = None) -> LaunchRefusedError:
    return LaunchRefusedError(str(reason), message, diagnosis)


def decide(
    info: LaunchSecurityInfo,
    registration: Registration,
    keys: TransportKeys,
    configuration: LaunchConfiguration | None = None,
) -> bytes:
    """The registered digest that explains ``info``'s measurement, or a refusal.

    ``configuration`` is what the VM tool says of the domain; it only chooses the words of a
    mismatch (a configuration that cannot be measured as registered, or a guest that is not
    what was registered): it never makes a measurement match.
    """
    check_platform(info, registration)
    for digest in registration.digests:
        try:
            matches(info, digest, keys.tik)
        except MeasurementMismatchError:
            continue
        return digest
    raise _mismatch(info, registration, keys, configuration)


def check_platform(info: LaunchSecurityInfo, registration: Registration) -> None:
    """The reported policy is the session's, and the firmware is recent enough."""
    if info.policy != registration.policy:
        raise refuse(
            Reason.POLICY_MISMATCH,
            f"the guest reports policy {info.policy:#x} but its session was made for "
            f"{registration.policy:#x}; the host changed the policy: destroy the guest",
        )
    found = (info.api_major, info.api_minor, info.build_id)
    wanted = (*registration.min_api, registration.min_build)
    if found < wanted:
        raise refuse(
            Reason.FIRMWARE_TOO_OLD,
            f"the platform runs SEV firmware API {found[0]}.{found[1]} build {found[2]}, "
            f"{registration.workload} requires at least {wanted[0]}.{wanted[1]} build "
            f"{wanted[2]}; update the host's firmware",
        )


def _mismatch(
    info: LaunchSecurityInfo,
    registration: Registration,
    keys: TransportKeys,
    configuration: LaunchConfiguration | None,
) -> LaunchRefusedError:
    unmeasurable = configuration.unmeasurable() if configuration is not None else None
    if unmeasurable is not None:
        return refuse(
            Reason.UNMEASURABLE,
            "the measurement matches none of the registered launch digests because the "
            f"configuration cannot be measured as registered: {unmeasurable}",
            configuration.fix() if configuration is not None else None,
        )
    return refuse(
        Reason.MEASUREMENT_MISMATCH,
        f"the measurement matches none of the workload's "
        f"{len(registration.digests)} expected launch digest(s) for API {info.api_major}."
        f"{info.api_minor} build {info.build_id}, policy {info.policy:#x}: the guest did not "
        "load the registered firmware, kernel, initrd and command line; do not trust it, "
        "destroy it",
        _diagnosis(info, registration.digests, keys),
    )


def _diagnosis(
    info: LaunchSecurityInfo, digests: Sequence[bytes], keys: TransportKeys
) -> str | None:
    """What explains a mismatch when the owner can tell from digests alone (keys swapped)."""
    for digest in digests:
        found = diagnose(info, tik=keys.tik, tek=keys.tek, digest=digest)
        if found.explained:
            return found.describe()
    return None
