"""The full SEV launch through ``sevlaunch host`` subprocesses against a ``sevlaunch host serve``
daemon, the emulated hypervisor and platform, with guest-owner files from ``sevlaunch owner``."""

from __future__ import annotations

import json
import select
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.vmm.ovmf_image import AMDSEV_2024, make_image
from tests.host.conftest import (
    DISK_LABEL,
    LUKS_KEY_GUID,
    SEVLAUNCH,
    Daemon,
    Media,
    OwnerFiles,
    Platform,
    env,
    owner_session,
    run_cli,
    sev_domain_xml,
    wait_for,
)
from tests.host.test_steps import snp_xml


def _params(text: str) -> dict[str, str]:
    """virsh's ``key : value`` lines."""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _validate_and_make_secret(
    daemon: Daemon, name: str, owner: OwnerFiles, media: Media, out: Path
) -> tuple[Path, Path]:
    info = _params(daemon.host("domlaunchsecinfo", name).stdout)
    assert set(info) == {
        "sev-measurement",
        "sev-api-major",
        "sev-api-minor",
        "sev-build-id",
        "sev-policy",
    }
    assert info["sev-policy"] == "1"
    output = run_cli(
        "owner", "validate", "--measurement", info["sev-measurement"],
        "--api-major", info["sev-api-major"], "--api-minor", info["sev-api-minor"],
        "--build-id", info["sev-build-id"], "--policy", info["sev-policy"],
        "--tik", str(owner.tik), "--tek", str(owner.tek), "-f", str(media.firmware),
        "-k", str(media.kernel), "-r", str(media.initrd), "-e", media.cmdline,
    )  # fmt: skip
    assert output.startswith("OK")
    header, payload = out / "secret-header.b64", out / "secret.b64"
    run_cli(
        "owner", "secret", "--tek", str(owner.tek), "--tik", str(owner.tik),
        "--measurement", info["sev-measurement"], "--secret", f"luks-key:{media.luks_key}",
        "--header-out", str(header), "--payload-out", str(payload),
    )  # fmt: skip
    return header, payload


def _inject_resume_and_check(
    daemon: Daemon, name: str, header: Path, payload: Path, *extra: str
) -> None:
    secret = ["domsetlaunchsecstate", name, "--secrethdr", str(header), "--secret", str(payload)]
    secret += extra
    daemon.host(*secret)
    daemon.host("resume", name)
    wait_for(lambda: "boot complete" in daemon.host("console", name).stdout, 30, "the guest boot")
    console = daemon.host("console", name).stdout
    assert LUKS_KEY_GUID in console
    assert f"disk label '{DISK_LABEL}'" in console
    assert "kernel hash ok" in console
    refused = daemon.host(*secret, check=False)  # running now: libvirt's rule
    assert refused.returncode == 1
    assert "domain must be in a paused state" in refused.stderr
    wait_for(
        lambda: any(
            s["detail"].startswith("guest booted")
            for s in json.loads(daemon.host("timeline", name, "--json").stdout)
        ),
        10,
        "the guest-booted step",
    )
    steps = json.loads(daemon.host("timeline", name, "--json").stdout)
    assert {s["step"] for s in steps} >= {6, 7, 8, 9, 10, 12, 13}
    assert all(s["outcome"] == "ok" for s in steps)
    text = daemon.host("timeline", name).stdout
    assert "secret injected" in text
    assert "guest booted" in text


