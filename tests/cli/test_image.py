"""``sevlaunch image``: firmware, kernel, initrd, key and disk, as the README names them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.cli import cli
from sevlaunch.cli.image import parse_size
from sevlaunch.crypto.disk import open_disk
from sevlaunch.errors import IntegrityError, UnsuitableFirmwareError
from sevlaunch.formats.ovmf import Area, OvmfFooterTable
from sevlaunch.owner.launch_digest import launch_digest
from sevlaunch.vmm.ovmf_image import make_image


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["image", *map(str, args)])


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_firmware_has_the_amdsev_footer_table(tmp_path: Path) -> None:
    out = tmp_path / "OVMF.fd"
    printed = ok("firmware", "--out", out).output
    data = out.read_bytes()
    assert len(data) == 4 << 20
    assert data == make_image(4 << 20)  # the default seed is the library's
    footer = OvmfFooterTable.from_image(data)
    assert footer.sev_es_reset_address == 0x80B004
    assert footer.secret_area == Area(0x80C000, 0xC00)
    assert footer.hashes_area == Area(0x80CC00, 0x400)
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in printed
    assert "secret area: 0x80c000 size 0xc00" in printed
    assert "hashes area: 0x80cc00 size 0x400" in printed
    launch_digest(data, b"kernel", b"initrd", "console=ttyS0")  # usable for measured boot


def test_firmware_size_and_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.fd", tmp_path / "b.fd", tmp_path / "c.fd"
    ok("firmware", "--out", a, "--size", "64K", "--seed", "one")
    ok("firmware", "--out", b, "--size", "65536", "--seed", "two")
    ok("firmware", "--out", c, "--size", "64KiB", "--seed", "one")
    assert len(a.read_bytes()) == len(b.read_bytes()) == 64 * 1024
    assert a.read_bytes() != b.read_bytes()
    assert a.read_bytes() == c.read_bytes()


def test_firmware_without_areas(tmp_path: Path) -> None:
    out = tmp_path / "plain.fd"
    printed = ok("firmware", "--out", out, "--size", "1M", "--no-hashes-area", "--no-secret-area")
    footer = OvmfFooterTable.from_image(out.read_bytes())
    assert (footer.secret_area, footer.hashes_area) == (None, None)
    assert footer.sev_es_reset_address == 0x80B004
    assert "secret area: none" in printed.output
    assert "hashes area: none" in printed.output
    with pytest.raises(UnsuitableFirmwareError, match="no SEV hashes-table entry"):
        launch_digest(out.read_bytes(), b"kernel")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("5000", "must be a multiple of 4096"),
        ("32K", "between 65536 and 67108864"),
        ("1G", "between 65536 and 67108864"),
        ("4X", "is not a size"),
        ("-4M", "is not a size"),
    ],
)
def test_firmware_refuses_unusable_sizes(tmp_path: Path, size: str, message: str) -> None:
    result = run("firmware", "--out", tmp_path / "x.fd", "--size", size)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x.fd").exists()


def test_disk_unlocks_with_the_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_bytes(b"correct horse\n")
    out = tmp_path / "disk.img"
    printed = ok(
        "disk", "--out", out, "--label", "root-fs", "--passphrase-file", secret, "--size", "8K"
    )
    image = out.read_bytes()
    assert len(image) == 8192
    contents = open_disk(b"correct horse\n", image)  # byte for byte, newline included
    assert contents.label == "root-fs"
    assert "label 'root-fs'" in printed.output
    with pytest.raises(IntegrityError):
        open_disk(b"correct horse", image)


def test_two_disks_from_one_passphrase_differ(tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_bytes(b"pw")
    for name in ("a.img", "b.img"):
        ok("disk", "--out", tmp_path / name, "--label", "x", "--passphrase-file", secret)
    assert (tmp_path / "a.img").read_bytes() != (tmp_path / "b.img").read_bytes()  # fresh salt


@pytest.mark.parametrize(
    ("passphrase", "size", "message"),
    [
        (b"", "64K", "is empty"),
        (None, "64K", "cannot read passphrase file"),
        (b"pw", "64", "cannot hold the label"),
    ],
)
def test_disk_refusals(tmp_path: Path, passphrase: bytes | None, size: str, message: str) -> None:
    secret = tmp_path / "pass.txt"
    if passphrase is not None:
        secret.write_bytes(passphrase)
    result = run(
        "disk",
        "--out",
        tmp_path / "d.img",
        "--label",
        "label",
        "--passphrase-file",
        secret,
        "--size",
        size,
    )
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4M", 4 << 20),
        ("64k", 65536),
        ("4MiB", 4 << 20),
        ("2G", 2 << 30),
        ("123", 123),
        (" 8 K ", 8192),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@given(st.integers(0, 1 << 40), st.sampled_from(["", "K", "M", "G", "KiB", "MB"]))
def test_parse_size_round_trips(number: int, unit: str) -> None:
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "KiB": 1 << 10, "MB": 1 << 20}[unit]
    assert parse_size(f"{number}{unit}") == number * scale


@given(st.text(max_size=12))
def test_parse_size_refuses_or_parses(text: str) -> None:
    """Any text either parses to a size or is refused with the usage message, never a crash."""
    refused: str | None = None
    try:
        size = parse_size(text)
    except click.BadParameter as exc:
        refused = exc.message
    else:
        assert size >= 0
    assert refused is None or "is not a size" in refused


def test_kernel_looks_like_a_bzimage_and_is_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    printed = ok("kernel", "--out", a).output
    ok("kernel", "--out", b)
    ok("kernel", "--out", c, "--seed", "other", "--size", "128K")
    data = a.read_bytes()
    assert (data[:2], data[0x202:0x206], len(data)) == (b"MZ", b"HdrS", 64 << 10)
    assert data == b.read_bytes() != c.read_bytes()
    assert len(c.read_bytes()) == 128 << 10
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in printed
    assert run("kernel", "--out", a, "--size", "1K").exit_code == 2


def test_initrd_is_a_newc_cpio_archive_holding_init(tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    ok("initrd", "--out", out)
    data = out.read_bytes()
    assert len(data) == 32 << 10
    assert data.startswith(b"070701")
    assert b"TRAILER!!!" in data
    if shutil.which("cpio") is None:
        pytest.skip("cpio (Debian's cpio) is not installed: the archive is not read back")
    listed = subprocess.run(
        ["cpio", "-it"], input=data, capture_output=True, check=True, cwd=tmp_path
    )
    assert listed.stdout.decode().split() == ["init", "filler"]
    init = subprocess.run(
        ["cpio", "-i", "--to-stdout", "init"], input=data, capture_output=True, check=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert init.stdout.startswith(b"#!/bin/sh\n")


def test_key_is_private_random_and_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "disk.key"
    assert "mode 0600" in ok("key", "--out", out).output
    first = out.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 43  # 32 bytes as base64 text
    refused = run("key", "--out", out)
    assert refused.exit_code == 2
    assert "exists and is kept" in refused.output
    assert out.read_bytes() == first  # the disk sealed with it can still be opened
    other = tmp_path / "other.key"
    ok("key", "--out", other)
    assert other.read_bytes() != first


def test_the_readmes_images_launch_digest(tmp_path: Path) -> None:
    """firmware, kernel, initrd, key and disk as the README makes them fit together."""
    names = {
        n: tmp_path / n for n in ("OVMF.amdsev.fd", "vmlinuz", "initrd.img", "disk.key", "root.img")
    }
    ok("firmware", "--out", names["OVMF.amdsev.fd"])
    ok("kernel", "--out", names["vmlinuz"])
    ok("initrd", "--out", names["initrd.img"])
    ok("key", "--out", names["disk.key"])
    ok(
        "disk",
        "--out",
        names["root.img"],
        "--label",
        "root",
        "--passphrase-file",
        names["disk.key"],
    )
    launch_digest(
        names["OVMF.amdsev.fd"].read_bytes(),
        names["vmlinuz"].read_bytes(),
        names["initrd.img"].read_bytes(),
        "console=ttyS0",
    )
    contents = open_disk(names["disk.key"].read_bytes(), names["root.img"].read_bytes())
    assert contents.label == "root"
