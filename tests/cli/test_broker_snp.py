"""``sevlaunch broker snp`` against a real broker process: pin an ARK, register an SNP
workload with its expectations and secret, show, list and remove them; bad input is a usage
error before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.formats.snp.tcb import Generation
from tests.broker.conftest import SECRET
from tests.broker.servers import Files, broker_process, write_files
from tests.snp_pki import pki

DIGEST = "ab" * 48


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Files]]:
    tmp = tmp_path_factory.mktemp("snpcli")
    files = write_files(tmp)
    sock = tmp / "broker.sock"
    with broker_process(f"sqlite:///{tmp / 'broker.db'}", files, sock, "snp-cli"):
        yield f"unix:{sock}", files


def run(server: tuple[str, Files], *args: str, code: int = 0) -> str:
    url, files = server
    result = CliRunner().invoke(
        cli,
        ["broker", "snp", *args],
        env={"SEVLAUNCH_BROKER_URL": url, "SEVLAUNCH_OWNER_TOKEN_FILE": str(files.owner_token)},
    )
    assert result.exit_code == code, result.output
    return result.output


def test_owner_pins_a_root_and_administers_a_workload(
    server: tuple[str, Files], tmp_path: Path
) -> None:
    chain = pki(Generation.GENOA)
    (tmp_path / "cert_chain.pem").write_bytes(chain.ask.to_pem() + chain.ark.to_pem())
    out = run(server, "trust", "add", str(tmp_path / "cert_chain.pem"), "--name", "lab")
    assert out == f"pinned Genoa ARK lab (SHA-256 {chain.ark.fingerprint})\n"
    assert run(server, "trust", "list") == f"lab\tGenoa\t{chain.ark.fingerprint}\n"
    (tmp_path / "luks").write_bytes(SECRET)
    out = run(
        server,
        "workload",
        "add",
        "db",
        "--digest",
        DIGEST,
        "--policy",
        "0x30000",
        "--min-tcb",
        "bl=3,snp=8,ucode=115",
        "--min-firmware",
        "1.55.0",
        "--host-data",
        "aG9zdA==",
        "--secret",
        f"luks-key:{tmp_path / 'luks'}",
    )
    assert f"  digest:   {DIGEST}" in out
    assert "  policies: 0x30000" in out
    assert "TCB bootloader=3,tee=0,snp=8,microcode=115,fmc=0, firmware 1.55.0" in out
    assert "  host data: " + b"host".hex() in out
    assert "  CRL:      required" in out
    shown = json.loads(run(server, "workload", "show", "db", "--json"))
    assert shown["expectations"]["min_firmware"] == [1, 55, 0]
    assert shown["secrets"] == ["736869e5-84f0-4973-92ec-06879ce3da0b"]
    assert run(server, "workload", "list") == "db\tdigests=1\tid-keys=0\tsecrets=1\n"
    (tmp_path / "other").write_bytes(b"another secret")
    run(server, "secret", "db", "0e0e0e0e-0000-4000-8000-000000000001", str(tmp_path / "other"))
    assert len(json.loads(run(server, "workload", "show", "db", "--json"))["secrets"]) == 2
    assert run(server, "workload", "remove", "db") == "removed SNP workload db\n"
    assert run(server, "trust", "remove", "lab") == "removed SNP root lab\n"
    assert run(server, "trust", "list") == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--digest", "ab" * 32], "48 bytes"),
        (["--digest", DIGEST, "--min-abi", "1"], "--min-abi takes 2 numbers"),
        (["--digest", DIGEST, "--policy", "lots"], "--policy takes a number"),
        (["--digest", DIGEST, "--min-tcb", "speed=9"], "TCB minimum"),
        (["--digest", DIGEST, "--secret", "luks-key"], "GUID_OR_ALIAS:FILE"),
    ],
)
def test_bad_options_are_usage_errors(
    server: tuple[str, Files], args: list[str], words: str
) -> None:
    assert words in run(server, "workload", "add", "bad", *args, code=2)


def test_refusals_from_the_broker_exit_1(server: tuple[str, Files], tmp_path: Path) -> None:
    out = run(server, "workload", "add", "none", code=1)
    assert "needs expected launch digests" in out
    assert "no SNP workload named 'ghost'" in run(server, "workload", "show", "ghost", code=1)


def test_serve_takes_the_snp_limits(tmp_path: Path) -> None:
    """``broker serve --snp-max-nonces 1 --snp-client-burst 3``: one nonce outstanding per
    workload, three calls at once per client."""
    import httpx

    from sevlaunch.broker.client import BrokerClient
    from tests.broker.conftest import OWNER_TOKEN

    files = write_files(tmp_path)
    sock = tmp_path / "b.sock"
    limits = ("--snp-max-nonces", "1", "--snp-client-burst", "3", "--snp-client-rate", "0.01")
    with broker_process(f"sqlite:///{tmp_path / 'b.db'}", files, sock, "limits", *limits):
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            owner.add_snp_workload({"name": "app", "digests": [DIGEST]})
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://broker") as guest:
            answers = [guest.post("/v1/snp/challenge", json={"workload": "app"}) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 429, 429, 429]
    assert [r.json().get("error") for r in answers[1:]] == [
        "too-many-nonces",
        "too-many-nonces",
        "rate-limited",
    ]
