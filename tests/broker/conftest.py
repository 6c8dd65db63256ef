"""Fixtures: a simulated platform, and brokers on a temporary SQLite file (or the PostgreSQL
server named by SEVLAUNCH_TEST_POSTGRES_URL)."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sevlaunch.broker import db
from sevlaunch.broker.api import create_app
from sevlaunch.broker.schema import metadata
from sevlaunch.broker.service import Broker, Settings
from tests.broker.fakeplatform import FakePlatform

KEK = bytes(range(32))
OWNER_TOKEN = b"owner-token-0123456789abcdef"
LAUNCHER_TOKEN = b"launcher-token-0123456789abcdef"
OWNER = {"Authorization": "Bearer " + OWNER_TOKEN.decode()}
LAUNCHER = {"Authorization": "Bearer " + LAUNCHER_TOKEN.decode()}
DIGEST = hashlib.sha256(b"the registered OVMF").digest()
SECRET = b"correct horse battery staple, the LUKS passphrase"
POLICY = 0x0003
POSTGRES_URL = os.environ.get("SEVLAUNCH_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def platform() -> FakePlatform:
    return FakePlatform.create(b"broker-test")


@pytest.fixture(scope="session")
def stranger() -> FakePlatform:
    """A platform whose root the broker was never told to trust."""
    return FakePlatform.create(b"stranger")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Instance:
    broker: Broker
    client: TestClient
    clock: Clock


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    if not POSTGRES_URL:
        pytest.skip("SEVLAUNCH_TEST_POSTGRES_URL is not set")
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def make_instance() -> Iterator[Callable[..., Instance]]:
    engines: list[sa.Engine] = []

    def make(url: str, name: str = "broker-a", **settings: object) -> Instance:
        engine = db.create_engine(url)
        engines.append(engine)
        db.upgrade(engine)
        clock = Clock()
        broker = Broker(engine, KEK, Settings(instance=name, **settings), clock=clock)  # type: ignore[arg-type]
        client = TestClient(create_app(broker, OWNER_TOKEN, LAUNCHER_TOKEN))
        return Instance(broker, client, clock)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def instance(make_instance: Callable[..., Instance], sqlite_url: str) -> Instance:
    return make_instance(sqlite_url)


def setup_owner(
    client: TestClient,
    platform: FakePlatform,
    *,
    name: str = "web",
    min_api: tuple[int, int] = (0, 0),
    min_build: int = 0,
) -> None:
    """Trust the platform's root (its ASK ‖ ARK) and register a workload with one secret."""
    r = client.post(
        "/v1/trust-roots",
        headers=OWNER,
        json={"certificate": base64.b64encode(platform.ca_file).decode(), "name": "lab"},
    )
    assert r.status_code in (201, 409), r.text
    r = client.post(
        "/v1/workloads",
        headers=OWNER,
        json={
            "name": name,
            "policies": [POLICY],
            "digests": [DIGEST.hex()],
            "minApiMajor": min_api[0],
            "minApiMinor": min_api[1],
            "minBuild": min_build,
            "secrets": {"luks-key": base64.b64encode(SECRET).decode()},
        },
    )
    assert r.status_code == 201, r.text


def start(client: TestClient, platform: FakePlatform, workload: str = "web") -> dict[str, object]:
    r = client.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": workload, "pdh": platform.pdh_b64, "cert-chain": platform.chain_b64},
    )
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


LUKS = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")
