"""The guest owner run locally (``--owner-dir``): the owner toolkit on DIR/owner.json decides
steps 4, 5 and 11 in the tool's own process, against the same real host as the broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sevlaunch.errors import UsageError
from sevlaunch.orchestrate.demo import DISK_LABEL
from sevlaunch.orchestrate.owner_port import EsShape, LocalOwner, OwnerConfig
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo, SecretRelease
from sevlaunch.vmm.ovmf_image import make_image
from tests.orchestrate.stack import RunningStack, unique, wait_for


class ReplayingLocalOwner(LocalOwner):
    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        super().attest(launch_id, launch_info, configuration)
        return super().attest(launch_id, launch_info, configuration)


def test_owner_config_resolves_paths_against_the_directory(tmp_path: Path) -> None:
    (tmp_path / "owner.json").write_text(
        json.dumps(
            {
                "policy": "0x5",
                "trust-roots": ["ark.cert"],
                "firmware": "OVMF.fd",
                "digests": ["ab" * 32],
                "secrets": {"luks-key": "key.txt"},
            }
        )
    )
    config = OwnerConfig.load(tmp_path)
    assert config.policy.to_int() == 0x5
    assert config.trust_roots == (tmp_path / "ark.cert",)
    assert config.firmware == tmp_path / "OVMF.fd"
    assert config.kernel is None
    assert config.digests == (bytes.fromhex("ab" * 32),)
    assert config.secrets == {"luks-key": tmp_path / "key.txt"}


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


def test_the_es_vcpus_go_into_the_expected_digest(tmp_path: Path) -> None:
    (tmp_path / "OVMF.fd").write_bytes(make_image(1 << 20, seed=b"es-shape"))
    digests = []
    for vcpus in (1, 2):
        config = {"policy": "0x5", "firmware": "OVMF.fd", "es": {"vcpus": vcpus}}
        (tmp_path / "owner.json").write_text(json.dumps(config))
        digests.append(LocalOwner(OwnerConfig.load(tmp_path))._digests)
    assert digests[0] != digests[1]


def test_owner_config_without_owner_json_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"owner\.json"):
        OwnerConfig.load(tmp_path)


def test_local_owner_needs_something_to_check_the_measurement_against(tmp_path: Path) -> None:
    (tmp_path / "owner.json").write_text("{}")
    with pytest.raises(UsageError, match="neither a firmware nor digests"):
        LocalOwner(OwnerConfig.load(tmp_path))


def test_local_owner_launch_boots(env: RunningStack, tmp_path: Path) -> None:
    owner = LocalOwner(OwnerConfig.load(env.owner_dir(tmp_path / "owner")))
    name = unique("local")
    result = env.launch(env.xml(name), owner=owner)
    assert result.ok, result.message
    assert f"disk label '{DISK_LABEL}'" in result.console
    env.destroy(name)


@pytest.mark.parametrize(
    ("trust_ark", "firmware", "owner_class", "step", "expected"),
    [
        (False, "firmware", LocalOwner, 4, "ARK"),
        (True, "tampered", LocalOwner, 11, "expected launch digest(s)"),
        (True, "firmware", ReplayingLocalOwner, 11, "single-use"),
    ],
    ids=["no-trust-roots", "tampered-firmware", "replay"],
)
def test_local_owner_refusals(
    env: RunningStack,
    tmp_path: Path,
    trust_ark: bool,
    firmware: str,
    owner_class: type[LocalOwner],
    step: int,
    expected: str,
) -> None:
    owner = owner_class(OwnerConfig.load(env.owner_dir(tmp_path / "o", trust_ark=trust_ark)))
    name, contexts = unique("local-refused"), env.guest_contexts()
    result = env.launch(env.xml(name, getattr(env.art, firmware)), owner=owner)
    assert not result.ok
    assert result.failed_step == step, result.message
    assert expected in (result.error or "")
    assert name not in env.running()
    wait_for(lambda: env.guest_contexts() == contexts, 10.0, "the launch context to be freed")
