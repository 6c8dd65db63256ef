"""Named launchers in process: the rate bucket's arithmetic, tokens kept as hashes, the
default launcher of the token file, administration through the API."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.broker.launcher_store import Gate
from sevlaunch.broker.launchers import OPEN_RETRY, LauncherLimits, admit
from sevlaunch.broker.schema import launchers
from sevlaunch.errors import LimitExceededError, UsageError
from tests.broker.conftest import LAUNCHER, LAUNCHER_TOKEN, OWNER, Instance, setup_owner
from tests.broker.fakeplatform import FakePlatform


def _gate(bucket: float | None = None, at: float | None = None, open_: int = 0) -> Gate:
    return Gate(False, None, None, None, bucket, at, open_, 1000.0 if open_ else None, "g")


def test_a_full_bucket_admits_a_burst_then_says_when_to_retry() -> None:
    limits = LauncherLimits(max_open=100, rate=6.0, burst=3)  # one launch every 10 s
    level, now = None, 0.0
    for _ in range(3):
        level = admit(_gate(level, now), limits, now, "l")
    with pytest.raises(LimitExceededError) as refused:
        admit(_gate(level, now), limits, now, "l")
    assert (refused.value.reason, refused.value.retry_after) == ("rate-limited", 10)
    assert admit(_gate(level, now), limits, now + 10, "l") == pytest.approx(0.0)


def test_the_open_limit_says_to_retry_soon_or_at_the_first_expiry() -> None:
    limits = LauncherLimits(max_open=2, rate=60, burst=10)
    with pytest.raises(LimitExceededError) as refused:
        admit(_gate(open_=2), limits, 0.0, "l")
    assert (refused.value.reason, refused.value.retry_after) == ("too-many-open-launches", 5)
    near = Gate(False, None, None, None, None, None, 2, 2.5, "g")
    with pytest.raises(LimitExceededError) as soon:
        admit(near, limits, 0.0, "l")
    assert 1 <= soon.value.retry_after <= OPEN_RETRY


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=60),
    rate=st.floats(min_value=0.5, max_value=600),
    burst=st.integers(min_value=1, max_value=20),
)
def test_no_sequence_of_requests_gets_more_than_burst_plus_rate(
    gaps: list[float], rate: float, burst: int
) -> None:
    limits = LauncherLimits(max_open=10_000, rate=rate, burst=burst)
    level: float | None = None
    at: float | None = None
    now, admitted, refusals = 0.0, 0, []
    for gap in gaps:
        now += gap
        try:
            level = admit(_gate(level, at), limits, now, "l")
        except LimitExceededError as exc:
            refusals.append(exc.retry_after)
            continue
        at = now
        admitted += 1
        assert admitted <= burst + rate / 60 * now + 1e-9
    assert all(wait >= 1 for wait in refusals)


def test_limits_must_be_positive() -> None:
    for bad in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):
        with pytest.raises(UsageError):
            LauncherLimits(*bad)


def _add(instance: Instance, name: str, **limits: object) -> dict[str, object]:
    r = instance.client.post("/v1/launchers", headers=OWNER, json={"name": name, **limits})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def test_a_new_launchers_token_is_shown_once_and_stored_as_its_hash(instance: Instance) -> None:
    made = _add(instance, "ci", maxOpen=3)
    token = str(made["token"])
    assert token.startswith("sevl_")
    assert len(token) > 40
    assert (made["maxOpen"], made["rate"], made["defaults"]) == (3, 600.0, ["rate", "burst"])
    listed = instance.client.get("/v1/launchers", headers=OWNER).json()
    assert [r["name"] for r in listed] == ["ci", "default"]
    assert token not in str(listed)
    with instance.broker.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(launchers.c.name, launchers.c.token_hash)).all())
    assert stored["ci"] == hashlib.sha256(token.encode()).hexdigest()
    assert instance.broker.authenticate(token.encode()) == "ci"
    assert instance.broker.authenticate(b"sevl_" + b"x" * 43) is None


def test_launcher_administration_is_the_owners(instance: Instance) -> None:
    r = instance.client.post("/v1/launchers", headers=LAUNCHER, json={"name": "mine"})
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    _add(instance, "ci")
    r = instance.client.post("/v1/launchers", headers=OWNER, json={"name": "ci"})
    assert (r.status_code, r.json()["error"]) == (409, "launcher-exists")
    r = instance.client.post("/v1/launchers", headers=OWNER, json={"name": "default"})
    assert r.status_code == 400
    assert "--launcher-token-file" in r.json()["detail"]
    r = instance.client.post("/v1/launchers", headers=OWNER, json={"name": "x", "rate": 0})
    assert r.status_code == 422
    r = instance.client.post("/v1/launchers/nobody/revoke", headers=OWNER)
    assert (r.status_code, r.json()["error"]) == (404, "no-such-launcher")
    assert instance.client.post("/v1/launchers/ci/revoke", headers=OWNER).status_code == 200
    r = instance.client.post("/v1/launchers/ci/revoke", headers=OWNER)
    assert (r.status_code, r.json()["error"]) == (409, "launcher-revoked")


def test_the_token_file_is_the_default_launcher_and_a_new_file_rotates_it(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    assert instance.broker.authenticate(LAUNCHER_TOKEN) == "default"
    instance.broker.ensure_default_launcher(LAUNCHER_TOKEN)  # a restart: nothing changes
    rotated = b"rotated-launcher-token-0123456789"
    instance.broker.ensure_default_launcher(rotated)
    assert instance.broker.authenticate(LAUNCHER_TOKEN) is None
    assert instance.broker.authenticate(rotated) == "default"
    actions = [r.action for r in instance.broker.audit(launcher="default")]
    assert actions == ["launcher.add", "launcher.rotate"]
    made = _add(instance, "ci")
    with pytest.raises(UsageError, match="token of a named launcher"):
        instance.broker.ensure_default_launcher(str(made["token"]).encode())
