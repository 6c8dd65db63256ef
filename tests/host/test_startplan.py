"""What a start writes before the hypervisor runs: the plan's files private from their first
byte, the domain's log directory, and step 6's detail."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from sevlaunch.host import driver
from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.host.startplan import blobs_detail, prepare_start
from tests.host.qemu.cases import SEV_CASES


def test_the_blobs_and_master_key_are_private_and_the_log_directory_is_made(tmp_path: Path) -> None:
    run = driver.RunPaths(tmp_path / "run")
    run.root.mkdir(mode=0o700)
    binary, argv = prepare_start(
        Domain.from_xml(SEV_CASES["sev-direct"]),
        run,
        tmp_path / "log" / "QEMUGuest1",
        emulator="/usr/bin/qemu-system-x86_64",
        resolve_secret=lambda ref: b"",
        host_sev=None,
    )
    assert binary == "/usr/bin/qemu-system-x86_64"
    assert "-S" in argv
    files = sorted(p.name for p in run.root.iterdir())
    assert files == ["dh_cert.base64", "master-key.aes", "session.base64"]
    for name in files:
        assert stat.S_IMODE((run.root / name).stat().st_mode) == 0o600
    assert len((run.root / "master-key.aes").read_bytes()) == 32
    assert (tmp_path / "log" / "QEMUGuest1").is_dir()
    assert f"logfile={tmp_path}/log/QEMUGuest1/console.log,logappend=on" in " ".join(argv)


def test_step_6_says_where_the_blobs_came_from() -> None:
    assert (
        blobs_detail(LaunchSecurity(policy=1, dh_cert="a", session="b"))
        == "dhCert and session inline"
    )
    stored = LaunchSecurity(policy=1, dh_cert_secret=uuid.uuid4(), session_secret=uuid.uuid4())
    assert blobs_detail(stored) == "dhCert and session from stored secrets"
