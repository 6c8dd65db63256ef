"""The capability probe's answers: truthful, in QEMU's shapes, and what libvirt's queries need."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import QMPServer
from sevlaunch.vmm.cmdline import parse_cmdline
from sevlaunch.vmm.machine import EVENTS
from sevlaunch.vmm.qmp_commands import VmmCommands
from sevlaunch.vmm.qmp_probe import ProbeCommands, accel_of, kvm_state
from sevlaunch.vmm.qmp_runtime import RuntimeCommands
from tests.qmp.schema_walk import resolves


def _probe_server() -> QMPServer:
    """The commands a ``-machine none`` VMM serves, registered as main.run registers them."""
    server = QMPServer()
    VmmCommands(None, None, None, "no device", lambda: None).register(server)
    RuntimeCommands(parse_cmdline(["-machine", "none"])).register(server)
    ProbeCommands("kvm:tcg", EVENTS).register(server)
    return server


def _call(server: QMPServer, name: str, args: dict[str, Any] | None = None) -> Any:
    spec = next(s for s in server.command_specs if s.name == name)

    async def go() -> Any:
        return await spec.handler(args or {})

    return asyncio.run(go())


def test_kvm_is_what_dev_kvm_allows(tmp_path: Path) -> None:
    missing = tmp_path / "kvm"
    assert kvm_state("kvm:tcg", str(missing)) == {"enabled": False, "present": False}
    missing.write_bytes(b"")  # opens read-write: KVM would initialise
    assert kvm_state("kvm:tcg", str(missing)) == {"enabled": True, "present": True}
    assert kvm_state("kvm", str(missing)) == {"enabled": True, "present": True}
    # QEMU tries accelerators in order: TCG first never reaches KVM
    assert kvm_state("tcg:kvm", str(missing)) == {"enabled": False, "present": True}
    assert kvm_state("tcg", str(missing)) == {"enabled": False, "present": True}
    unopenable = tmp_path / "dir"
    unopenable.mkdir()  # exists, but open(O_RDWR) fails as for a user not in group kvm
    assert kvm_state("kvm:tcg", str(unopenable)) == {"enabled": False, "present": True}


@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="this machine has no /dev/kvm")
def test_kvm_on_this_machine_matches_a_direct_open() -> None:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        opens = True
    except OSError:
        opens = False
    assert kvm_state("kvm:tcg") == {"enabled": opens, "present": True}


def test_accelerator_comes_from_accel_option_or_machine() -> None:
    assert accel_of(parse_cmdline(["-machine", "none,accel=kvm:tcg"])) == "kvm:tcg"
    assert accel_of(parse_cmdline(["-machine", "q35", "-accel", "kvm"])) == "kvm"
    assert accel_of(parse_cmdline(["-enable-kvm"])) == "kvm"
    assert accel_of(parse_cmdline([])) == "tcg"


def test_sev_guest_and_its_kernel_hashes_are_advertised() -> None:
    server = _probe_server()
    types = _call(server, "qom-list-types")
    assert {"name": "sev-guest", "parent": "sev-common"} in types
    assert all(isinstance(t, dict) and "name" in t for t in types)
    schema = _call(server, "query-qmp-schema")
    # libvirt's virQEMUCapsQMPSchemaQueries entries the VMM must satisfy, and some it must not
    assert resolves(schema, "object-add/arg-type/+sev-guest/kernel-hashes")
    assert resolves(schema, "object-add/arg-type/qom-type/^secret")
    assert resolves(schema, "query-named-block-nodes/arg-type/flat")
    assert not resolves(schema, "device_add/$json-cli-hotplug")
    assert not resolves(schema, "blockdev-add/arg-type/+nvme")
    names = {e["name"] for e in schema if e["meta-type"] == "command"}
    assert {"sev-inject-launch-secret", "query-sev-capabilities", "qom-list"} <= names
    assert {e["name"] for e in schema if e["meta-type"] == "event"} == set(EVENTS)


def test_implements_filters_by_ancestry() -> None:
    types = _call(_probe_server(), "qom-list-types", {"implements": "confidential-guest-support"})
    assert {t["name"] for t in types} == {
        "sev-guest",
        "sev-snp-guest",
        "sev-common",
        "confidential-guest-support",
    }


def test_properties_are_lists_and_unknown_classes_errors() -> None:
    server = _probe_server()
    props = _call(server, "qom-list-properties", {"typename": "memory-backend-file"})
    assert isinstance(props, list)
    assert {"name": "mem-path", "type": "string"} in props
    sev = {p["name"] for p in _call(server, "qom-list-properties", {"typename": "sev-guest"})}
    assert {"cbitpos", "reduced-phys-bits", "kernel-hashes", "dh-cert-file"} <= sev
    machine = _call(server, "qom-list-properties", {"typename": "none-machine"})
    assert any(p["name"] == "confidential-guest-support" for p in machine)
    with pytest.raises(QmpCommandError, match="Class 'tdx-guest' not found") as exc:
        _call(server, "qom-list-properties", {"typename": "tdx-guest"})
    assert exc.value.error_class == "GenericError"


def test_device_properties_answer_device_not_found_for_models_not_emulated() -> None:
    server = _probe_server()
    with pytest.raises(QmpCommandError) as exc:
        _call(server, "device-list-properties", {"typename": "virtio-net-pci"})
    assert exc.value.error_class == "DeviceNotFound"
    assert exc.value.desc == "Device 'virtio-net-pci' not found"
    blk = _call(server, "device-list-properties", {"typename": "virtio-blk-pci"})
    assert {"name": "drive", "type": "str"} in blk


def test_machines_are_q35_and_i440fx_of_the_reported_version() -> None:
    machines = _call(_probe_server(), "query-machines")
    by_name = {m["name"]: m for m in machines}
    assert by_name["pc-q35-9.1"]["alias"] == "q35"
    assert by_name["pc-i440fx-9.1"]["is-default"] is True
    assert by_name["pc-q35-9.1"]["default-ram-id"] == "pc.ram"
    assert sum(bool(m.get("is-default")) for m in machines) == 1
    assert "none" in by_name


def test_command_line_options_filter_and_refuse_unknown() -> None:
    server = _probe_server()
    everything = _call(server, "query-command-line-options")
    assert {o["option"] for o in everything} >= {"machine", "overcommit", "add-fd"}
    only = _call(server, "query-command-line-options", {"option": "overcommit"})
    assert [o["option"] for o in only] == ["overcommit"]
    with pytest.raises(QmpCommandError, match="invalid option name: spice"):
        _call(server, "query-command-line-options", {"option": "spice"})


def test_list_answers_are_lists() -> None:
    """libvirt fails a probe (or kills a domain) on a dict where QEMU answers a list."""
    server = _probe_server()
    for name in (
        "query-cpu-definitions",
        "query-tpm-models",
        "query-tpm-types",
        "query-migrate-capabilities",
        "query-jobs",
        "query-chardev",
        "query-block",
        "query-named-block-nodes",
        "query-hotpluggable-cpus",
        "query-cpus-fast",
    ):
        assert isinstance(_call(server, name), list), name
    assert _call(server, "query-target") == {"arch": "x86_64"}
