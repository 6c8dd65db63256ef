"""``sevlaunch owner digest``: sevctl's known digest, refusals, and a start-up without pyca."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sevlaunch.cli import cli
from tests.owner import ovmf_images

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", "digest", *args])
    return result.exit_code, result.output


def test_sevctl_kernel_hashes_digest(vectors: Path) -> None:
    m = vectors / "sevctl/measurement"
    code, out = _run(
        "--firmware", str(vectors / OVMF),
        "--kernel", str(m / "vmlinuz-fake"),
        "--initrd", str(m / "initrd-fake"),
        "--append", "foo bar baz fake kernel=cmdline",
        "--output-format", "base64",
    )  # fmt: skip
    assert code == 0, out
    # sev-snp-measure --mode sev prints the same for these inputs
    assert out.strip() == "S0f+xvhRSHwzcUyKAKgyobcFrQp8rEpkc4jsz6nwxXA="


def test_firmware_only_digest_is_hex_by_default(vectors: Path) -> None:
    code, out = _run("-f", str(vectors / OVMF))
    assert code == 0
    assert out.strip() == hashlib.sha256((vectors / OVMF).read_bytes()).hexdigest()


def test_cmdline_alias_and_whitespace(tmp_path: Path) -> None:
    fw = tmp_path / "fw.fd"
    fw.write_bytes(ovmf_images.image())
    kernel = tmp_path / "k"
    kernel.write_bytes(b"kernel")
    _, a = _run("-f", str(fw), "-k", str(kernel), "--cmdline", "quiet ")
    _, b = _run("-f", str(fw), "-k", str(kernel), "-e", "quiet")
    _, c = _run("-f", str(fw), "-k", str(kernel), "--append", "quiet ")
    assert a == c != b


def test_debian_firmware_with_a_kernel_is_refused(tmp_path: Path) -> None:
    fw = tmp_path / "OVMF.fd"
    fw.write_bytes(ovmf_images.debian_image())
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    code, out = _run("-f", str(fw), "-k", str(kernel))
    assert code == 2
    assert "base 0x0 and size 0x0" in out
    assert "AmdSevX64.dsc" in out
    code, out = _run("-f", str(fw))
    assert code == 0
    assert base64.b16decode(out.strip().upper()) == hashlib.sha256(fw.read_bytes()).digest()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    fw = tmp_path / "fw.fd"
    fw.write_bytes(ovmf_images.image())
    code, out = _run("-f", str(fw), "--initrd", str(fw))
    assert code == 2
    assert "need --kernel" in out
    code, out = _run("-f", str(tmp_path / "missing.fd"))
    assert code == 2
    assert "cannot read firmware" in out
    code, out = _run()
    assert code == 2


def test_digest_does_not_import_cryptography() -> None:
    """``owner digest`` starts without pyca/cryptography (checked in a fresh interpreter)."""
    script = (
        "import sys\n"
        "from sevlaunch.cli import cli\n"
        "try:\n"
        "    cli(['owner', 'digest', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'cryptography' not in sys.modules, 'cryptography imported'\n"
        "assert 'sevlaunch.crypto' not in sys.modules, 'sevlaunch.crypto imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
