"""The broker's records as its client types them: exact round trips, the same objects the API's
models send (so a field added to the API and not here fails), and a typed error naming the key
for every malformed object (mutation fuzzing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.broker import models as m
from sevlaunch.errors import FormatError
from sevlaunch.protocol.admin import AuditEntry, Launcher, LaunchRecord, TrustRoot, Workload

names = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20)
times = st.floats(0, 4e9, allow_nan=False)
optional = st.none() | names
roots = st.builds(TrustRoot, names, names, names, st.booleans(), st.booleans(), times)
workloads = st.builds(
    Workload,
    names,
    st.lists(st.integers(0, 0xFFFF_FFFF), max_size=4).map(tuple),
    st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
    st.tuples(st.integers(0, 255), st.integers(0, 255)),
    st.integers(0, 255),
    st.lists(names, max_size=3).map(tuple),
    times,
)
launchers = st.builds(
    Launcher,
    names,
    times,
    st.none() | times,
    st.integers(1, 10**6),
    st.floats(0.001, 1e6),
    st.integers(1, 10**6),
    st.integers(0, 100),
    st.lists(st.sampled_from(["max_open", "rate", "burst"]), unique=True).map(tuple),
    st.none() | names,
)
launches = st.builds(
    LaunchRecord, names, names, names, optional, st.integers(0, 0xFFFF), times, times,
    st.none() | times, names,
)  # fmt: skip
details = st.none() | st.dictionaries(names, st.integers() | names | st.lists(names), max_size=3)
entries = st.builds(
    AuditEntry, st.integers(0, 10**9), times, names, names, names, names, optional, optional,
    optional, details, optional,
)  # fmt: skip
RECORDS = (
    (TrustRoot, roots),
    (Workload, workloads),
    (Launcher, launchers),
    (LaunchRecord, launches),
    (AuditEntry, entries),
)


@pytest.mark.parametrize(("kind", "strategy"), RECORDS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_record_round_trips_through_json(kind: Any, strategy: Any) -> None:
    @given(strategy)
    def check(record: Any) -> None:
        wire = json.loads(json.dumps(record.to_wire()))
        assert kind.from_wire(wire) == record
        assert kind.from_wire(wire).to_wire() == wire

    check()


def _api_objects() -> list[tuple[Any, dict[str, Any]]]:
    """One object of each of the API's answer models, as the broker serialises it."""
    root = m.TrustRootOut(
        name="milan", fingerprint="ab" * 32, key_id="k1", amd=True, has_ask=True, created_at=1.5
    )
    workload = m.WorkloadOut(
        name="web", policies=[1, 5], digests=["00" * 32], min_api_major=1, min_api_minor=49,
        min_build=3, secrets=["736869e5-84f0-4973-92ec-06879ce3da0b"], created_at=2.0,
    )  # fmt: skip
    limits: dict[str, Any] = {
        "max_open": 4,
        "rate": 10.0,
        "burst": 2,
        "open": 1,
        "defaults": ["rate"],
    }
    launcher = m.LauncherOut(name="ci", created_at=3.0, revoked_at=None, **limits)
    made = m.NewLauncherOut(name="ci", created_at=3.0, revoked_at=4.0, token="t" * 32, **limits)
    launch = m.LaunchStateOut(
        id="0" * 32, workload="web", state="refused", reason="policy-mismatch", policy=1,
        created_at=5.0, expires_at=6.0, finished_at=5.5, launcher="ci",
    )  # fmt: skip
    entry = m.AuditOut(
        id=7, at=8.0, instance="a", actor="launcher:ci", action="launch.finish",
        outcome="refused", reason="replay", workload="web", launch="0" * 32,
        detail={"checks": [{"name": "policy", "verdict": "fail"}]}, launcher="ci",
    )  # fmt: skip
    pairs = [(TrustRoot, root), (Workload, workload), (Launcher, launcher), (Launcher, made)]
    pairs += [(LaunchRecord, launch), (AuditEntry, entry)]
    return [(kind, model.model_dump(mode="json", by_alias=True)) for kind, model in pairs]


@pytest.mark.parametrize(("kind", "wire"), _api_objects(), ids=lambda v: getattr(v, "__name__", ""))
def test_the_records_say_back_exactly_what_the_api_sent(kind: Any, wire: dict[str, Any]) -> None:
    assert list(kind.from_wire(wire).to_wire().items()) == list(wire.items())  # keys in order


#: Keys a record may lack (null or absent alike); every other one is required.
OPTIONAL = {
    Launcher: {"revokedAt", "token"},
    LaunchRecord: {"reason", "finishedAt"},
    AuditEntry: {"reason", "workload", "launch", "detail", "launcher"},
}


def _mutations() -> list[tuple[Any, str, dict[str, Any]]]:
    """Each key of each record: of the wrong type, and, if required, missing."""
    cases = []
    for kind, wire in _api_objects():
        for key, value in wire.items():
            wrong: object = {"x": 1} if not isinstance(value, dict) else ["not", "an", "object"]
            cases.append((kind, key, {**wire, key: wrong}))
            if key not in OPTIONAL.get(kind, set()):
                cases.append((kind, key, {k: v for k, v in wire.items() if k != key}))
    return cases


@pytest.mark.parametrize(("kind", "key", "wire"), _mutations())
def test_a_malformed_record_is_a_format_error_naming_the_key(
    kind: Any, key: str, wire: dict[str, Any]
) -> None:
    with pytest.raises(FormatError) as caught:
        kind.from_wire(wire)
    assert caught.value.field == key


def test_a_digest_that_is_not_hex_is_refused() -> None:
    wire = dict(_api_objects()[1][1], digests=["zz"])
    with pytest.raises(FormatError, match="not hex"):
        Workload.from_wire(wire)


def test_a_new_launchers_token_is_kept_out_of_its_repr() -> None:
    made = Launcher.from_wire(_api_objects()[3][1])
    assert made.token == "t" * 32
    assert "t" * 32 not in repr(made)
