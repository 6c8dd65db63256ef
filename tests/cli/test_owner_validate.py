"""``sevlaunch owner validate``: sevctl's known answers, exit codes, and the diagnosis."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.owner.measurement import expected_measurement, launch_digest
from tests.owner import ovmf_images

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
KERNEL_BLOB = "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA"
PLATFORM = ["--api-major", "1", "--api-minor", "40", "--build-id", "40", "--policy", "3"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", "validate", *args])
    return result.exit_code, result.output


def _kernel_args(vectors: Path, cmdline: str = "foo bar baz fake kernel=cmdline") -> list[str]:
    m = vectors / "sevctl/measurement"
    return [
        "-f", str(vectors / OVMF),
        "-k", str(m / "vmlinuz-fake"),
        "-r", str(m / "initrd-fake"),
        "-e", cmdline,
        "--tik", str(m / "tik1.bin"),
    ]  # fmt: skip


def test_sevctl_kernel_hashes_measurement_matches(vectors: Path) -> None:
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, *_kernel_args(vectors))
    assert code == 0, out
    assert out.startswith("OK: the measurement matches")


def test_sevctl_given_digest_matches_in_base64_and_hex(vectors: Path) -> None:
    blob = "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"
    digest = "xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM="
    tik = str(vectors / "sevctl/measurement/tik1.bin")
    for form in (digest, base64.b64decode(digest).hex()):
        code, out = _run("--measurement", blob, *PLATFORM, "--tik", tik, "--digest", form)
        assert code == 0, out


def test_mismatch_exits_1_and_names_the_trailing_newline(vectors: Path) -> None:
    args = _kernel_args(vectors, "foo bar baz fake kernel=cmdline\n")
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, *args)
    assert code == 1
    assert "Measurement does not match, VM is not trustworthy" in out
    assert "The measurement matches if the kernel command line has no trailing newline" in out


def test_mismatch_json_names_kernel_hashes_off(vectors: Path) -> None:
    firmware_only = "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"
    code, out = _run("--measurement", firmware_only, *PLATFORM, *_kernel_args(vectors), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["explained"] is True
    assert [[f["mistake"] for f in e] for e in report["explanations"]] == [["kernel-hashes-off"]]


def test_tk_file_with_keys_swapped_is_diagnosed(tmp_path: Path) -> None:
    tek, tik = bytes(range(16)), bytes(range(16, 32))
    fw = tmp_path / "fw.fd"
    fw.write_bytes(ovmf_images.image())
    measurement = expected_measurement(
        launch_digest(fw.read_bytes()),
        api_major=0, api_minor=24, build_id=15, policy=3, mnonce=bytes(16), tik=tik,
    )  # fmt: skip
    blob = base64.b64encode(measurement.to_bytes()).decode()
    platform = ["--api-major", "0", "--api-minor", "24", "--build-id", "15", "--policy", "3"]
    right, wrong = tmp_path / "tk.bin", tmp_path / "swapped.bin"
    right.write_bytes(tek + tik)
    wrong.write_bytes(tik + tek)
    code, out = _run("--measurement", blob, *platform, "--tk", str(right), "-f", str(fw))
    assert code == 0, out
    code, out = _run("--measurement", blob, *platform, "--tk", str(wrong), "-f", str(fw))
    assert code == 1
    assert "the TEK and TIK are swapped" in out


def test_other_firmware_is_diagnosed(tmp_path: Path) -> None:
    tik = bytes(16)
    a, b = tmp_path / "a.fd", tmp_path / "b.fd"
    a.write_bytes(ovmf_images.image(b"a" * 5000))
    b.write_bytes(ovmf_images.image(b"b" * 5000))
    measurement = expected_measurement(
        launch_digest(b.read_bytes()),
        api_major=1, api_minor=55, build_id=1, policy=1, mnonce=bytes(16), tik=tik,
    )  # fmt: skip
    (tmp_path / "tik.bin").write_bytes(tik)
    code, out = _run(
        "--measurement", base64.b64encode(measurement.to_bytes()).decode(),
        "--api-major", "1", "--api-minor", "55", "--build-id", "1", "--policy", "nodbg",
        "--tik", str(tmp_path / "tik.bin"), "-f", str(a), "-f", str(b),
    )  # fmt: skip
    assert code == 1
    assert f"the guest ran firmware {b} instead of {a}" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--digest", "00" * 32, "-f", "x"], "either --digest or --firmware"),
        ([], "either --digest or --firmware"),
        (["--digest", "00" * 32, "-k", "x"], "go with --firmware"),
        (["--digest", "abcd"], "not a 32-byte launch digest"),
    ],
)
def test_usage_errors_exit_2(vectors: Path, extra: list[str], message: str) -> None:
    tik = str(vectors / "sevctl/measurement/tik1.bin")
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, "--tik", tik, *extra)
    assert code == 2
    assert message in out


def test_bad_keys_and_measurement_exit_2(vectors: Path, tmp_path: Path) -> None:
    tik = str(vectors / "sevctl/measurement/tik1.bin")
    digest = ["--digest", "00" * 32]
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, *digest)
    assert code == 2
    assert "give --tik FILE (16 bytes) or --tk FILE" in out
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, "--tik", tik, "--tk", tik, *digest)
    assert code == 2
    assert "not both" in out
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, "--tk", tik, *digest)
    assert code == 2
    assert "holds 16 bytes; expected 32" in out
    code, out = _run("--measurement", "AAAA", *PLATFORM, "--tik", tik, *digest)
    assert code == 2
    assert "expected 48 bytes" in out
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM[:-1], "0x40", "--tik", tik, *digest)
    assert code == 2
    assert "bits 6-15" in out


def test_an_internal_error_exits_6_not_1(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sevlaunch.cli.owner.validate as module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "validate_measurement", broken)
    code, out = _run("--measurement", KERNEL_BLOB, *PLATFORM, *_kernel_args(vectors))
    assert code == 6
    assert "internal error: RuntimeError: boom" in out
