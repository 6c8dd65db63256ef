"""What libvirt asks a running domain's hypervisor at start and reconnect, answered from the
command line it gave."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import QMPServer
from sevlaunch.vmm.cmdline import VmConfig, parse_cmdline
from sevlaunch.vmm.qmp_runtime import QomTree, RuntimeCommands
from tests.vmm import libvirt_argv


@pytest.fixture
def config(tmp_path: Path) -> Iterator[VmConfig]:
    read, write = os.pipe()
    (tmp_path / "root.img").write_bytes(bytes(4096))
    argv = libvirt_argv.sample(tmp_path, read, write, godh=False)
    yield parse_cmdline([*argv[:-6], "-smp", "4,sockets=2,cores=2,threads=1", *argv[-6:]])
    os.close(read)
    os.close(write)


def _call(config: VmConfig, name: str, args: dict[str, Any] | None = None) -> Any:
    server = QMPServer()
    RuntimeCommands(config).register(server)
    spec = next(s for s in server.command_specs if s.name == name)

    async def go() -> Any:
        return await spec.handler(args or {})

    return asyncio.run(go())


def test_every_device_with_an_id_is_under_peripheral(config: VmConfig) -> None:
    """libvirt drops a device from the live XML when qom-list does not show it."""
    listing = _call(config, "qom-list", {"path": "/machine/peripheral"})
    children = {e["name"]: e["type"] for e in listing if e["type"].startswith("child<")}
    assert children == {
        "pci.1": "child<pcie-root-port>",
        "pci.2": "child<pcie-root-port>",
        "virtio-disk0": "child<virtio-blk-pci>",
        "serial0": "child<isa-serial>",
    }
    assert {"name": "type", "type": "string"} in listing


def test_vcpus_are_unattached_devices_with_topology(config: VmConfig) -> None:
    cpus = _call(config, "query-cpus-fast")
    assert [c["cpu-index"] for c in cpus] == [0, 1, 2, 3]
    assert [c["props"]["socket-id"] for c in cpus] == [0, 0, 1, 1]
    assert [c["props"]["core-id"] for c in cpus] == [0, 1, 0, 1]
    hotplug = _call(config, "query-hotpluggable-cpus")
    assert sorted(h["qom-path"] for h in hotplug) == sorted(c["qom-path"] for c in cpus)
    cpu = _call(config, "qom-list", {"path": cpus[0]["qom-path"]})
    assert {"name": "realized", "type": "bool"} in cpu
    # no feature-words: libvirt then skips comparing guest CPU features it cannot have
    assert all(p["name"] != "feature-words" for p in cpu)


def test_unknown_qom_paths_are_device_not_found(config: VmConfig) -> None:
    with pytest.raises(QmpCommandError) as exc:
        _call(config, "qom-list", {"path": "/machine/peripheral/net0"})
    assert exc.value.error_class == "DeviceNotFound"
    with pytest.raises(QmpCommandError, match=r"Property 'isa-serial\.nope' not found"):
        _call(config, "qom-get", {"path": "/machine/peripheral/serial0", "property": "nope"})
    assert _call(
        config, "qom-get", {"path": "/machine/peripheral/serial0", "property": "type"}
    ) == ("isa-serial")


def test_block_answers_name_the_disk_and_its_nodes(config: VmConfig, tmp_path: Path) -> None:
    block = _call(config, "query-block")
    assert len(block) == 1
    entry = block[0]
    # the keys qemuMonitorJSONGetBlockInfo requires: device, qdev or device, removable
    assert entry["device"] == ""
    assert entry["qdev"] == "/machine/peripheral/virtio-disk0/virtio-backend"
    assert entry["removable"] is False
    assert entry["inserted"]["node-name"] == "libvirt-1-format"
    nodes = {n["node-name"]: n for n in _call(config, "query-named-block-nodes", {"flat": True})}
    assert set(nodes) == {"libvirt-1-storage", "libvirt-1-format"}
    assert nodes["libvirt-1-format"]["image"]["virtual-size"] == 4096
    assert nodes["libvirt-1-storage"]["file"] == str(tmp_path / "root.img")


def test_chardevs_are_listed_with_qemus_filenames(config: VmConfig) -> None:
    chardevs = {c["label"]: c["filename"] for c in _call(config, "query-chardev")}
    assert chardevs["charserial0"] == "file"
    assert chardevs["charmonitor"].startswith("unix:")


def test_migration_capabilities_are_set_and_checked(config: VmConfig) -> None:
    server = QMPServer()
    RuntimeCommands(config).register(server)
    specs = {s.name: s for s in server.command_specs}

    def call(name: str, args: dict[str, Any] | None = None) -> Any:

        async def go() -> Any:
            return await specs[name].handler(args or {})

        return asyncio.run(go())

    call("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    states = {c["capability"]: c["state"] for c in call("query-migrate-capabilities")}
    assert states["events"] is True
    assert states["xbzrle"] is False
    bad = [
        ([{"capability": "warp", "state": True}], "does not accept value 'warp'"),
        ([{"capability": "events", "state": "yes"}], "capabilities\\[0\\].state"),
        (["events"], "expected: object"),
    ]
    for caps, message in bad:
        with pytest.raises(QmpCommandError, match=message):
            call("migrate-set-capabilities", {"capabilities": caps})


def test_the_tree_types_the_machine() -> None:
    tree = QomTree(parse_cmdline(["-machine", "pc-q35-9.1"]))
    assert tree.object_type("/machine") == "pc-q35-9.1-machine"
    assert tree.object_type("/machine/unattached/device[0]") == "qemu64-x86_64-cpu"
    assert tree.object_type("/machine/unattached/device[1]") is None


def test_a_pty_chardev_shows_its_terminal() -> None:
    """libvirt learns a <serial type='pty'>'s path from query-chardev (qemuProcessLookupPTYs)."""
    config = parse_cmdline(
        ["-chardev", "pty,id=charserial0", "-device", "isa-serial,chardev=charserial0,id=serial0"]
    )
    server = QMPServer()
    RuntimeCommands(config, {"charserial0": "/dev/pts/9"}).register(server)
    spec = next(s for s in server.command_specs if s.name == "query-chardev")

    async def go() -> Any:
        return await spec.handler({})

    assert asyncio.run(go()) == [
        {"frontend-open": True, "filename": "pty:/dev/pts/9", "label": "charserial0"}
    ]
