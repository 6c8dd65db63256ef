"""The QMP a management layer asks before it uses a hypervisor: what it is and what it has.

libvirt probes every emulator binary once (``-machine none,accel=kvm:tcg -qmp ... -daemonize``)
and caches what it learns: target, KVM, QOM types and their properties, machines, CPU models,
command-line options, the QAPI schema, SEV capabilities. The answers here describe exactly
what ``sevlaunch-vmm`` emulates, in QEMU's reply shapes: a list where QEMU answers a list
(libvirt fails the probe or the domain otherwise), QEMU's error classes where QEMU refuses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import QMPServer
from sevlaunch.vmm import qapi_objects
from sevlaunch.vmm.cmdline import VmConfig

Args = dict[str, Any]
KVM_DEVICE = "/dev/kvm"
ARCH = "x86_64"
#: QEMU 9.1's versioned machine types that the emulated machine answers to, newest first.
MACHINE_VERSION = "9.1"
MAX_CPUS = {"q35": 4096, "i440fx": 1024}
#: CPU models the VMM knows the reset state of (formats.vmsa's EPYC generations and QEMU's
#: default), as QEMU's query-cpu-definitions names them.
CPU_MODELS = ("qemu64", "EPYC", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin")

#: The QOM types of the emulated machine and their parents (qom-list-types).
QOM_TYPES: Mapping[str, str] = {
    "sev-guest": "sev-common",
    "sev-snp-guest": "sev-common",
    "sev-common": "confidential-guest-support",
    "confidential-guest-support": "object",
    "memory-backend-ram": "memory-backend",
    "memory-backend-memfd": "memory-backend",
    "memory-backend-file": "memory-backend",
    "memory-backend": "object",
    "secret": "secret_common",
    "secret_common": "object",
    f"pc-q35-{MACHINE_VERSION}-machine": "generic-pc-machine",
    f"pc-i440fx-{MACHINE_VERSION}-machine": "generic-pc-machine",
    "none-machine": "machine",
    "isa-serial": "isa-device",
    "pcie-root-port": "pcie-root-port-base",
    "virtio-blk-pci": "virtio-blk-pci-base",
    "virtio-blk-pci-non-transitional": "virtio-blk-pci-base",
    "virtio-blk-pci-transitional": "virtio-blk-pci-base",
    "virtio-blk-pci-base": "virtio-pci",
    "pcie-root-port-base": "pci-bridge",
    "object": "",
}
#: Properties of the memory backends libvirt asks about (qom-list-properties).
_BACKEND_PROPS = (
    ("size", "int"),
    ("share", "bool"),
    ("prealloc", "bool"),
    ("dump", "bool"),
    ("merge", "bool"),
    ("x-use-canonical-path-for-ramblock-id", "bool"),
)
#: What every machine type has (hw/core/machine.c) and the VMM reads or accepts.
_MACHINE_PROPS = (
    ("confidential-guest-support", "link<confidential-guest-support>"),
    ("memory-encryption", "string"),
    ("memory-backend", "link<memory-backend>"),
    ("dump-guest-core", "bool"),
    ("usb", "bool"),
    ("kernel", "string"),
    ("initrd", "string"),
    ("append", "string"),
)
QOM_PROPERTIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "none-machine": _MACHINE_PROPS,
    f"pc-q35-{MACHINE_VERSION}-machine": _MACHINE_PROPS,
    f"pc-i440fx-{MACHINE_VERSION}-machine": _MACHINE_PROPS,
    "memory-backend-ram": _BACKEND_PROPS,
    "memory-backend-memfd": (*_BACKEND_PROPS, ("seal", "bool"), ("hugetlb", "bool")),
    "memory-backend-file": (
        *_BACKEND_PROPS,
        ("mem-path", "string"),
        ("align", "int"),
        ("discard-data", "bool"),
    ),
    "sev-guest": tuple((name, kind) for name, kind in qapi_objects.SEV_GUEST_PROPERTIES),
    "sev-snp-guest": qapi_objects.SEV_SNP_GUEST_PROPERTIES,
}
DEVICE_PROPERTIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "isa-serial": (("chardev", "str"), ("index", "uint32"), ("iobase", "uint32")),
    "virtio-blk-pci": (
        ("drive", "str"),
        ("bootindex", "int32"),
        ("serial", "str"),
    ),
}


def accel_of(config: VmConfig) -> str:
    """The accelerator list QEMU tries: ``-accel`` (or ``-enable-kvm``), else ``-machine
    accel=``, else QEMU's default, ``tcg``."""
    return config.accel or dict(config.machine_props).get("accel", "tcg")


def kvm_state(accel: str, device: str = KVM_DEVICE) -> dict[str, bool]:
    """``query-kvm``: present when /dev/kvm exists; enabled when, trying the accelerators in
    order as QEMU does, KVM comes before TCG and /dev/kvm opens read-write for this process
    (what kvm_init needs). The VMM emulates SEV without KVM, but reports what QEMU would."""
    present = os.path.exists(device)
    for name in accel.split(":"):
        if name == "kvm" and present and _opens(device):
            return {"enabled": True, "present": present}
        if name == "tcg":
            break
    return {"enabled": False, "present": present}


