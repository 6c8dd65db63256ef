"""Two ``sevlaunch broker serve`` processes on one database: a launch started on one finishes
on the other after the first is killed mid-flow."""

from __future__ import annotations

from pathlib import Path

from sevlaunch.broker.client import BrokerClient
from tests.broker.conftest import DIGEST, LAUNCHER_TOKEN, LUKS, OWNER_TOKEN, POLICY, SECRET
from tests.broker.fakeplatform import FakePlatform
from tests.broker.servers import broker_process, write_files


def test_killed_instance_leaves_its_launch_to_the_other(
    tmp_path: Path, db_url: str, platform: FakePlatform
) -> None:
    files = write_files(tmp_path)
    a_sock, b_sock = tmp_path / "a.sock", tmp_path / "b.sock"
    with (
        broker_process(db_url, files, a_sock, "proc-a") as a,
        broker_process(db_url, files, b_sock, "proc-b"),
    ):
        with BrokerClient(f"unix:{a_sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
        with BrokerClient(f"unix:{a_sock}", LAUNCHER_TOKEN) as launcher:
            launch = launcher.start_launch("web", platform.node)
        a.stop(kill=True)  # as the OOM killer would
        keys = platform.launch_start(launch.dh_cert_b64, launch.session_b64, POLICY)
        measurement = platform.launch_measure(keys, DIGEST, POLICY)
        with BrokerClient(f"unix:{b_sock}", LAUNCHER_TOKEN) as launcher:
            released = launcher.finish_launch(
                launch.launch_id, platform.launch_info(measurement, POLICY)
            )
        wire = released.to_wire()
        table = FakePlatform.launch_secret(
            keys, measurement, wire["sev-secret-header"], wire["sev-secret"]
        )
        assert table.get(LUKS) == SECRET
        with BrokerClient(f"unix:{b_sock}", OWNER_TOKEN) as owner:
            rows = owner.audit(launch=launch.launch_id)
        assert [(r["instance"], r["outcome"]) for r in rows] == [
            ("proc-a", "ok"),
            ("proc-b", "released"),
        ]
