"""The domain dataclasses refuse at construction what libvirt would refuse: libvirt's name
rules, bare CPU model names, values XML cannot carry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import (
    CpuConfig,
    DiskConfig,
    Domain,
    LaunchSecurity,
    Loader,
    OsConfig,
    SerialConfig,
)

# libvirt tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.xml (as libvirt


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (LaunchSecurity, "failed to get launch security policy"),
        (lambda: LaunchSecurity(type="sev-snp", policy=1, dh_cert="x"), "only valid for"),
        (lambda: LaunchSecurity(policy=1, cbitpos=2**32), "32-bit unsigned"),
        (lambda: Loader(path="relative/OVMF.fd"), "must be an absolute path"),
        (lambda: DiskConfig(target_dev="disk0"), "invalid disk target"),
        (lambda: SerialConfig(type="file"), "Missing source path"),
        (lambda: OsConfig(cmdline="a\x00b"), "character XML cannot carry"),
        (lambda: Domain(name="x", memory_kib=0), "Memory size must be specified"),
        (lambda: Domain(name="x", memory_kib=1, current_memory_kib=2), "exceeds memory"),
        (lambda: Domain(name="x", memory_kib=1, type="bogus"), "Invalid value for attribute"),
    ],
)
def test_constructors_refuse_what_cannot_be_written(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(DomainXMLError, match=message):
        build()


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("..", "XML error", "name '..' cannot be used"),
        (".", "XML error", "name '.' cannot be used"),
        ("\t ", "missing name information", "empty or only white space"),
        ("a/b", "XML error", "name a/b cannot contain '/'"),
        ("a\nb", "XML error", "invalid char in name: \\n"),
        ("x" * (1 << 20), "XML error", "name of 1048576 bytes is too long"),
    ],
)
def test_libvirts_name_rules(name: str, kind: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain(name=name, memory_kib=1024)
    assert caught.value.kind == kind
    assert message in caught.value.detail
    assert caught.value.field == "name"


def test_names_libvirt_takes_are_taken() -> None:
    for name in ("x" * 247, "é" * 123, "a b", "x..y", "-dash", "a,b", "a'b", "&"):
        assert Domain(name=name, memory_kib=1024).name == name


@pytest.mark.parametrize("model", ["qemu64,+x2apic,hv-passthrough=on", "a=b", "-x", "EPYC Rome"])
def test_a_cpu_model_is_a_bare_model_name(model: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        CpuConfig(mode="custom", model=model)
    assert str(caught.value) == (
        f"unsupported configuration: CPU model {model} is not supported by hypervisor"
    )