def _opens(device: str) -> bool:
    try:
        os.close(os.open(device, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def machines(default_ram_id: str = "pc.ram") -> list[dict[str, Any]]:
    """``query-machines``: q35 and i440fx of QEMU 9.1, and ``none``."""
    out = []
    for family, alias in (("q35", "q35"), ("i440fx", "pc")):
        entry = {
            "name": f"pc-{family}-{MACHINE_VERSION}",
            "alias": alias,
            "cpu-max": MAX_CPUS[family],
            "hotpluggable-cpus": True,
            "numa-mem-supported": False,
            "deprecated": False,
            "default-cpu-type": "qemu64-x86_64-cpu",
            "default-ram-id": default_ram_id,
            "acpi": True,
        }
        if family == "i440fx":
            entry["is-default"] = True
        out.append(entry)
    out.append(
        {
            "name": "none",
            "cpu-max": 1,
            "hotpluggable-cpus": False,
            "numa-mem-supported": False,
            "deprecated": False,
            "acpi": False,
        }
    )
    return out


def cpu_definitions() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "typename": f"{name}-x86_64-cpu",
            "unavailable-features": [],
            "static": False,
            "migration-safe": True,
            "deprecated": False,
        }
        for name in CPU_MODELS
    ]


#: query-command-line-options: the options the VMM parses, with the parameters it reads.
COMMAND_LINE_OPTIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "machine": (
        ("type", "string"),
        ("accel", "string"),
        ("confidential-guest-support", "string"),
        ("memory-backend", "string"),
    ),
    "smp-opts": (
        ("cpus", "number"),
        ("sockets", "number"),
        ("cores", "number"),
        ("threads", "number"),
        ("maxcpus", "number"),
    ),
    "overcommit": (("mem-lock", "boolean"), ("cpu-pm", "boolean")),
    "msg": (("timestamp", "boolean"), ("guest-name", "boolean")),
    "name": (("guest", "string"), ("debug-threads", "boolean")),
    "chardev": (),
    "drive": (),
    "add-fd": (("fd", "number"), ("set", "number"), ("opaque", "string")),
}


@dataclass
class ProbeCommands:
    """The probe's commands; ``accel`` is the ``-machine``/``-accel`` accelerator list."""

    accel: str = "tcg"
    events: Sequence[str] = ()

    def register(self, server: QMPServer) -> None:
        server.register("query-target", self.query_target)
        server.register("query-kvm", self.query_kvm)
        server.register(
            "qom-list-types", self.qom_list_types, {"*implements": "str", "*abstract": "bool"}
        )
        server.register("qom-list-properties", self.qom_list_properties, {"typename": "str"})
        server.register("device-list-properties", self.device_list_properties, {"typename": "str"})
        server.register("query-machines", self.query_machines, {"*compat-props": "bool"})
        server.register("query-cpu-definitions", self.query_cpu_definitions)
        server.register("query-tpm-models", self.empty_list)
        server.register("query-tpm-types", self.empty_list)
        server.register(
            "query-command-line-options", self.query_command_line_options, {"*option": "str"}
        )
        server.register("query-qmp-schema", self.query_qmp_schema)
        self._server = server

    async def query_target(self, _args: Args) -> object:
        return {"arch": ARCH}

    async def query_kvm(self, _args: Args) -> object:
        return kvm_state(self.accel)

    async def qom_list_types(self, args: Args) -> object:
        implements = args.get("implements")
        names = [n for n in QOM_TYPES if implements is None or _implements(n, implements)]
        return [{"name": n, **({"parent": QOM_TYPES[n]} if QOM_TYPES[n] else {})} for n in names]

    async def qom_list_properties(self, args: Args) -> object:
        name = args["typename"]
        if name not in QOM_TYPES:
            raise QmpCommandError(f"Class '{name}' not found")
        return [{"name": p, "type": t} for p, t in QOM_PROPERTIES.get(name, ())]

    async def device_list_properties(self, args: Args) -> object:
        name = args["typename"]
        if name not in DEVICE_PROPERTIES:
            raise QmpCommandError(f"Device '{name}' not found", "DeviceNotFound")
        return [{"name": p, "type": t} for p, t in DEVICE_PROPERTIES[name]]

    async def query_machines(self, _args: Args) -> object:
        return machines()

    async def query_cpu_definitions(self, _args: Args) -> object:
        return cpu_definitions()

    async def empty_list(self, _args: Args) -> object:
        return []

    async def query_command_line_options(self, args: Args) -> object:
        wanted = args.get("option")
        if wanted is not None and wanted not in COMMAND_LINE_OPTIONS:
            raise QmpCommandError(f"invalid option name: {wanted}")
        return [
            {"option": o, "parameters": [{"name": n, "type": t} for n, t in params]}
            for o, params in COMMAND_LINE_OPTIONS.items()
            if wanted in (None, o)
        ]

    async def query_qmp_schema(self, _args: Args) -> object:
        from sevlaunch.qmp.introspect import CommandInfo, schema_info  # for probes only

        commands = [
            CommandInfo(spec.name, spec.args, allow_oob=spec.allow_oob)
            for spec in self._server.command_specs
        ]
        commands.append(CommandInfo("object-add", qapi_objects.OBJECT_OPTIONS))
        return schema_info(commands, self.events, qapi_objects.types())


def _implements(name: str, interface: str) -> bool:
    while name:
        if name == interface:
            return True
        name = QOM_TYPES.get(name, "")
    return False
