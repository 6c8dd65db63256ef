"""Several broker instances on one database: any of them finishes a launch another started,
and exactly one of them releases a given launch."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.broker.conftest import (
    DIGEST,
    LAUNCHER,
    LUKS,
    POLICY,
    SECRET,
    Instance,
    setup_owner,
    start,
)
from tests.broker.fakeplatform import FakePlatform


def test_launch_started_on_one_instance_finishes_on_another(
    make_instance: Callable[..., Instance], db_url: str, platform: FakePlatform
) -> None:
    a = make_instance(db_url, "broker-a")
    b = make_instance(db_url, "broker-b")
    setup_owner(a.client, platform)
    launch = start(a.client, platform)
    a.broker.engine.dispose()  # instance A goes away mid-flow
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    measurement = platform.launch_measure(keys, DIGEST, POLICY)
    r = b.client.post(
        f"/v1/launches/{launch['id']}/measurement",
        headers=LAUNCHER,
        json=platform.info(measurement, POLICY),
    )
    assert r.status_code == 200, r.text
    table = FakePlatform.launch_secret(
        keys, measurement, r.json()["sev-secret-header"], r.json()["sev-secret"]
    )
    assert table.get(LUKS) == SECRET
    row = b.broker.launch(str(launch["id"]))
    assert (row.created_by, row.finished_by, row.state) == ("broker-a", "broker-b", "released")


def test_concurrent_measurements_release_at_most_once(
    make_instance: Callable[..., Instance], db_url: str, platform: FakePlatform
) -> None:
    instances = [make_instance(db_url, f"broker-{i}") for i in range(4)]
    setup_owner(instances[0].client, platform)
    launch = start(instances[0].client, platform)
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
    barrier = threading.Barrier(len(instances) * 2)
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def attempt(instance: Instance) -> None:
        barrier.wait()
        r = instance.client.post(
            f"/v1/launches/{launch['id']}/measurement", headers=LAUNCHER, json=body
        )
        with lock:
            results.append((r.status_code, r.json().get("error")))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in instances * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == sorted([(200, None)] + [(403, "replay")] * 7, key=str)
