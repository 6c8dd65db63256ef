"""Launch expiry with an injected clock: the sweep expires stale launches and erases their keys,
once, even with several instances sweeping one database at once and measurements racing it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from sevlaunch.broker.schema import audit, launches
from sevlaunch.broker.sweeper import Sweeper
from tests.broker.conftest import DIGEST, LAUNCHER, OWNER, POLICY, Instance, setup_owner, start
from tests.broker.fakeplatform import FakePlatform


def _expiries(instance: Instance) -> list[str]:
    with instance.broker.engine.connect() as conn:
        rows = conn.execute(sa.select(audit.c.launch).where(audit.c.action == "launch.expire"))
        return [str(r[0]) for r in rows]


def _keys(instance: Instance, launch_id: str) -> bytes | None:
    with instance.broker.engine.connect() as conn:
        value = conn.execute(
            sa.select(launches.c.sealed_keys).where(launches.c.id == launch_id)
        ).scalar_one()
    return None if value is None else bytes(value)


def test_a_stale_launch_expires_with_its_keys_erased_and_shows_as_expired(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    stale = start(instance.client, platform)
    instance.clock.now += 300
    fresh = start(instance.client, platform)
    assert instance.broker.expire() == 0  # nothing is due yet
    instance.clock.now += 301  # past the first launch's 600 s, not the second's
    assert _keys(instance, str(stale["id"])) is not None
    assert instance.broker.expire() == 1
    assert _keys(instance, str(stale["id"])) is None
    assert _keys(instance, str(fresh["id"])) is not None
    shown = instance.client.get(f"/v1/launches/{stale['id']}", headers=LAUNCHER).json()
    assert (shown["state"], shown["reason"], shown["launcher"]) == ("expired", "expired", "default")
    assert shown["finishedAt"] == instance.clock.now
    listed = instance.client.get("/v1/launches", headers=OWNER, params={"state": "expired"})
    assert [r["id"] for r in listed.json()] == [stale["id"]]
    assert instance.broker.expire() == 0  # expired once
    assert _expiries(instance) == [stale["id"]]
    entry = instance.client.get("/v1/audit", headers=OWNER, params={"launch": stale["id"]}).json()
    assert [(e["actor"], e["action"], e["outcome"]) for e in entry][-1] == (
        "sweeper",
        "launch.expire",
        "expired",
    )


def test_a_measurement_after_the_sweep_is_refused_as_expired(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
    instance.clock.now += 601
    assert instance.broker.expire() == 1
    r = instance.client.post(
        f"/v1/launches/{launch['id']}/measurement", headers=LAUNCHER, json=body
    )
    assert (r.status_code, r.json()["error"]) == (403, "expired")
    assert "sev-secret" not in r.json()


def test_a_late_measurement_before_the_sweep_expires_the_launch_itself(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
    instance.clock.now += 601
    r = instance.client.post(
        f"/v1/launches/{launch['id']}/measurement", headers=LAUNCHER, json=body
    )
    assert (r.status_code, r.json()["error"]) == (403, "expired")
    assert _keys(instance, str(launch["id"])) is None
    assert instance.broker.launch(str(launch["id"])).state == "expired"
    assert instance.broker.expire() == 0


def test_settled_launches_lose_their_keys_and_are_never_expired(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
    r = instance.client.post(
        f"/v1/launches/{launch['id']}/measurement", headers=LAUNCHER, json=body
    )
    assert r.status_code == 200
    assert _keys(instance, str(launch["id"])) is None
    instance.clock.now += 10_000
    assert instance.broker.expire() == 0
    assert instance.broker.launch(str(launch["id"])).state == "released"


def test_sweeps_go_in_batches(
    make_instance: Callable[..., Instance], sqlite_url: str, platform: FakePlatform
) -> None:
    instance = make_instance(sqlite_url, sweep_batch=3)
    setup_owner(instance.client, platform)
    ids = [str(start(instance.client, platform)["id"]) for _ in range(7)]
    instance.clock.now += 601
    assert instance.broker.expire() == 7
    assert sorted(_expiries(instance)) == sorted(ids)


def test_instances_sweeping_together_expire_each_launch_once(
    make_instance: Callable[..., Instance], db_url: str, platform: FakePlatform
) -> None:
    """Four instances sweep at once (small batches) while a fifth, whose clock is a second
    behind theirs, measures one of the launches: every launch ends exactly once, released or
    expired, and each expiry has exactly one audit row."""
    sweepers = [make_instance(db_url, f"sweeper-{i}", sweep_batch=4) for i in range(4)]
    finisher = make_instance(db_url, "finisher")
    setup_owner(finisher.client, platform)
    stale = {str(start(finisher.client, platform)["id"]) for _ in range(24)}
    racing = start(finisher.client, platform)
    keys = platform.launch_start(str(racing["dhCert"]), str(racing["session"]), POLICY)
    body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
    for s in sweepers:
        s.clock.now += 600.5  # every launch is due for the sweepers
    finisher.clock.now += 599.5  # and still open for the finisher
    barrier = threading.Barrier(len(sweepers) + 1)
    counts: list[int] = []
    outcome: list[int] = []

    def sweep(instance: Instance) -> None:
        barrier.wait()
        counts.append(instance.broker.expire())

    def measure() -> None:
        barrier.wait()
        url = f"/v1/launches/{racing['id']}/measurement"
        outcome.append(finisher.client.post(url, headers=LAUNCHER, json=body).status_code)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    threads.append(threading.Thread(target=measure))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expired = _expiries(finisher)
    assert len(expired) == len(set(expired)) == sum(counts)
    assert stale <= set(expired)
    state = finisher.broker.launch(str(racing["id"])).state
    assert (state, outcome) in (("expired", [403]), ("released", [200]))
    assert (str(racing["id"]) in expired) == (state == "expired")
    with finisher.broker.engine.connect() as conn:
        rows = conn.execute(sa.select(launches.c.state, sa.func.count()).group_by(launches.c.state))
        by_state = {str(k): int(v) for k, v in rows}
    assert by_state == {"expired": len(expired), **({"released": 1} if state == "released" else {})}


def test_a_failed_sweep_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    done = threading.Event()

    def expire() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("sweep", {}, Exception("database is gone"))
        done.set()
        return 2

    sweeper = Sweeper(expire, 0.01)
    with caplog.at_level(logging.INFO, "sevlaunch.broker"):
        sweeper.start()
        assert done.wait(10)
        sweeper.stop()
    assert len(calls) >= 2
    assert "launch sweep failed" in caplog.text
    assert "database is gone" in caplog.text
    assert "expired 2 launch(es)" in caplog.text