def test_full_sev_launch_with_inline_blobs(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    info = _params(daemon.host("nodesevinfo").stdout)
    assert {"pdh", "cert-chain", "cbitpos", "reduced-phys-bits", "max-guests"} <= set(info)
    as_json = json.loads(daemon.host("nodesevinfo", "--json").stdout)
    assert {k: str(v) for k, v in as_json.items()} == info  # the same parameters, typed
    owner = owner_session(platform, short_dir / "owner")
    xml = short_dir / "vm.xml"
    xml.write_text(sev_domain_xml("vm", media, owner))
    assert "Domain 'vm' defined" in daemon.host("define", str(xml)).stdout
    assert "<dhCert>" in daemon.host("dumpxml", "vm").stdout
    daemon.host("start", "vm", "--paused")
    assert "paused" in daemon.host("list").stdout
    header, payload = _validate_and_make_secret(daemon, "vm", owner, media, short_dir)
    _inject_resume_and_check(daemon, "vm", header, payload)
    assert "running" in daemon.host("list").stdout
    assert daemon.host("list", "--name").stdout == "vm\n"  # as virsh list --name
    daemon.host("destroy", "vm")
    assert daemon.host("list", "--name").stdout == ""
    assert "shut off" in daemon.host("list", "--all").stdout
    daemon.host("undefine", "vm")
    assert "vm" not in daemon.host("list", "--all").stdout


def test_full_sev_launch_with_stored_secrets(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    uuids = []
    for blob in (owner.godh, owner.session):
        doc = short_dir / f"{blob.stem}.secret.xml"
        doc.write_text(
            f"<secret ephemeral='no' private='yes'><description>{blob.name}</description></secret>"
        )
        uid = daemon.host("secret-define", str(doc)).stdout.split()[1]
        daemon.host("secret-set-value", uid, "--base64", blob.read_text().strip())
        uuids.append(uid)
    listing = daemon.host("secret-list").stdout
    assert all(f"{u}" in listing for u in uuids)
    assert owner.godh.read_text().strip()[:40] not in listing  # values never come back
    xml = short_dir / "vm.xml"
    xml.write_text(sev_domain_xml("stored", media, None, secrets=(uuids[0], uuids[1])))
    daemon.host("define", str(xml))
    assert "<dhCert>" not in daemon.host("dumpxml", "stored").stdout
    daemon.host("start", "stored", "--paused")
    header, payload = _validate_and_make_secret(daemon, "stored", owner, media, short_dir)
    area = OvmfFooterTable.from_image(media.firmware.read_bytes()).secret_area
    assert area is not None
    _inject_resume_and_check(daemon, "stored", header, payload, "--set-address", hex(area.base))
    steps = json.loads(daemon.host("timeline", "stored", "--json").stdout)
    assert any("stored secrets" in s["detail"] for s in steps if s["step"] == 6)


def test_event_prints_lifecycle_and_launch_steps(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    (short_dir / "vm.xml").write_text(sev_domain_xml("ev", media, owner, disk=False))
    with subprocess.Popen(
        [SEVLAUNCH, "host", "event", "--connect", daemon.uri, "--loop", "--json", "--domain", "ev"],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    ) as watcher:
        assert watcher.stdout is not None
        # (re)define until the watcher reports it: then it is subscribed and misses nothing
        for _ in range(100):
            daemon.host("define", str(short_dir / "vm.xml"))
            if select.select([watcher.stdout], [], [], 0.3)[0]:
                break
        first = json.loads(watcher.stdout.readline())
        assert (first["event"], first["type"]) == ("lifecycle", "Defined")
        daemon.host("start", "ev", "--paused")
        events: list[dict[str, Any]] = []
        while not {"measurement-available", 9} <= {e.get("step", e["event"]) for e in events}:
            events.append(json.loads(watcher.stdout.readline()))
        watcher.terminate()
    kinds = {(e["event"], e.get("type") or e.get("step")) for e in events}
    assert ("lifecycle", "Started") in kinds
    assert ("launch-step", 8) in kinds
    assert ("launch-step", 9) in kinds


def test_errors_read_like_virsh(
    platform: Platform, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    missing = daemon.host("start", "nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "error: Domain not found: no domain with matching name or uuid 'nope'"
    )
    bad = short_dir / "bad.xml"
    bad.write_text("<domain type='kvm'><name>x</name>")
    broken = daemon.host("define", str(bad), check=False)
    assert broken.returncode == 1
    assert "XML error" in broken.stderr
    environ = {**env(), "XDG_RUNTIME_DIR": str(short_dir)}
    environ.pop("SEVLAUNCH_HOST", None)
    no_uri = subprocess.run(
        [SEVLAUNCH, "host", "list"], capture_output=True, text=True, env=environ, check=False
    )
    assert no_uri.returncode == 1
    assert f"unix:{short_dir}/sevlaunch/host.sock" in no_uri.stderr  # the default, named
    assert "--connect" in no_uri.stderr


def test_connect_defaults_to_sevlaunch_host_and_tcp_needs_the_token(
    platform: Platform, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform, tcp=True)
    environ = {**env(), "SEVLAUNCH_HOST": daemon.uri}
    refused = subprocess.run(
        [SEVLAUNCH, "host", "list"], capture_output=True, text=True, env=environ, check=False
    )
    assert refused.returncode == 1
    assert "authentication failed" in refused.stderr
    token = short_dir / "token"
    token.write_text(f"{daemon.token}\n")
    allowed = subprocess.run(
        [SEVLAUNCH, "host", "list", "--all", "--host-token-file", str(token)],
        capture_output=True, text=True, env=environ, check=False,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert "Name" in allowed.stdout


def test_bad_arguments_are_usage_errors_before_any_connection() -> None:
    nowhere = "unix:/nonexistent/host.sock"
    result = CliRunner().invoke(
        cli, ["host", "secret-set-value", "--connect", nowhere, "u", "--base64", "not base64!"]
    )
    assert result.exit_code == 2
    assert "base64" in result.output
    result = CliRunner().invoke(
        cli,
        ["host", "domsetlaunchsecstate", "--connect", nowhere, "vm", "--secrethdr", "h",
         "--secret", "s", "--set-address", "zz"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "0x80c000" in result.output
    result = CliRunner().invoke(cli, ["host", "list", "--connect", nowhere])
    assert result.exit_code == 1
    assert "failed to connect to the host manager" in result.output


def test_an_snp_domain_through_the_cli(
    platform: Platform, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    """nodesnpinfo names both launch security types and the platform's SNP state; an SNP
    domain defines, starts paused, and its domlaunchsecinfo is libvirt 10.5's: the firmware
    version and sev-snp-policy, no sev-measurement."""
    daemon = start_daemon(platform=platform)
    node = _params(daemon.host("nodesnpinfo").stdout)
    assert node["launch-security-types"] == "sev sev-snp"
    assert {"snp-state", "snp-current-tcb", "snp-reported-tcb"} <= set(node)
    firmware = short_dir / "OVMF.amdsev.fd"
    firmware.write_bytes(make_image(1 << 20, seed=b"cli snp", layout=AMDSEV_2024))
    xml = short_dir / "snp.xml"
    xml.write_text(snp_xml("snp", firmware, "<policy>0x00030000</policy>"))
    daemon.host("define", str(xml))
    daemon.host("start", "snp", "--paused")
    info = _params(daemon.host("domlaunchsecinfo", "snp").stdout)
    assert info["sev-snp-policy"] == str(0x30000)
    assert "sev-measurement" not in info
    daemon.host("destroy", "snp")
