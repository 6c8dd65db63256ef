"""Schemathesis over the broker's OpenAPI document: no input makes the broker answer 5xx, and
answers conform to the document. Bounded so the run stays short."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.broker.conftest import LAUNCHER, OWNER, Instance, setup_owner
from tests.broker.fakeplatform import FakePlatform


@pytest.fixture
def api_schema(
    make_instance: Callable[..., Instance], sqlite_url: str, platform: FakePlatform
) -> schemathesis.BaseSchema:
    instance = make_instance(sqlite_url)
    setup_owner(instance.client, platform)
    app = instance.client.app
    assert isinstance(app, FastAPI)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: Any) -> None:
        # Schema-valid but meaningless certificates and digests are refused with 400 on purpose.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()


def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12
    for operation in operations:
        _fuzz(operation, LAUNCHER if operation.path.startswith("/v1/launches") else OWNER)
