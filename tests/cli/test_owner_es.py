"""``sevlaunch owner digest`` and ``validate`` for SEV-ES: sevctl's known answer from every
form of vCPU input, dumped VMSAs, the diagnosis of SEV-ES mistakes, and refused usage."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
ES_BLOB = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"


def _run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", *map(str, args)])
    return result.exit_code, result.output


def _expected(vectors: Path) -> str:
    fw = (vectors / OVMF).read_bytes()
    v0, v1 = ((vectors / f"sevctl/vmsa{i}.bin").read_bytes() for i in (0, 1))
    return hashlib.sha256(fw + v0 + v1 * 3).hexdigest()


@pytest.mark.parametrize(
    "cpu",
    [
        ["--vcpu-type", "EPYC-Milan"],
        ["--vcpu-type", "EPYC-Milan-v1", "--legacy-vm-type", "on"],
        ["--vcpu-sig", "0xa00f11"],
        ["--vcpu-sig", "10489617"],
        ["--vcpu-family", "25", "--vcpu-model", "1", "--vcpu-stepping", "1"],
    ],
    ids=["type", "type-version-on", "sig-hex", "sig-decimal", "fms"],
)
def test_digest_of_sevctls_es_guest(vectors: Path, cpu: list[str]) -> None:
    code, out = _run("digest", "-f", vectors / OVMF, "--es", "--vcpus", "4", *cpu)
    assert code == 0, out
    assert out.strip() == _expected(vectors)


def test_digest_from_vmsa_files_and_dump(vectors: Path, tmp_path: Path) -> None:
    v = vectors / "sevctl"
    code, out = _run(
        "digest", "-f", vectors / OVMF, "--es", "--vcpus", "4",
        "--vmsa-cpu0", v / "vmsa0.bin", "--vmsa-cpu1", v / "vmsa1.bin",
    )  # fmt: skip
    assert (code, out.strip()) == (0, _expected(vectors))
    dump = tmp_path / "dump"
    code, out = _run(
        "digest", "-f", vectors / OVMF, "--es", "--vcpus", "3", "--vcpu-type", "EPYC-Milan",
        "--dump-vmsa", dump,
    )  # fmt: skip
    assert code == 0, out
    assert sorted(p.name for p in dump.iterdir()) == ["vmsa0.bin", "vmsa1.bin", "vmsa2.bin"]
    assert (dump / "vmsa0.bin").read_bytes() == (v / "vmsa0.bin").read_bytes()
    assert (dump / "vmsa2.bin").read_bytes() == (v / "vmsa1.bin").read_bytes()


def test_init2_changes_the_digest(vectors: Path) -> None:
    base = ["digest", "-f", vectors / OVMF, "--es", "--vcpus", "4", "--vcpu-type", "EPYC-Milan"]
    _, on = _run(*base, "--legacy-vm-type", "on")
    _, off = _run(*base, "--legacy-vm-type", "off")
    assert on != off


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vcpus", "2"], "add --es"),
        (["--vcpu-type", "EPYC"], "add --es"),
        (["--es"], "give --vcpus N"),
        (["--es", "--vcpus", "2"], "give the vCPU type one way"),
        (["--es", "--vcpus", "2", "--vcpu-type", "Pentium"], "unknown QEMU CPU model 'Pentium'"),
        (["--es", "--vcpus", "2", "--vcpu-sig", "zz"], "not a number"),
        (["--es", "--vcpus", "2", "--vcpu-family", "25"], "go together"),
        (["--es", "--vcpus", "2", "--vmsa-cpu0", "{v0}"], "--vmsa-cpu1"),
        (["--es", "--vcpus", "1", "--vmsa-cpu0", "{v0}", "--vcpu-type", "EPYC"], "not both"),
        (["--es", "--vcpus", "1", "--vmsa-cpu0", "{v0}", "--legacy-vm-type", "off"], "as they are"),
        (["--es", "--vcpus", "1", "--vmsa-cpu0", "{tik}"], "expected 4096 bytes"),
    ],
)  # fmt: skip
def test_digest_refuses_inconsistent_es_options(
    vectors: Path, args: list[str], message: str
) -> None:
    fw = vectors / OVMF
    tik = vectors / "sevctl/measurement/tik1.bin"
    filled = [a.format(v0=vectors / "sevctl/vmsa0.bin", tik=tik) for a in args]
    code, out = _run("digest", "-f", fw, *filled)
    assert code == 2, out
    assert message in out


def test_digest_refuses_a_firmware_without_sev_es_reset_block(tmp_path: Path) -> None:
    fw = tmp_path / "OVMF.fd"
    fw.write_bytes(make_image(64 * 1024, layout=OvmfLayout(sev_es_reset_address=None)))
    code, out = _run("digest", "-f", fw, "--es", "--vcpus", "2", "--vcpu-type", "EPYC")
    assert code == 2
    assert "no SEV-ES reset address" in out


def _validate(vectors: Path, *args: object) -> tuple[int, str]:
    return _run(
        "validate", "--measurement", ES_BLOB, "--api-major", "1", "--api-minor", "49",
        "--build-id", "6", "--tik", vectors / "sevctl/measurement/tik1.bin",
        "-f", vectors / OVMF, *args,
    )  # fmt: skip


def test_validate_sevctls_es_measurement(vectors: Path) -> None:
    code, out = _validate(vectors, "--policy", "0x5", "--vcpus", "4", "--vcpu-type", "EPYC-Milan")
    assert code == 0, out
    assert _expected(vectors) in out


def test_validate_names_the_es_mistakes(vectors: Path) -> None:
    code, out = _validate(
        vectors, "--policy", "0x5", "--vcpus", "2", "--vcpu-type", "EPYC-Genoa",
        "--legacy-vm-type", "off", "--json",
    )  # fmt: skip
    assert code == 1
    report = json.loads(out)
    assert report["explained"]
    assert report["es"]
    mistakes = {f["mistake"] for f in report["explanations"][0]}
    assert mistakes == {"legacy-vm-type", "vcpu-count", "vcpu-type"}


def test_validate_needs_the_vcpus_of_an_es_policy(vectors: Path) -> None:
    code, out = _validate(vectors, "--policy", "0x5")
    assert code == 2
    assert "has SEV-ES (bit 2)" in out
    code, out = _validate(vectors, "--policy", "0x1", "--es", "--vcpus", "4")
    assert code == 2
    assert "does not have SEV-ES" in out


def test_es_digest_starts_without_cryptography(vectors: Path, tmp_path: Path) -> None:
    """``owner digest --es`` keeps the lean start-up (checked in a fresh interpreter)."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sevlaunch.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['owner', 'digest', '-f', {str(vectors / OVMF)!r}, "
        "'--es', '--vcpus', '2', '--vcpu-type', 'EPYC-Rome'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'cryptography' not in sys.modules, 'cryptography imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "0x1", "--es", "--vcpus", "2", "--vcpu-type", "EPYC", "--firmware", "{fw}"],
         "lacks the ES bit"),
        (["--policy", "0x5", "--vcpus", "2", "--firmware", "{fw}"], "add --es"),
        (["--policy", "0x5", "--es", "--vcpus", "2", "--vcpu-type", "EPYC"], "need --firmware"),
    ],
)  # fmt: skip
def test_broker_workload_add_checks_es_inputs_before_connecting(
    vectors: Path, args: list[str], message: str
) -> None:
    filled = [a.format(fw=vectors / OVMF) for a in args]
    result = CliRunner().invoke(
        cli,
        ["broker", "workload", "add", "w", *filled],
        env={"SEVLAUNCH_BROKER_URL": "unix:/nonexistent", "SEVLAUNCH_OWNER_TOKEN_FILE": "/x"},
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
