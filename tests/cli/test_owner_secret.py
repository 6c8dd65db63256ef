"""``sevlaunch owner secret``: sevctl's packets with a fixed IV, files, refusals."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sevlaunch.cli import cli
from tests.owner import ovmf_images

MEASUREMENT = "TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS"
IV = "rFR07U3TLH2YnsUj2SVZ7A=="
HEADER = "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="
PAYLOAD = "0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=="


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", "secret", *args])
    return result.exit_code, result.output


def _keys(vectors: Path) -> list[str]:
    folder = vectors / "sevctl/secret"
    return ["--tek", str(folder / "tek1.bin"), "--tik", str(folder / "tik1.bin")]


def _luks(vectors: Path) -> str:
    return f"luks-key:{vectors / 'sevctl/secret/secret1.txt'}"


def test_sevctl_packet_printed(vectors: Path) -> None:
    code, out = _run(
        *_keys(vectors), "--measurement", MEASUREMENT, "--secret", _luks(vectors), "--iv", IV
    )
    assert code == 0, out
    assert out.splitlines() == [f"sev-secret-header={HEADER}", f"sev-secret={PAYLOAD}"]


def test_sevctl_two_secrets_written_to_files(vectors: Path, tmp_path: Path) -> None:
    other = f"736869e5-aaaa-4973-92ec-06879ce3da0b:{vectors / 'sevctl/secret/secret2.txt'}"
    header, payload = tmp_path / "hdr.b64", tmp_path / "secret.b64"
    code, out = _run(
        *_keys(vectors), "--measurement", MEASUREMENT, "--iv", IV,
        "--secret", _luks(vectors), "--secret", other,
        "--header-out", str(header), "--payload-out", str(payload),
    )  # fmt: skip
    assert code == 0, out
    assert out == ""
    assert header.read_text() == (
        "AAAAAKxUdO1N0yx9mJ7FI9klWeyZ3r0dOEKHUOhIRqzGYYvTJgdMtBPL1nK6GD9aGET7Ng=="
    )
    assert payload.read_text().startswith("0U3e5PcXv0UW+H4tSBFKObWYfKE1")


def test_tk_file_and_random_iv(vectors: Path, tmp_path: Path) -> None:
    folder = vectors / "sevctl/secret"
    tk = tmp_path / "tk.bin"
    tk.write_bytes((folder / "tek1.bin").read_bytes() + (folder / "tik1.bin").read_bytes())
    args = ["--tk", str(tk), "--measurement", MEASUREMENT, "--secret", _luks(vectors)]
    code, first = _run(*args)
    assert code == 0
    _, second = _run(*args)
    assert first != second  # a fresh IV each time
    _, fixed = _run(*args, "--iv", IV)
    assert fixed.splitlines()[0] == f"sev-secret-header={HEADER}"


def test_iv_is_hidden_from_help() -> None:
    code, out = _run("--help")
    assert code == 0
    assert "--iv" not in out
    assert "--secret" in out


def test_secret_area_of_the_firmware_limits_the_table(vectors: Path, tmp_path: Path) -> None:
    big = f"luks-key:{vectors / 'sevctl/secret/secret3.txt'}"
    fw = vectors / "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
    base = [*_keys(vectors), "--measurement", MEASUREMENT, "--secret", big]
    code, out = _run(*base)
    assert code == 0
    code, out = _run(*base, "--firmware", str(fw))
    assert code == 2
    assert "secret area holds 3072 bytes" in out
    debian = tmp_path / "OVMF.fd"
    debian.write_bytes(ovmf_images.debian_image())
    code, out = _run(*_keys(vectors), "--measurement", MEASUREMENT, "--secret", _luks(vectors),
                     "--firmware", str(debian))  # fmt: skip
    assert code == 2
    assert "names no SEV secret area" in out


def test_refusals_exit_2(vectors: Path, tmp_path: Path) -> None:
    four = f"x:{vectors / 'sevctl/secret/secret4.txt'}"
    cases = [
        (["--tik", _keys(vectors)[3], "--secret", _luks(vectors)], "give --tek FILE"),
        ([*_keys(vectors), "--secret", "luks-key"], "expected GUID:FILE"),
        ([*_keys(vectors), "--secret", four], "neither a GUID nor a known alias"),
        ([*_keys(vectors), "--secret", _luks(vectors), "--iv", "AAAA"], "expected 16 bytes"),
        ([*_keys(vectors), "--secret", f"luks-key:{tmp_path / 'nope'}"], "cannot read secret"),
        (
            [*_keys(vectors), "--secret", _luks(vectors), "--secret", _luks(vectors)],
            "given twice",
        ),
    ]
    for args, message in cases:
        code, out = _run("--measurement", MEASUREMENT, *args)
        assert code == 2, (args, out)
        assert message in out, (args, out)
    big = f"luks-key:{vectors / 'sevctl/secret/secret4.txt'}"
    (tmp_path / "more.txt").write_bytes(b"!")
    code, out = _run("--measurement", MEASUREMENT, *_keys(vectors), "--secret", big,
                     "--secret", f"{'1' * 8}-1111-1111-1111-{'1' * 12}:{tmp_path / 'more.txt'}")  # fmt: skip
    assert code == 2
    assert "at most 16384" in out
