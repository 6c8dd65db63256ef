"""Launch security info and state (virDomainGetLaunchSecurityInfo / SetLaunchSecurityState):
libvirt's parameter names, its checks in its order, and the QMP arguments they become.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sevlaunch.errors import FormatError, HostError
from sevlaunch.formats.snp.commands import SnpPlatformStatus
from sevlaunch.formats.states import PlatformState
from sevlaunch.host.domxml import LaunchSecurity
from sevlaunch.protocol import LaunchSecurityInfo, NodeSnpInfo, SnpLaunchSecurityInfo

T = TypeVar("T")

_STATE_PARAMS: dict[str, type] = {
    "sev-secret-header": str,
    "sev-secret": str,
    "sev-secret-set-address": int,
}


def security_info(measure: Mapping[str, Any], sev: Mapping[str, Any]) -> LaunchSecurityInfo:
    """The info's typed parameters from ``query-sev-launch-measure`` and ``query-sev``."""
    wire = {
        "sev-measurement": measure.get("data"),
        **_firmware(sev),
        "sev-policy": sev.get("policy"),
    }
    return _typed(LaunchSecurityInfo.from_wire, wire, "the hypervisor's launch measurement")


def snp_security_info(sev: Mapping[str, Any]) -> SnpLaunchSecurityInfo:
    """An SNP domain's parameters from ``query-sev`` (its ``sev-snp`` member)."""
    if sev.get("sev-type") != "sev-snp":
        raise HostError(
            "internal error",
            f"the hypervisor runs a {sev.get('sev-type')!r} guest for an SEV-SNP domain",
            field="sev-type",
            value=sev.get("sev-type"),
        )
    wire = {**_firmware(sev), "sev-snp-policy": sev.get("snp-policy")}
    return _typed(SnpLaunchSecurityInfo.from_wire, wire, "the hypervisor's query-sev")


def _firmware(sev: Mapping[str, Any]) -> dict[str, Any]:
    """libvirt's firmware parameters, named as virDomainGetLaunchSecurityInfo names them."""
    return {
        "sev-api-major": sev.get("api-major"),
        "sev-api-minor": sev.get("api-minor"),
        "sev-build-id": sev.get("build-id"),
    }


def _typed(from_wire: Callable[[dict[str, Any]], T], wire: dict[str, Any], what: str) -> T:
    """``from_wire(wire)``; a malformed answer is the hypervisor's internal error."""
    try:
        return from_wire(wire)
    except FormatError as exc:
        raise HostError("internal error", f"{what}: {exc}", field=exc.field) from exc


def node_snp_info(sectypes: tuple[str, ...], status: SnpPlatformStatus | None) -> NodeSnpInfo:
    if status is None:
        return NodeSnpInfo(sectypes)
    return NodeSnpInfo(
        sectypes,
        state=_state_name(status.state),
        api_major=status.api_major,
        api_minor=status.api_minor,
        build_id=status.build_id,
        current_tcb=status.current_tcb,
        reported_tcb=status.reported_tcb,
        guests=status.guest_count,
    )


def _state_name(state: int) -> str:
    try:
        return PlatformState(state).name
    except ValueError:
        return str(state)


def check_state_params(params: Mapping[str, Any]) -> None:
    """Reject unknown parameter names and wrong types before the domain is looked up."""
    for name, value in params.items():
        if name not in _STATE_PARAMS:
            raise HostError("invalid argument", f"parameter '{name}' not supported")
        if not isinstance(value, _STATE_PARAMS[name]) or isinstance(value, bool):
            raise HostError("invalid argument", f"invalid type for parameter '{name}'")


def check_secret_request(sev: LaunchSecurity | None, params: Mapping[str, Any]) -> None:
    """Only SEV domains take a launch secret, and only a header and secret both in base64."""
    if sev is None or sev.type != "sev":
        raise HostError(
            "Operation not supported",
            "setting a launch secret is only supported in SEV-enabled domains",
        )
    if "sev-secret-header" not in params or "sev-secret" not in params:
        raise HostError("invalid argument", "Both secret and the secret header are required")
    for name in ("sev-secret-header", "sev-secret"):
        try:
            base64.b64decode(params[name], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HostError(
                "invalid argument", f"parameter '{name}' is not valid base64", field=name
            ) from exc


def inject_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """``sev-inject-launch-secret``'s arguments for checked parameters."""
    arguments: dict[str, Any] = {
        "packet-header": params["sev-secret-header"],
        "secret": params["sev-secret"],
    }
    if "sev-secret-set-address" in params:
        arguments["gpa"] = params["sev-secret-set-address"]
    return arguments
