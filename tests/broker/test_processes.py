"""Two ``sevlaunch broker serve`` processes on one database: a launch started on one finishes
on the other after the first is killed mid-flow; both sweep expired launches without doing it
twice (the API, ``broker launch list``/``show`` and the dashboard then show them expired); a
launcher's limit holds across them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from lxml import html  # type: ignore[import-untyped]

from sevlaunch.broker.client import BrokerClient
from sevlaunch.broker.schema import launches
from sevlaunch.cli import cli
from sevlaunch.errors import BrokerError, LimitExceededError
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
        assert [(r.instance, r.outcome) for r in rows] == [
            ("proc-a", "ok"),
            ("proc-b", "released"),
        ]


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_two_processes_expire_every_stale_launch_once(
    tmp_path: Path, db_url: str, platform: FakePlatform
) -> None:
    """Both instances sweep (every 0.1 s, launches live 1 s): each launch expires exactly once,
    with its keys erased, whichever instance got it; one of the instances was killed after a
    launch was started on it, and its launch expires all the same."""
    files = write_files(tmp_path)
    a_sock, b_sock = tmp_path / "a.sock", tmp_path / "b.sock"
    fast = ("--launch-ttl", "1", "--sweep-interval", "0.1")
    with (
        broker_process(db_url, files, a_sock, "sweep-a", *fast) as a,
        broker_process(db_url, files, b_sock, "sweep-b", *fast),
    ):
        with BrokerClient(f"unix:{a_sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
        ids = []
        for sock in (a_sock, b_sock) * 3:
            with BrokerClient(f"unix:{sock}", LAUNCHER_TOKEN) as launcher:
                ids.append(launcher.start_launch("web", platform.node).launch_id)
        a.stop(kill=True)
        with BrokerClient(f"unix:{b_sock}", OWNER_TOKEN) as owner:

            def all_expired() -> bool:
                return len(owner.launches(state="expired")) == len(ids)

            assert _wait_for(all_expired), owner.launches()
            expiries = [e for e in owner.audit(limit=1000) if e.action == "launch.expire"]
        _expired_in_cli_and_dashboard(b_sock, files.owner_token, ids)
    assert sorted(str(e.launch) for e in expiries) == sorted(ids)
    assert {e.instance for e in expiries} <= {"sweep-a", "sweep-b"}
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            kept = conn.execute(
                sa.select(sa.func.count()).where(launches.c.sealed_keys.is_not(None))
            ).scalar_one()
    finally:
        engine.dispose()
    assert kept == 0


def _expired_in_cli_and_dashboard(sock: Path, owner_token: Path, ids: list[str]) -> None:
    """``broker launch list``/``show`` and the dashboard's launch rows, from the instance left
    standing, show each launch expired (and never awaiting a measurement)."""
    env = {"SEVLAUNCH_BROKER_URL": f"unix:{sock}", "SEVLAUNCH_OWNER_TOKEN_FILE": str(owner_token)}
    listed = CliRunner().invoke(cli, ["broker", "launch", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: (r["state"], r["reason"]) for r in json.loads(listed.output)}
    assert rows == dict.fromkeys(ids, ("expired", "expired"))
    shown = CliRunner().invoke(cli, ["broker", "launch", "show", ids[0]], env=env)
    assert "state:    expired (expired)" in shown.output, shown.output
    transport = httpx.HTTPTransport(uds=str(sock))
    headers = {"Authorization": f"Bearer {OWNER_TOKEN.decode()}"}
    with httpx.Client(transport=transport, base_url="http://broker", headers=headers) as web:
        page = web.get("/ui/fragments/launches")
    assert page.status_code == 200
    tree = html.fromstring(page.text)
    for launch_id in ids:
        (row,) = tree.xpath(f'//tr[@data-launch="{launch_id}"]')
        assert "decision-expired" in row.get("class"), row.get("class")
        assert row.xpath('string(.//span[contains(@class, "decision")])') == "expired"
    assert "awaiting" not in page.text


def test_open_launch_limit_holds_across_processes(
    tmp_path: Path, db_url: str, platform: FakePlatform
) -> None:
    """Twelve concurrent starts by one launcher (max 3 open) through two instances: three
    launches, nine 429s."""
    files = write_files(tmp_path)
    a_sock, b_sock = tmp_path / "a.sock", tmp_path / "b.sock"
    with (
        broker_process(db_url, files, a_sock, "limit-a"),
        broker_process(db_url, files, b_sock, "limit-b"),
    ):
        with BrokerClient(f"unix:{a_sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST])
            token = str(owner.add_launcher("capped", max_open=3).token).encode()
        barrier = threading.Barrier(12)
        outcomes: list[str] = []

        def attempt(sock: Path) -> None:
            with BrokerClient(f"unix:{sock}", token) as launcher:
                barrier.wait()
                try:
                    launcher.start_launch("web", platform.node)
                    outcomes.append("ok")
                except LimitExceededError as exc:
                    outcomes.append(exc.reason)

        threads = [threading.Thread(target=attempt, args=(s,)) for s in (a_sock, b_sock) * 6]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["too-many-open-launches"] * 9


def test_a_launch_outlives_a_broker_restart_and_a_person_is_told_at_once(
    tmp_path: Path, sqlite_url: str, platform: FakePlatform
) -> None:
    """The VM tool's client (``reconnect``) retries a measurement sent while nothing listens
    until the broker is back (the request never reached it, so nothing is repeated); a client
    without it, as the CLI's, fails at once naming the broker."""
    files = write_files(tmp_path)
    sock = tmp_path / "r.sock"
    with broker_process(sqlite_url, files, sock, "restart-1") as first:
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
        with BrokerClient(f"unix:{sock}", LAUNCHER_TOKEN) as launcher:
            launch = launcher.start_launch("web", platform.node)
        first.stop(kill=True)
    keys = platform.launch_start(launch.dh_cert_b64, launch.session_b64, POLICY)
    measurement = platform.launch_measure(keys, DIGEST, POLICY)
    info = platform.launch_info(measurement, POLICY)
    with BrokerClient(f"unix:{sock}", LAUNCHER_TOKEN) as impatient:
        with pytest.raises(BrokerError, match="broker: cannot reach") as caught:
            impatient.finish_launch(launch.launch_id, info)
        assert caught.value.reason == "unreachable"
    answers: list[object] = []

    def finish() -> None:
        with BrokerClient(f"unix:{sock}", LAUNCHER_TOKEN, reconnect=60.0) as patient:
            try:
                answers.append(patient.finish_launch(launch.launch_id, info))
            except BrokerError as exc:
                answers.append(exc)

    waiting = threading.Thread(target=finish)
    waiting.start()
    with broker_process(sqlite_url, files, sock, "restart-2"):
        waiting.join(60)
        (released,) = answers
        assert not isinstance(released, BaseException), released
        wire = released.to_wire()  # type: ignore[attr-defined]
        table = FakePlatform.launch_secret(
            keys, measurement, wire["sev-secret-header"], wire["sev-secret"]
        )
        assert table.get(LUKS) == SECRET
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            rows = owner.audit(launch=launch.launch_id)
    assert [(r.instance, r.outcome) for r in rows] == [
        ("restart-1", "ok"),
        ("restart-2", "released"),
    ]
