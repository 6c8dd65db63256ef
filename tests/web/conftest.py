"""Fixtures for the dashboard tests: a host manager whose node SEV info comes from a simulated
platform (no hypervisor needed), and a broker on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sevlaunch.broker import db
from sevlaunch.broker.api import create_app as broker_app
from sevlaunch.broker.service import Broker, Settings
from sevlaunch.host.api import create_app as host_app
from sevlaunch.host.manager import HostManager
from sevlaunch.protocol import NodeSevInfo
from tests.broker.conftest import KEK, LAUNCHER_TOKEN, OWNER_TOKEN
from tests.broker.fakeplatform import FakePlatform

HOST_TOKEN = "host-token-for-the-dashboard-tests"
CHIP_ID = bytes(range(64))


@pytest.fixture(scope="session")
def fake_platform() -> FakePlatform:
    return FakePlatform.create(b"web-test")


class NodeManager(HostManager):
    """A host manager whose node SEV info is a simulated platform's, as libvirt reports it."""

    def __init__(self, state_dir: Path, node: dict[str, Any]) -> None:
        super().__init__(state_dir)
        self.node = NodeSevInfo.from_wire(node)

    async def node_sev_info(self, *, refresh: bool = False) -> NodeSevInfo:
        return self.node


def node_info(platform: FakePlatform) -> dict[str, Any]:
    import base64

    return {
        "pdh": platform.pdh_b64,
        "cert-chain": platform.chain_b64,
        "cpu0-id": base64.b64encode(CHIP_ID).decode(),
        "cbitpos": 51,
        "reduced-phys-bits": 1,
        "max-guests": 15,
        "max-es-guests": 494,
    }


@pytest.fixture
def manager(tmp_path: Path, fake_platform: FakePlatform) -> NodeManager:
    return NodeManager(tmp_path / "host", node_info(fake_platform))


@pytest.fixture
def host(manager: NodeManager) -> Iterator[TestClient]:
    """The host manager's app on TCP (a token is required)."""
    with TestClient(host_app(manager, token=HOST_TOKEN)) as client:
        yield client


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TestClient]:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    db.upgrade(engine)
    service = Broker(engine, KEK, Settings(instance="broker-web"))
    with TestClient(broker_app(service, OWNER_TOKEN, LAUNCHER_TOKEN)) as client:
        yield client
    engine.dispose()
