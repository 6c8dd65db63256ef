"""The QMP a management layer sends to a running hypervisor besides SEV: devices, CPUs, jobs.

libvirt asks these while it starts a domain and again when it reconnects after a restart
(migration capabilities, character devices, vCPUs, block nodes, QOM paths, jobs) and gives
up on the domain, or kills it, when a reply is not in QEMU's shape; a device missing from
``qom-list /machine/peripheral`` is taken as unplugged and dropped from the live XML. The
answers describe the emulated machine and its command line; nothing is invented beyond it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import QMPServer
from sevlaunch.vmm.cmdline import BlockdevConfig, ChardevConfig, VmConfig
from sevlaunch.vmm.cmdline.devices import MODELS

Args = dict[str, Any]

#: QEMU's MigrationCapability values the VMM knows; none changes anything (SEV guests do
#: not migrate: QEMU blocks it, "SEV: Migration is not implemented").
MIGRATION_CAPABILITIES = ("xbzrle", "events", "pause-before-switchover")
_PROPS = {"type": "string", "realized": "bool", "hotplugged": "bool"}


@dataclass
class QomTree:
    """QOM paths of the emulated machine: vCPUs under /machine/unattached, devices with an
    id under /machine/peripheral, the others under /machine/peripheral-anon."""

    config: VmConfig

    def cpu_type(self) -> str:
        return f"{self.config.cpu_model or 'qemu64'}-x86_64-cpu"

    def children(self, path: str) -> dict[str, str] | None:
        """name → child type of the container at ``path``, or None when it is no container."""
        devices = self.config.devices
        if path == "/machine":
            return dict.fromkeys(("peripheral", "peripheral-anon", "unattached"), "container")
        if path == "/machine/peripheral":
            return {d.id: d.driver for d in devices if d.id is not None}
        if path == "/machine/peripheral-anon":
            anon = [d for d in devices if d.id is None]
            return {f"device[{i}]": d.driver for i, d in enumerate(anon)}
        if path == "/machine/unattached":
            return {f"device[{i}]": self.cpu_type() for i in range(self.config.smp.cpus)}
        return None

    def object_type(self, path: str) -> str | None:
        if path in ("/machine/peripheral", "/machine/peripheral-anon", "/machine/unattached"):
            return "container"
        if path == "/machine":
            machine = self.config.machine_type or "pc"
            return f"{machine}-machine"
        parent, _, name = path.rpartition("/")
        siblings = self.children(parent)
        return None if siblings is None else siblings.get(name)

    def list(self, path: str) -> list[dict[str, str]]:
        kind = self.object_type(path)
        if kind is None:
            raise QmpCommandError(f"Device '{path}' not found", "DeviceNotFound")
        out = [{"name": "type", "type": "string"}]
        for name, child in (self.children(path) or {}).items():
            out.append({"name": name, "type": f"child<{child}>"})
        if kind in MODELS or kind == self.cpu_type():
            out += [{"name": n, "type": t} for n, t in _PROPS.items() if n != "type"]
        return out

    def get(self, path: str, prop: str) -> object:
        kind = self.object_type(path)
        if kind is None:
            raise QmpCommandError(f"Device '{path}' not found", "DeviceNotFound")
        values: dict[str, object] = {"type": kind}
        if kind in MODELS or kind == self.cpu_type():
            values.update(realized=True, hotplugged=False)
        if prop not in values:
            raise QmpCommandError(f"Property '{kind}.{prop}' not found")
        return values[prop]


@dataclass
class RuntimeCommands:
    """``ptys`` maps a pty chardev's id to the pseudo-terminal the console opened for it."""

    config: VmConfig
    ptys: Mapping[str, str] = field(default_factory=dict)
    _migration: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(MIGRATION_CAPABILITIES, False)
    )

    def register(self, server: QMPServer) -> None:
        tree = QomTree(self.config)
        server.register("query-migrate-capabilities", self.query_migrate_capabilities)
        server.register(
            "migrate-set-capabilities", self.migrate_set_capabilities, {"capabilities": "array"}
        )
        server.register("query-chardev", self.query_chardev)
        server.register("query-hotpluggable-cpus", self.query_hotpluggable_cpus)
        server.register("query-cpus-fast", self.query_cpus_fast)
        server.register("qom-list", lambda a: _async(tree.list(a["path"])), {"path": "str"})
        server.register(
            "qom-get",
            lambda a: _async(tree.get(a["path"], a["property"])),
            {"path": "str", "property": "str"},
        )
        server.register("query-jobs", self.empty_list)
        server.register("query-block-jobs", self.empty_list)
        server.register("query-iothreads", self.empty_list)
        server.register("query-named-block-nodes", self.query_named_block_nodes, {"*flat": "bool"})
        server.register("query-block", self.query_block)

    async def empty_list(self, _args: Args) -> object:
        return []

    async def query_migrate_capabilities(self, _args: Args) -> object:
        return [{"capability": c, "state": s} for c, s in self._migration.items()]

    async def migrate_set_capabilities(self, args: Args) -> object:
        changes: dict[str, bool] = {}
        for i, item in enumerate(args["capabilities"]):
            where = f"capabilities[{i}]"
            if not isinstance(item, dict):
                raise QmpCommandError(f"Invalid parameter type for '{where}', expected: object")
            name, state = item.get("capability"), item.get("state")
            if name not in self._migration:
                raise QmpCommandError(
                    f"Parameter '{where}.capability' does not accept value '{name}'"
                )
            if not isinstance(state, bool):
                raise QmpCommandError(
                    f"Invalid parameter type for '{where}.state', expected: boolean"
                )
            changes[name] = state
        self._migration.update(changes)
        return None

    async def query_chardev(self, _args: Args) -> object:
        return [
            {"frontend-open": True, "filename": self._filename(c), "label": c.id}
            for c in self.config.chardevs
        ]

    def _filename(self, chardev: ChardevConfig) -> str:
        """query-chardev's ``filename`` as QEMU shows each backend (libvirt reads a pty's
        path from it: ``pty:/dev/pts/N``)."""
        if chardev.backend == "pty":
            return f"pty:{self.ptys.get(chardev.id, '')}"
        if chardev.backend == "socket":
            where = chardev.path if chardev.path is not None else f"fd={chardev.fd}"
            return f"unix:{where},server=on" if chardev.server else f"unix:{where}"
        return chardev.backend  # QEMU's default: the backend's type name (file, null)

    def _cpu_props(self, index: int) -> dict[str, int]:
        smp = self.config.smp
        per_socket = smp.cores * smp.threads
        return {
            "core-id": index % per_socket // smp.threads,
            "thread-id": index % smp.threads,
            "socket-id": index // per_socket,
        }

    async def query_hotpluggable_cpus(self, _args: Args) -> object:
        cpu_type = QomTree(self.config).cpu_type()
        return [
            {
                "props": self._cpu_props(i),
                "vcpus-count": 1,
                "qom-path": f"/machine/unattached/device[{i}]",
                "type": cpu_type,
            }
            for i in reversed(range(self.config.smp.cpus))
        ]

    async def query_cpus_fast(self, _args: Args) -> object:
        return [
            {
                "thread-id": os.getpid(),  # one thread runs every emulated vCPU
                "props": self._cpu_props(i),
                "qom-path": f"/machine/unattached/device[{i}]",
                "cpu-index": i,
                "target": "x86_64",
            }
            for i in range(self.config.smp.cpus)
        ]

    def _disks(self) -> Iterator[tuple[str, BlockdevConfig]]:
        """(device id, format node) of every -device disk on a -blockdev chain."""
        nodes = {b.node_name: b for b in self.config.blockdevs}
        for dev in self.config.devices:
            node = nodes.get(str(dev.prop("drive")))
            if MODELS[dev.driver].disk and node is not None and dev.id is not None:
                yield dev.id, node

    def _image(self, node: BlockdevConfig) -> BlockdevConfig:
        nodes = {b.node_name: b for b in self.config.blockdevs}
        while node.file is not None and node.file in nodes:
            node = nodes[node.file]
        return node

    async def query_block(self, _args: Args) -> object:
        return [
            {
                "device": "",
                "qdev": f"/machine/peripheral/{dev_id}/virtio-backend",
                "locked": False,
                "removable": False,
                "inserted": _node_info(node, self._image(node)),
                "type": "unknown",
            }
            for dev_id, node in self._disks()
        ]

    async def query_named_block_nodes(self, _args: Args) -> object:
        return [_node_info(b, self._image(b)) for b in self.config.blockdevs]


def _node_info(node: BlockdevConfig, image: BlockdevConfig) -> dict[str, Any]:
    """QEMU's BlockDeviceInfo for one node, sized from the image file behind it."""
    filename = image.filename or ""
    try:
        size = os.stat(filename).st_size
    except OSError:
        size = 0
    return {
        "iops_rd": 0,
        "detect_zeroes": "off",
        "image": {
            "virtual-size": size,
            "filename": filename,
            "format": node.driver,
            "actual-size": size,
            "dirty-flag": False,
        },
        "iops_wr": 0,
        "ro": node.read_only,
        "node-name": node.node_name,
        "backing_file_depth": 0,
        "drv": node.driver,
        "iops": 0,
        "bps_wr": 0,
        "write_threshold": 0,
        "encrypted": False,
        "bps": 0,
        "bps_rd": 0,
        "cache": {"no-flush": False, "direct": False, "writeback": True},
        "file": filename,
    }


async def _async(value: object) -> object:
    return value
