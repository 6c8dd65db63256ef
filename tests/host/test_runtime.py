"""What a stopped or undefined domain leaves, what a sweep removes, and the small helpers."""

from __future__ import annotations

import sys
from pathlib import Path

from sevlaunch.host.runtime import (
    as_dict,
    remove_domain_dirs,
    remove_run_files,
    resolve_binary,
    stopped_detail,
    sweep_orphans,
)
from sevlaunch.host.store import DomainRow


def test_a_stopped_run_keeps_its_hypervisor_log_only(tmp_path: Path) -> None:
    for name in ("qmp.sock", "qemu.pid", "dh_cert.base64", "session.base64", "qemu.log"):
        (tmp_path / name).write_text("x")
    remove_run_files(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["qemu.log"]


def test_an_undefined_domain_leaves_nothing(tmp_path: Path) -> None:
    run, log = tmp_path / "run" / "u", tmp_path / "log" / "vm"
    for d in (run, log):
        d.mkdir(parents=True)
        (d / "f").write_text("x")
    remove_domain_dirs(run, None, log)
    assert not run.exists()
    assert not log.exists()


def test_the_sweep_keeps_what_defined_domains_own(tmp_path: Path) -> None:
    run_root, log_root = tmp_path / "run", tmp_path / "log"
    for d in (
        run_root / "u-1",
        run_root / "stray",
        run_root / "probe-1",
        log_root / "vm",
        log_root / "old",
    ):
        d.mkdir(parents=True)
    rows = [DomainRow("u-1", "vm", "<domain/>", "shutoff", "unknown", None, None, 0)]
    sweep_orphans(run_root, log_root, rows)
    assert sorted(p.name for p in run_root.iterdir()) == ["u-1"]
    assert sorted(p.name for p in log_root.iterdir()) == ["vm"]
    sweep_orphans(tmp_path / "absent", tmp_path / "absent", rows)


def test_helpers() -> None:
    assert resolve_binary("/opt/qemu") == "/opt/qemu"
    assert Path(resolve_binary("sevlaunch-vmm")).name == "sevlaunch-vmm"
    assert resolve_binary(Path(sys.executable).name) != ""
    assert as_dict({"a": 1}) == {"a": 1}
    assert as_dict(["not", "a", "mapping"]) == {}
    assert (stopped_detail("destroyed"), stopped_detail("crashed"), stopped_detail("x")) == (
        "Destroyed", "Crashed", "Failed",
    )  # fmt: skip
