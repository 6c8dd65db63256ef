"""``-object``: the ``sev-guest`` object with QEMU's property types and checks (``sev-snp-guest``
in :mod:`.snp_object`), and the other objects libvirt adds (memory backends, its master-key
``secret``), kept as given."""

from __future__ import annotations

from typing import Any

from sevlaunch.vmm.cmdline.config import ObjectConfig, SevGuestConfig, SevSnpGuestConfig
from sevlaunch.vmm.cmdline.opts import Props, parse_bool, parse_props, parse_uint, take_str
from sevlaunch.vmm.cmdline.snp_object import sev_snp_guest

_SEV_PROPS: dict[str, str] = {
    "cbitpos": "uint32",
    "reduced-phys-bits": "uint32",
    "policy": "uint32",
    "handle": "uint32",
    "dh-cert-file": "str",
    "session-file": "str",
    "kernel-hashes": "bool",
    "legacy-vm-type": "OnOffAuto",
    "sev-device": "str",
}
SEV_GUEST_PROPS = _SEV_PROPS  # the sev-guest object's QOM properties and their kinds
OTHER_OBJECTS = ("memory-backend-ram", "memory-backend-memfd", "memory-backend-file", "secret")


def parse_object(text: str) -> SevGuestConfig | SevSnpGuestConfig | ObjectConfig:
    """One ``-object`` argument, key=value or JSON (``{"qom-type": ...}``)."""
    props, typed = parse_props(text, "qom-type")
    qom_type = take_str(props, "qom-type")
    oid = take_str(props, "id")
    if qom_type == "sev-guest":
        return _sev_guest(oid, props, typed)
    if qom_type == "sev-snp-guest":
        return sev_snp_guest(oid, props, typed)
    if qom_type in OTHER_OBJECTS:
        return ObjectConfig(qom_type, oid, tuple(props.items()))
    raise ValueError(f"invalid object type: {qom_type}")


def _sev_guest(oid: str, props: Props, typed: bool) -> SevGuestConfig:
    values: dict[str, Any] = {}
    for name, value in props.items():
        kind = _SEV_PROPS.get(name)
        if kind is None:
            raise ValueError(f"Property 'sev-guest.{name}' not found")
        values[name.replace("-", "_")] = _convert(name, kind, value, typed)
    values.setdefault("reduced_phys_bits", 0)  # QEMU's default; refused later, as QEMU does
    return SevGuestConfig(id=oid, **values)


def _convert(name: str, kind: str, value: object, typed: bool) -> object:
    """One property: JSON values are checked by type, key=value strings are parsed."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"Invalid parameter type for '{name}', expected: string")
        return value
    if kind == "bool":
        if typed:
            if not isinstance(value, bool):
                raise ValueError(f"Invalid parameter type for '{name}', expected: boolean")
            return value
        return parse_bool(name, str(value))
    if kind == "OnOffAuto":
        if value not in ("on", "off", "auto"):
            raise ValueError(f"Parameter '{name}' does not accept value '{value}'")
        return value
    if typed:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not -(1 << 63) <= value < 1 << 64
        ):
            raise ValueError(f"Parameter '{name}' expects uint64")
        value = str(value & ((1 << 64) - 1))
    return parse_uint(name, str(value), 32)
