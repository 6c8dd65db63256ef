"""Issue 13's host holes, each attack performed against a running host manager over its API
(``sevlaunch host serve`` as a subprocess) and shown refused: the console and serial files
(1), the ``-cpu`` injection and libvirt's name rules (9), and what undefined domains leave."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.host.conftest import Daemon, Media, Platform, sev_domain_xml, wait_for

XML = {"Content-Type": "application/xml"}


def plain(name: str, media: Media, devices: str = "", top: str = "") -> str:
    """A domain without SEV (fast to start), with extra devices and top-level elements."""
    xml = sev_domain_xml(name, media, None, kernel=False, disk=False, small=True)
    return xml.replace("<devices>", f"<devices>{devices}").replace("<os>", f"{top}<os>")


def refused(response: httpx.Response, code: str, *needles: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for needle in needles:
        assert needle in error["message"], error["message"]
    return str(error["message"])


@pytest.fixture
def daemon(module_daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon; what a test defined is gone afterwards."""
    yield module_daemon
    with module_daemon.client() as c:
        for row in c.get("/v1/domains", params={"all": True}).json():
            c.post(f"/v1/domains/{row['uuid']}/destroy")
            c.delete(f"/v1/domains/{row['uuid']}")


def test_a_serial_file_outside_the_domains_log_directory_is_refused_at_define(
    daemon: Daemon, media: Media, platform: Platform
) -> None:
    """The console API once returned any file a <serial type='file'> named (the platform's
    state, hence its PDH key), without even starting the domain; and wrote guest output there."""
    state_file = next(platform.root.joinpath("state").iterdir())
    secret = state_file.read_bytes()
    logs = daemon.state / "log" / "thief"
    attacks = [
        f"<serial type='file'><source path='{state_file}'/></serial>",
        "<serial type='file'><source path='/etc/shadow'/></serial>",
        f"<serial type='file'><source path='{logs}/../victim/console.log'/></serial>",
        f"<serial type='pty'><log file='{state_file}' append='on'/></serial>",
        f"<serial type='file'><source path='{logs}'/></serial>",
    ]
    with daemon.client() as c:
        for serial in attacks:
            response = c.post("/v1/domains", content=plain("thief", media, serial), headers=XML)
            refused(response, "unsupported configuration", "outside the domain's log directory")
            assert c.get("/v1/domains/thief").status_code == 404
            assert c.get("/v1/domains/thief/console").status_code == 404
    assert state_file.read_bytes() == secret


def test_relative_serial_paths_are_refused(daemon: Daemon, media: Media) -> None:
    """A relative path resolved against the daemon's working directory."""
    with daemon.client() as c:
        for serial in (
            "<serial type='file'><source path='serial.log'/></serial>",
            "<serial type='pty'><log file='../x.log'/></serial>",
        ):
            response = c.post("/v1/domains", content=plain("rel", media, serial), headers=XML)
            refused(response, "XML error", "must be an absolute path")


def test_the_console_shows_only_the_domains_own_log(daemon: Daemon, media: Media) -> None:
    own = daemon.state / "log" / "own" / "serial0.log"
    with daemon.client() as c:
        serial = f"<serial type='file'><source path='{own}'/></serial>"
        assert c.post("/v1/domains", content=plain("own", media, serial), headers=XML).is_success
        assert c.get("/v1/domains/own/console").text == ""  # never started: nothing to show
        assert c.post("/v1/domains/own/start", json={"paused": False}).is_success
        wait_for(lambda: "OVMF" in c.get("/v1/domains/own/console").text, 30, "console output")
        assert c.get("/v1/domains/own/console").text == own.read_text()
        c.post("/v1/domains/own/destroy")


def test_cpu_model_option_injection_is_refused(daemon: Daemon, media: Media) -> None:
    """<model> reached -cpu unescaped: 'qemu64,+x2apic,hv-passthrough=on' set QEMU options."""
    with daemon.client() as c:
        for model in ("qemu64,+x2apic,hv-passthrough=on", "qemu64,,x", "EPYC -object x"):
            top = f"<cpu mode='custom' match='exact'><model>{model}</model></cpu>"
            response = c.post("/v1/domains", content=plain("cpu", media, top=top), headers=XML)
            refused(response, "unsupported configuration", "is not supported by hypervisor")
        top = "<cpu mode='custom' match='exact'><model fallback='forbid'>EPYC-Rome</model></cpu>"
        assert c.post("/v1/domains", content=plain("cpu", media, top=top), headers=XML).is_success


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("..", "XML error", "name '..' cannot be used"),
        (".", "XML error", "name '.' cannot be used"),
        (" ", "missing name information", "empty or only white space"),
        ("a/b", "XML error", "name a/b cannot contain '/'"),
        ("x" * 248, "XML error", "name of 248 bytes is too long"),
        ("é" * 124, "XML error", "name of 248 bytes is too long"),
        ("x" * 100_000, "XML error", "name of 100000 bytes is too long"),
    ],
)
def test_libvirts_name_rules(
    daemon: Daemon, media: Media, name: str, code: str, message: str
) -> None:
    with daemon.client() as c:
        response = c.post("/v1/domains", content=plain(name, media), headers=XML)
        refused(response, code, message)
        assert c.get("/v1/domains", params={"all": True}).json() == []


def test_a_one_mebibyte_name_costs_nothing(daemon: Daemon, media: Media) -> None:
    with daemon.client() as c:
        response = c.post("/v1/domains", content=plain("n" * (1 << 20), media), headers=XML)
        assert response.status_code == 413
        assert c.post("/v1/domains", content=plain("x" * 247, media), headers=XML).is_success


def test_undefined_domains_leave_no_run_or_log_directory(
    start_daemon: Callable[..., Daemon], platform: Platform, media: Media
) -> None:
    daemon = start_daemon(platform=platform)
    with daemon.client() as c:
        info = c.post("/v1/domains", content=plain("gone", media), headers=XML).json()
        assert c.post("/v1/domains/gone/start", json={"paused": True}).is_success
        run_dir, log_dir = daemon.state / "run" / info["uuid"], daemon.state / "log" / "gone"
        assert run_dir.is_dir()
        assert log_dir.is_dir()
        assert c.post("/v1/domains/gone/destroy").is_success
        assert c.delete("/v1/domains/gone").is_success
        assert not run_dir.exists()
        assert not log_dir.exists()
    # what a manager killed mid-undefine left behind is swept at the next start
    stray_run, stray_log = (
        daemon.state / "run" / "4d1f0000-0000-4000-8000-000000000001",
        daemon.state / "log" / "stray",
    )
    stray_run.mkdir(mode=0o700)
    stray_log.mkdir(mode=0o700)
    (stray_run / "qemu.log").write_text("old")
    daemon.restart()
    deadline = time.monotonic() + 30
    while (stray_run.exists() or stray_log.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stray_run.exists()
    assert not stray_log.exists()
