"""``-object sev-snp-guest``: QEMU's SNP properties (target/i386/sev.c, QEMU ≥ 9.1), their
types and the length checks of their setters, with QEMU's messages.

``policy`` is a uint64 (default 0x30000); ``guest-visible-workarounds`` 16 bytes,
``id-block`` 96, ``host-data`` 32 and ``id-auth`` at most 4096 bytes, all base64; a present
``id-block`` turns ID_BLOCK_EN on. The common ``sev-device``, ``cbitpos``,
``reduced-phys-bits`` and ``kernel-hashes`` are sev-guest's.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sevlaunch.vmm.cmdline.config import SevSnpGuestConfig
from sevlaunch.vmm.cmdline.opts import Props, parse_bool, parse_uint

SNP_GUEST_PROPS: dict[str, str] = {
    "sev-device": "str",
    "cbitpos": "uint32",
    "reduced-phys-bits": "uint32",
    "kernel-hashes": "bool",
    "policy": "uint64",
    "guest-visible-workarounds": "str",
    "id-block": "str",
    "id-auth": "str",
    "author-key-enabled": "bool",
    "vcek-disabled": "bool",
    "host-data": "str",
}
ID_BLOCK_SIZE, ID_AUTH_SIZE = 96, 4096


def _decode(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Base64 data for '{name}' is not valid") from exc


def _blob(name: str, text: str) -> bytes:
    data = _decode(name, text)
    if name == "guest-visible-workarounds" and len(data) != 16:
        raise ValueError(f"parameter length of {len(data)} exceeds max of 16")
    if name == "id-block" and len(data) != ID_BLOCK_SIZE:
        raise ValueError(f"parameter length of {len(data)} not equal to {ID_BLOCK_SIZE}")
    if name == "id-auth" and len(data) > ID_AUTH_SIZE:
        raise ValueError(f"parameter length:ID_AUTH {len(data)} exceeds max of {ID_AUTH_SIZE}")
    if name == "host-data" and len(data) != 32:
        raise ValueError(f"parameter length of {len(data)} not equal to 32")
    return data


def _value(name: str, kind: str, value: object, typed: bool) -> Any:
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
    bits = 64 if kind == "uint64" else 32
    if typed:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise ValueError(f"Parameter '{name}' expects uint64")
        value = str(value)
    return parse_uint(name, str(value), bits)


_FIELDS = {
    "guest-visible-workarounds": "guest_visible_workarounds",
    "author-key-enabled": "author_key_enabled",
    "vcek-disabled": "vcek_disabled",
    "host-data": "host_data",
    "id-block": "id_block",
    "id-auth": "id_auth",
}


def sev_snp_guest(oid: str, props: Props, typed: bool) -> SevSnpGuestConfig:
    values: dict[str, Any] = {}
    for name, raw in props.items():
        kind = SNP_GUEST_PROPS.get(name)
        if kind is None:
            raise ValueError(f"Property 'sev-snp-guest.{name}' not found")
        value = _value(name, kind, raw, typed)
        if name in ("guest-visible-workarounds", "id-block", "id-auth", "host-data"):
            value = _blob(name, value)
        values[_FIELDS.get(name, name.replace("-", "_"))] = value
    values.setdefault("reduced_phys_bits", 0)  # QEMU's default; refused at machine init
    return SevSnpGuestConfig(id=oid, **values)
