"""The broker's SNP records as its client types them: exact round trips, the same objects the
API's models send (a field added to the API and not here fails), and a typed error naming the
key for every malformed object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.broker import snp_models as sm
from sevlaunch.errors import FormatError
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.protocol.snp_admin import SnpRoot, SnpWorkload

names = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20)
times = st.floats(0, 4e9, allow_nan=False)
roots = st.builds(SnpRoot, names, names, names, times)
workloads = st.builds(
    SnpWorkload,
    names,
    st.dictionaries(names, st.integers() | names | st.lists(names), max_size=4),
    st.lists(names, max_size=3).map(tuple),
    times,
)


@pytest.mark.parametrize(("kind", "strategy"), [(SnpRoot, roots), (SnpWorkload, workloads)])
def test_every_record_round_trips_through_json(kind: Any, strategy: Any) -> None:
    @given(strategy)
    def check(record: Any) -> None:
        wire = json.loads(json.dumps(record.to_wire()))
        assert kind.from_wire(wire) == record
        assert kind.from_wire(wire).to_wire() == wire

    check()


def _api_objects() -> list[tuple[Any, dict[str, Any]]]:
    root = sm.SnpRootOut(name="lab", fingerprint="ab" * 32, product="Milan", created_at=1.5)
    workload = sm.SnpWorkloadOut(
        name="db",
        expectations=SnpExpectations(measurements=(bytes(48),)).as_dict(),
        secrets=["736869e5-84f0-4973-92ec-06879ce3da0b"],
        created_at=2.0,
    )
    return [
        (SnpRoot, root.model_dump(mode="json", by_alias=True)),
        (SnpWorkload, workload.model_dump(mode="json", by_alias=True)),
    ]


@pytest.mark.parametrize(("kind", "wire"), _api_objects(), ids=["root", "workload"])
def test_the_api_answers_read_back_exactly(kind: Any, wire: dict[str, Any]) -> None:
    assert kind.from_wire(wire).to_wire() == wire


@pytest.mark.parametrize(("kind", "wire"), _api_objects(), ids=["root", "workload"])
def test_every_key_missing_or_mistyped_is_named(kind: Any, wire: dict[str, Any]) -> None:
    for key in wire:
        for broken in ({k: v for k, v in wire.items() if k != key}, {**wire, key: object()}):
            with pytest.raises(FormatError) as info:
                kind.from_wire(broken)
            assert info.value.field == key


def test_a_workloads_expectations_read_as_the_verifiers() -> None:
    _, wire = _api_objects()[1]
    record = SnpWorkload.from_wire(wire)
    assert SnpExpectations.from_dict(record.expectations).measurements == (bytes(48),)
