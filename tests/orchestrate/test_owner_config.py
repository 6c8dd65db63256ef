"""owner.json of ``sevlaunch launch --owner-dir``: paths resolved against the directory, and
every mistake refused with the file and the key named (a misspelt key must not silently
trust or release nothing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import UsageError
from sevlaunch.orchestrate.owner_config import FIELDS, EsShape, OwnerConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(directory: Path, config: Any, files: tuple[str, ...] = ()) -> Path:
    for name in files:
        (directory / name).write_bytes(b"x")
    (directory / "owner.json").write_text(json.dumps(config))
    return directory


def test_paths_are_resolved_against_the_directory(tmp_path: Path) -> None:
    config = {
        "policy": "0x5",
        "trust-roots": ["ark.cert"],
        "firmware": "OVMF.fd",
        "digests": ["ab" * 32],
        "secrets": {"luks-key": "key.txt"},
        "min-api": "1.49",
        "min-build": 3,
    }
    loaded = OwnerConfig.load(write(tmp_path, config, ("ark.cert", "OVMF.fd", "key.txt")))
    assert loaded.policy.to_int() == 0x5
    assert loaded.trust_roots == (tmp_path / "ark.cert",)
    assert loaded.firmware == tmp_path / "OVMF.fd"
    assert loaded.kernel is None
    assert loaded.digests == (bytes.fromhex("ab" * 32),)
    assert loaded.secrets == {"luks-key": tmp_path / "key.txt"}
    assert (loaded.min_api, loaded.min_build) == ((1, 49), 3)


def test_the_example_owner_json_loads_with_its_files(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "owner.json", tmp_path)
    example = json.loads((tmp_path / "owner.json").read_text())
    assert set(example) <= set(FIELDS)
    names = [*example["trust-roots"], *example["secrets"].values()]
    names += [example[k] for k in ("firmware", "kernel", "initrd")]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    loaded = OwnerConfig.load(tmp_path)
    assert loaded.firmware == tmp_path / "OVMF.amdsev.fd"
    assert loaded.cmdline == "console=ttyS0"  # as in examples/sev-direct-boot.xml
    assert "<cmdline>console=ttyS0</cmdline>" in (EXAMPLES / "sev-direct-boot.xml").read_text()


def test_every_key_is_documented_in_the_examples_readme() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for key in FIELDS:
        assert f"`{key}`" in text, key


def test_a_missing_owner_json_says_what_an_owner_directory_holds(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read .*owner\.json.*examples/owner\.json"):
        OwnerConfig.load(tmp_path)


@pytest.mark.parametrize(
    ("config", "files", "words"),
    [
        ("not json", (), "is not JSON"),
        ([1, 2], (), "holds a JSON object"),
        ({"trust-root": ["a"]}, (), "unknown key 'trust-root'"),
        ({"secret": {"luks-key": "k"}}, (), "unknown key 'secret'"),
        ({"trust-roots": "ark.cert"}, (), "'trust-roots' is a list"),
        ({"secrets": ["k"]}, (), "'secrets' is an object"),
        ({"secrets": {"luks-key": 1}}, (), "'secrets' is an object"),
        ({"firmware": 7}, (), "'firmware' is the firmware"),
        ({"policy": "nodbg,bogus"}, (), "'policy' is the guest policy"),
        ({"digests": ["zz"]}, (), "'digests' is a list"),
        ({"digests": ["ab"]}, (), "'digests' is a list"),  # not 32 bytes
        ({"min-api": "one"}, (), "'min-api'"),
        ({"min-build": "3"}, (), "'min-build'"),
        ({"es": [2]}, (), "'es'"),
        ({"firmware": "OVMF.fd"}, (), "'firmware' names .*OVMF.fd, which is not a file"),
        ({"secrets": {"luks-key": "gone"}}, (), "'secrets' names .*gone, which is not a file"),
    ],
)
def test_mistakes_are_refused_naming_the_key(
    tmp_path: Path, config: Any, files: tuple[str, ...], words: str
) -> None:
    if isinstance(config, str):
        (tmp_path / "owner.json").write_text(config)
    else:
        write(tmp_path, config, files)
    with pytest.raises(UsageError, match=words) as caught:
        OwnerConfig.load(tmp_path)
    assert str(tmp_path / "owner.json") in str(caught.value)


def test_owner_config_reads_the_sev_es_vcpus(tmp_path: Path) -> None:
    es = {"vcpus": 2, "vcpu-type": "EPYC-Rome", "legacy-vm-type": "on"}
    (tmp_path / "owner.json").write_text(json.dumps({"policy": "0x5", "es": es}))
    assert OwnerConfig.load(tmp_path).es == EsShape(2, "EPYC-Rome", "on")
    (tmp_path / "owner.json").write_text(json.dumps({"policy": "0x5"}))
    assert OwnerConfig.load(tmp_path).es == EsShape(1, "qemu64", "auto")


@pytest.mark.parametrize(
    ("es", "expected"),
    [
        ([2], "is an object"),
        ({"vcpu": 2}, r"unknown keys \['vcpu'\]"),
        ({"vcpus": "2"}, "vcpus is a count"),
        ({"vcpus": 0}, "vcpus is a count"),
        ({"vcpus": True}, "vcpus is a count"),
        ({"vcpu-type": 7}, "vcpu-type is a string"),
        ({"legacy-vm-type": None}, "legacy-vm-type is a string"),
    ],
)
def test_a_malformed_es_shape_is_refused_naming_it(
    tmp_path: Path, es: object, expected: str
) -> None:
    (tmp_path / "owner.json").write_text(json.dumps({"policy": "0x5", "es": es}))
    with pytest.raises(UsageError, match=expected):
        OwnerConfig.load(tmp_path)
