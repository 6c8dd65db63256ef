"""The QAPI description of the ``-object`` types the VMM accepts (QEMU's ``ObjectOptions``).

QEMU's ``-object`` and ``object-add`` take one QAPI union, ``ObjectOptions``, tagged by
``qom-type``; ``query-qmp-schema`` shows it as ``object-add``'s ``arg-type``. Management
layers read capabilities from it: libvirt sets QEMU_CAPS_SEV_GUEST_KERNEL_HASHES from
``object-add/arg-type/+sev-guest/kernel-hashes``. Written by hand for the types the VMM
parses; the sev-guest members are the parser's own table, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch.vmm.cmdline.objects import SEV_GUEST_PROPS
from sevlaunch.vmm.cmdline.snp_object import SNP_GUEST_PROPS

if TYPE_CHECKING:  # built only when a probe asks for the schema, not at every VMM start
    from sevlaunch.qmp.introspect import EnumType, Member, ObjectType

OBJECT_OPTIONS = "ObjectOptions"
OBJECT_TYPE = "ObjectType"

#: qom-list-properties' names for the parser's kinds.
_QOM_KIND = {
    "str": "string",
    "bool": "bool",
    "uint32": "uint32",
    "uint64": "uint64",
    "OnOffAuto": "OnOffAuto",
}
SEV_GUEST_PROPERTIES: tuple[tuple[str, str], ...] = tuple(
    (name, _QOM_KIND[kind]) for name, kind in SEV_GUEST_PROPS.items()
)
SEV_SNP_GUEST_PROPERTIES: tuple[tuple[str, str], ...] = tuple(
    (name, _QOM_KIND[kind]) for name, kind in SNP_GUEST_PROPS.items()
)


def _memory_backend() -> tuple[Member, ...]:
    from sevlaunch.qmp.introspect import member

    return (
        member("*size", "uint64"),
        member("*share", "bool"),
        member("*prealloc", "bool"),
        member("*dump", "bool"),
        member("*merge", "bool"),
        member("*x-use-canonical-path-for-ramblock-id", "bool"),
    )


def _sev_guest(
    name: str = "SevGuestProperties", props: dict[str, str] = SEV_GUEST_PROPS
) -> ObjectType:
    from sevlaunch.qmp.introspect import ObjectType, member

    members = []
    for prop, kind in props.items():
        required = prop == "reduced-phys-bits"  # QEMU: the one mandatory sev-common member
        wire = "OnOffAuto" if kind == "OnOffAuto" else kind
        members.append(member(prop if required else f"*{prop}", wire))
    return ObjectType(name, tuple(members))


def types() -> tuple[ObjectType | EnumType, ...]:
    """Every type ``object-add``'s ``arg-type`` reaches."""
    from sevlaunch.qmp.introspect import EnumType, Member, ObjectType, member

    memory_backend = _memory_backend()
    variants = {
        "memory-backend-ram": ObjectType("MemoryBackendProperties", memory_backend),
        "memory-backend-memfd": ObjectType(
            "MemoryBackendMemfdProperties",
            (*memory_backend, member("*hugetlb", "bool"), member("*seal", "bool")),
        ),
        "memory-backend-file": ObjectType(
            "MemoryBackendFileProperties",
            (*memory_backend, member("mem-path", "str"), member("*discard-data", "bool")),
        ),
        "secret": ObjectType(
            "SecretProperties",
            (
                member("*data", "str"),
                member("*file", "str"),
                member("*format", "str"),
                member("*keyid", "str"),
                member("*iv", "str"),
            ),
        ),
        "sev-guest": _sev_guest(),
        "sev-snp-guest": _sev_guest("SevSnpGuestProperties", SNP_GUEST_PROPS),
    }
    union = ObjectType(
        OBJECT_OPTIONS,
        (Member("qom-type", OBJECT_TYPE), Member("id", "str")),
        tag="qom-type",
        variants=tuple((case, t.name) for case, t in variants.items()),
    )
    return (
        union,
        EnumType(OBJECT_TYPE, tuple(variants)),
        EnumType("OnOffAuto", ("auto", "on", "off")),
        *{t.name: t for t in variants.values()}.values(),
    )
