"""The guest owner run locally (``--owner-dir``): the owner toolkit on DIR/owner.json decides
steps 4, 5 and 11 in the tool's own process, against the same real host as the broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sevlaunch.errors import BrokerError, UsageError
from sevlaunch.orchestrate.demo import DISK_LABEL, WORKLOAD
from sevlaunch.orchestrate.owner_config import OwnerConfig
from sevlaunch.orchestrate.owner_port import BrokerOwner, LocalOwner
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


def test_the_es_vcpus_go_into_the_expected_digest(tmp_path: Path) -> None:
    (tmp_path / "OVMF.fd").write_bytes(make_image(1 << 20, seed=b"es-shape"))
    digests = []
    for vcpus in (1, 2):
        config = {"policy": "0x5", "firmware": "OVMF.fd", "es": {"vcpus": vcpus}}
        (tmp_path / "owner.json").write_text(json.dumps(config))
        digests.append(LocalOwner(OwnerConfig.load(tmp_path))._digests)
    assert digests[0] != digests[1]


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


def test_the_broker_owner_waits_for_its_broker_only_once_it_answered(
    env: RunningStack, tmp_path: Path
) -> None:
    """A wrong broker address fails step 4 at once; once step 4 got an answer, the later calls
    wait (up to RECONNECT s) for that broker to come back after a restart."""
    with env.host() as host:
        node = host.node_sev_info()
    absent = BrokerOwner(f"unix:{tmp_path / 'absent.sock'}", env.launcher_token, WORKLOAD)
    with pytest.raises(BrokerError, match="cannot reach") as caught:
        absent.begin(node)
    assert caught.value.reason == "unreachable"
    assert absent.client.reconnect == 0
    owner = env.owner()
    assert owner.client.reconnect == 0
    name = unique("reconnect")
    result = env.launch(env.xml(name), owner=owner)
    assert result.ok, result.message
    env.destroy(name)
    assert owner.client.reconnect == BrokerOwner.RECONNECT > 0
