"""Each broker process keeps workloads, trust roots and verified platforms; a change made
through another instance must take effect at once, and secrets are never served from a copy."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from sevlaunch.broker import store
from sevlaunch.broker.service import Broker, LaunchStarted, NewWorkload
from sevlaunch.errors import LaunchRefusedError
from tests.broker.conftest import DIGEST, LUKS, POLICY, SECRET, Instance
from tests.broker.fakeplatform import FakePlatform

OTHER_DIGEST = hashlib.sha256(b"another OVMF").digest()


def _setup(broker: Broker, platform: FakePlatform) -> None:
    broker.add_root(platform.ca_file, "lab")
    broker.add_workload(_workload())


def _workload(
    policies: tuple[int, ...] = (POLICY,), digest: bytes = DIGEST, secret: bytes = SECRET
) -> NewWorkload:
    return NewWorkload("web", policies, (digest,), secrets={"luks-key": secret})


def _start(broker: Broker, platform: FakePlatform, policy: int | None = None) -> LaunchStarted:
    chain = platform.pek.to_bytes() + platform.oca.to_bytes() + platform.cek.to_bytes()
    return broker.start_launch("web", platform.pdh.to_bytes(), chain, policy=policy)


def _finish(
    broker: Broker, platform: FakePlatform, started: LaunchStarted, digest: bytes = DIGEST
) -> bytes | None:
    """The luks-key the guest receives."""
    godh, session = (base64.b64encode(b).decode() for b in (started.godh, started.session))
    keys = platform.launch_start(godh, session, started.policy)
    measurement = platform.launch_measure(keys, digest, started.policy)
    report = platform.launch_info(measurement, started.policy)
    released = broker.finish_launch(started.id, report)
    assert released.secret_header is not None
    assert released.secret is not None
    table = FakePlatform.launch_secret(keys, measurement, released.secret_header, released.secret)
    return table.get(LUKS)


@pytest.fixture
def pair(make_instance: Callable[..., Instance], db_url: str) -> tuple[Broker, Broker]:
    """Two instances on one database; ``a`` administers, ``b`` has warm copies."""
    return make_instance(db_url, "broker-a").broker, make_instance(db_url, "broker-b").broker


def test_a_workload_replaced_elsewhere_is_seen_at_once(
    pair: tuple[Broker, Broker], platform: FakePlatform
) -> None:
    a, b = pair
    _setup(a, platform)
    assert _finish(b, platform, _start(b, platform)) == SECRET  # b now holds copies
    a.remove_workload("web")
    a.add_workload(_workload(policies=(0x1,), digest=OTHER_DIGEST))
    with pytest.raises(LaunchRefusedError) as refused:
        _start(b, platform, policy=POLICY)
    assert refused.value.reason == "policy-not-allowed"
    started = _start(b, platform)
    assert started.policy == 0x1
    assert _finish(b, platform, started, OTHER_DIGEST) == SECRET


def test_a_finish_checks_the_digests_current_when_it_runs(
    pair: tuple[Broker, Broker], platform: FakePlatform
) -> None:
    a, b = pair
    _setup(a, platform)
    _finish(b, platform, _start(b, platform))  # b copies workload "web" with DIGEST
    a.remove_workload("web")
    a.add_workload(_workload(digest=OTHER_DIGEST))
    with pytest.raises(LaunchRefusedError) as refused:
        _finish(b, platform, _start(a, platform), DIGEST)
    assert refused.value.reason == "measurement-mismatch"


def test_a_root_removed_elsewhere_stops_remembered_platforms(
    pair: tuple[Broker, Broker], platform: FakePlatform
) -> None:
    a, b = pair
    _setup(a, platform)
    _start(b, platform)
    _start(b, platform)  # from b's memory
    a.remove_root("lab")
    with pytest.raises(LaunchRefusedError) as refused:
        _start(b, platform)
    assert refused.value.reason == "platform-not-verified"
    outcomes = [(r.action, r.outcome, r.instance) for r in a.audit()][-3:]
    assert outcomes == [
        ("launch.start", "ok", "broker-b"),
        ("trust.remove", "ok", "broker-a"),
        ("launch.start", "refused", "broker-b"),
    ]


def test_a_secret_changed_elsewhere_is_released_new(
    pair: tuple[Broker, Broker], platform: FakePlatform
) -> None:
    a, b = pair
    _setup(a, platform)
    _finish(b, platform, _start(b, platform))
    a.set_secret("web", "luks-key", b"the new passphrase")
    assert _finish(b, platform, _start(b, platform)) == b"the new passphrase"


def test_the_generation_moves_with_roots_and_workloads_only(
    make_instance: Callable[..., Instance], sqlite_url: str, platform: FakePlatform
) -> None:
    broker = make_instance(sqlite_url).broker

    def generation() -> str:
        with broker.engine.connect() as conn:
            return store.generation(conn)

    seen = [generation()]
    broker.add_root(platform.ca_file, "lab")
    seen.append(generation())
    broker.add_workload(_workload())
    seen.append(generation())
    broker.set_secret("web", "luks-key", b"other")
    assert generation() == seen[-1]
    broker.remove_workload("web")
    seen.append(generation())
    broker.remove_root("lab")
    seen.append(generation())
    assert len(set(seen)) == len(seen)


def test_a_stale_copy_is_replaced_in_the_transaction_that_finds_it(
    pair: tuple[Broker, Broker], platform: FakePlatform
) -> None:
    a, b = pair
    _setup(a, platform)
    _start(b, platform)
    old = b.catalog.view
    a.add_workload(NewWorkload("other", (POLICY,), (DIGEST,)))
    _start(b, platform)
    assert b.catalog.view is not old
    assert b.catalog.view.generation != old.generation
    assert set(b.catalog.view.workloads) == {"web"}
