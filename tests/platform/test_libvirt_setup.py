"""install-libvirt / uninstall-libvirt on a scratch root: each change made, recorded, reverted."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import HostSetupError
from sevlaunch.platform.libvirt_setup import (
    BEGIN,
    Identity,
    Layout,
    Request,
    add_block,
    configured_user,
    install,
    interpreter,
    remove_block,
    uninstall,
    unreachable,
)

QEMU_CONF = '#user = "libvirt-qemu"\n#group = "libvirt-qemu"\nsecurity_driver = "none"\n'
NOBODY = "nobody"
NOGROUP = grp.getgrgid(pwd.getpwnam(NOBODY).pw_gid).gr_name


@dataclass
class Host:
    """A scratch host: an open directory (as /run or /opt would be) with a platform socket,
    an emulator script, qemu.conf, libvirt's capability cache and the manifest's place."""

    root: Path
    layout: Layout
    socket: Path
    emulator: Path

    def request(self, **changes: object) -> Request:
        return Request(socket=self.socket, emulator=self.emulator, **changes)  # type: ignore[arg-type]


@pytest.fixture
def host() -> Iterator[Host]:
    root = Path(tempfile.mkdtemp(prefix="sevlv-", dir="/tmp"))
    root.chmod(0o755)  # like /run/sevlaunch or /opt: others may pass through
    (root / "etc").mkdir()
    (root / "cache").mkdir()
    conf = root / "etc" / "qemu.conf"
    conf.write_text(QEMU_CONF)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "platform.sock"))
    (root / "platform.sock").chmod(0o600)
    emulator = root / "sevlaunch-vmm"
    emulator.write_text("#!/bin/sh\nexit 0\n")
    emulator.chmod(0o755)
    layout = Layout(
        dev_sev=root / "dev-sev",
        qemu_conf=conf,
        caps_cache=root / "cache",
        manifest=root / "state" / "libvirt-install.json",
    )
    yield Host(root, layout, root / "platform.sock", emulator)
    listener.close()
    shutil.rmtree(root, ignore_errors=True)


def _nobody_conf(host: Host) -> None:
    host.layout.qemu_conf.write_text(QEMU_CONF + f'user = "{NOBODY}"\ngroup = "{NOGROUP}"\n')


def test_install_then_uninstall_leaves_the_host_as_it_was(host: Host) -> None:
    _nobody_conf(host)
    conf_before = host.layout.qemu_conf.read_bytes()
    cached = host.layout.caps_cache / (
        hashlib.sha256(str(host.emulator).encode()).hexdigest() + ".xml"
    )
    cached.write_text("<qemuCaps/>")
    lines: list[str] = []
    manifest = install(host.request(stdio_file=True), host.layout, lines.append)
    assert os.readlink(host.layout.dev_sev) == str(host.socket)
    assert host.layout.qemu_conf.read_text().endswith(
        f'{BEGIN}\nstdio_handler = "file"\n# END sevlaunch platform install-libvirt\n'
    )
    socket_st = host.socket.stat()
    assert stat.S_IMODE(socket_st.st_mode) == 0o660
    assert socket_st.st_gid == grp.getgrnam(NOGROUP).gr_gid
    assert not cached.exists()  # libvirt probes the emulator again
    assert host.layout.manifest.exists()
    assert manifest.socket_mode == 0o600
    assert any("0660" in line for line in lines)

    uninstall(host.layout, lines.append)
    assert not host.layout.dev_sev.is_symlink()
    assert host.layout.qemu_conf.read_bytes() == conf_before
    assert stat.S_IMODE(host.socket.stat().st_mode) == 0o600
    assert host.socket.stat().st_gid == 0
    assert not host.layout.manifest.exists()


def test_root_as_qemu_user_and_the_default_emulator_link(host: Host) -> None:
    bindir = host.root / "bin"
    install(host.request(qemu_user="root", default_emulator_dir=bindir), host.layout, print)
    assert 'user = "+0"\ngroup = "+0"' in host.layout.qemu_conf.read_text()
    link = bindir / "qemu-system-x86_64"
    assert os.readlink(link) == str(host.emulator)
    assert stat.S_IMODE(host.socket.stat().st_mode) == 0o600  # root reaches it as it is
    uninstall(host.layout, print)
    assert not link.is_symlink()
    assert host.layout.qemu_conf.read_text() == QEMU_CONF


def test_an_emulator_the_qemu_user_cannot_run_is_refused_and_nothing_is_left(host: Host) -> None:
    _nobody_conf(host)
    conf_before = host.layout.qemu_conf.read_text()
    hidden = host.root / "private"
    hidden.mkdir(mode=0o700)
    vmm = hidden / "sevlaunch-vmm"
    shutil.copy(host.emulator, vmm)
    with pytest.raises(HostSetupError, match=r"cannot run it: .*private \(mode 0700, root:root\)"):
        install(Request(host.socket, vmm, stdio_file=True), host.layout, print)
    assert not host.layout.dev_sev.is_symlink()
    assert host.layout.qemu_conf.read_text() == conf_before
    assert stat.S_IMODE(host.socket.stat().st_mode) == 0o600
    assert not host.layout.manifest.exists()


def test_a_script_whose_interpreter_is_closed_is_refused(host: Host) -> None:
    _nobody_conf(host)
    hidden = host.root / "python"
    hidden.mkdir(mode=0o700)
    (hidden / "python3").write_text("")
    host.emulator.write_text(f"#!{hidden / 'python3'}\n")
    with pytest.raises(HostSetupError, match="its interpreter"):
        install(host.request(), host.layout, print)


@pytest.mark.parametrize("kind", ["real-device", "other-link"])
def test_an_existing_dev_sev_is_never_taken_over(host: Host, kind: str) -> None:
    if kind == "real-device":
        layout = Layout(Path("/dev/null"), host.layout.qemu_conf, host.layout.caps_cache,
                        host.layout.manifest)  # fmt: skip
        message = "a real SEV device"
    else:
        layout = host.layout
        layout.dev_sev.symlink_to("/elsewhere.sock")
        message = "already links to /elsewhere.sock"
    with pytest.raises(HostSetupError, match=message):
        install(host.request(), layout, print)


def test_refusals_before_any_change(host: Host) -> None:
    with pytest.raises(HostSetupError, match="start 'sevlaunch platform serve' first"):
        install(Request(host.root / "absent.sock", host.emulator), host.layout, print)
    with pytest.raises(HostSetupError, match="not a socket"):
        install(Request(host.emulator, host.emulator), host.layout, print)
    with pytest.raises(HostSetupError, match="nothing installed here"):
        uninstall(host.layout, print)
    install(host.request(qemu_user="root"), host.layout, print)
    with pytest.raises(HostSetupError, match="already installed"):
        install(host.request(), host.layout, print)
    uninstall(host.layout, print)


def test_uninstall_leaves_what_changed_since(host: Host) -> None:
    install(host.request(qemu_user="root"), host.layout, print)
    host.layout.dev_sev.unlink()
    host.layout.dev_sev.symlink_to("/someone/else.sock")
    uninstall(host.layout, print)
    assert os.readlink(host.layout.dev_sev) == "/someone/else.sock"


_TEXT = st.text(st.characters(codec="utf-8", blacklist_characters="\0"), max_size=200).filter(
    lambda t: BEGIN not in t
)
_SETTINGS = st.dictionaries(st.sampled_from(["user", "group", "stdio_handler"]),
                            st.sampled_from(['"+0"', '"file"', '"x"']), max_size=3)  # fmt: skip


@given(_TEXT, _SETTINGS)
def test_the_qemu_conf_block_comes_off_exactly(text: str, settings: dict[str, str]) -> None:
    added = add_block(text, settings)
    assert remove_block(added) == text
    assert add_block(added, settings) == added  # installing twice writes one block


def test_an_unterminated_block_is_refused() -> None:
    with pytest.raises(HostSetupError, match="no end line"):
        remove_block(f"x\n{BEGIN}\nuser = 1\n")


def test_qemu_conf_user_is_read_as_libvirt_reads_it() -> None:
    assert configured_user(QEMU_CONF) == ("libvirt-qemu", "libvirt-qemu")
    assert configured_user('user = "a"\n  group = "b"\nuser = "+0"\n') == ("+0", "b")


def test_reachability_follows_permissions(tmp_path: Path) -> None:
    nobody = Identity.of(NOBODY, NOGROUP)
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        target = base / "file"
        target.write_text("")
        target.chmod(0o640)
        assert unreachable(target, nobody, 4) is not None
        os.chown(target, -1, grp.getgrnam(NOGROUP).gr_gid)
        assert unreachable(target, nobody, 4) is None  # the group grants read
        assert unreachable(target, nobody, 2) is not None
        assert unreachable(target, Identity(0, frozenset({0})), 2) is None  # root
        link = base / "link"
        link.symlink_to(tmp_path / "x")  # pytest's tmp dirs are 0700 to others
        assert unreachable(link, nobody, 4) is not None
    finally:
        shutil.rmtree(base)


def test_interpreter_of_a_script(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/opt/venv/bin/python3 -I\nprint()\n")
    assert interpreter(script) == Path("/opt/venv/bin/python3")
    script.write_text("#!/usr/bin/env python3\n")
    assert interpreter(script) is None
    script.write_bytes(b"\x7fELF")
    assert interpreter(script) is None
