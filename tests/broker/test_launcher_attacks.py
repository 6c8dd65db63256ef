"""Attacks by one launcher on another, by a revoked launcher and by a launcher over its limits,
each against a real ``sevlaunch broker serve`` process: refused, and nothing of the victim's
changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sevlaunch.broker.client import BrokerClient
from tests.broker.conftest import DIGEST, LAUNCHER_TOKEN, LUKS, OWNER_TOKEN, POLICY, SECRET
from tests.broker.fakeplatform import FakePlatform
from tests.broker.servers import broker_process, write_files


@dataclass
class Service:
    socket: Path

    def http(self, token: bytes | str) -> httpx.Client:
        value = token.decode() if isinstance(token, bytes) else token
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://broker",
            headers={"Authorization": f"Bearer {value}"},
        )

    def owner(self) -> BrokerClient:
        return BrokerClient(f"unix:{self.socket}", OWNER_TOKEN)

    def add(self, name: str, **limits: object) -> str:
        with self.owner() as owner:
            return str(owner.add_launcher(name, **limits).token)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def platform() -> FakePlatform:
    return FakePlatform.create(b"attacks")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, platform: FakePlatform) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("attacks")
    files = write_files(tmp)
    sock = tmp / "broker.sock"
    with broker_process(f"sqlite:///{tmp / 'broker.db'}", files, sock, "attacked"):
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
        yield Service(sock)


def _start(http: httpx.Client, platform: FakePlatform) -> httpx.Response:
    body = {"workload": "web", "pdh": platform.pdh_b64, "cert-chain": platform.chain_b64}
    return http.post("/v1/launches", json=body)


def test_another_launchers_launch_cannot_be_read_or_burnt(
    service: Service, platform: FakePlatform
) -> None:
    alice, mallory = service.add("alice"), service.add("mallory")
    with service.http(alice) as a, service.http(mallory) as m:
        launch = _start(a, platform).json()
        keys = platform.launch_start(launch["dhCert"], launch["session"], POLICY)
        measurement = platform.launch_measure(keys, DIGEST, POLICY)
        body = platform.info(measurement, POLICY)
        unknown = "0" * 32
        # reading: the same 404 as for an id that does not exist
        theirs, none = m.get(f"/v1/launches/{launch['id']}"), m.get(f"/v1/launches/{unknown}")
        assert theirs.status_code == none.status_code == 404
        assert theirs.json()["error"] == none.json()["error"] == "no-such-launch"
        assert theirs.json()["detail"].replace(launch["id"], unknown) == none.json()["detail"]
        assert launch["id"] not in m.get("/v1/launches").text
        # burning: a measurement (right or wrong) for another's launch changes nothing
        wrong = {**body, "sev-measurement": str(body["sev-measurement"])[::-1]}
        for attempt in (body, wrong):
            r = m.post(f"/v1/launches/{launch['id']}/measurement", json=attempt)
            assert (r.status_code, r.json()["error"]) == (404, "no-such-launch")
        assert a.get(f"/v1/launches/{launch['id']}").json()["state"] == "awaiting-measurement"
        released = a.post(f"/v1/launches/{launch['id']}/measurement", json=body)
        assert released.status_code == 200, released.text
    secret = released.json()
    table = FakePlatform.launch_secret(
        keys, measurement, secret["sev-secret-header"], secret["sev-secret"]
    )
    assert table.get(LUKS) == SECRET
    with service.owner() as owner:
        entries = owner.audit(launch=launch["id"])
    assert [(e.launcher, e.outcome) for e in entries] == [
        ("alice", "ok"),
        ("alice", "released"),
    ]


def test_a_revoked_token_is_refused_everywhere_and_its_launches_end(
    service: Service, platform: FakePlatform
) -> None:
    token = service.add("leaver")
    with service.http(token) as leaver:
        launch = _start(leaver, platform).json()
        keys = platform.launch_start(launch["dhCert"], launch["session"], POLICY)
        body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
        with service.owner() as owner:
            owner.revoke_launcher("leaver")
            shown = owner.launch(launch["id"])
        assert (shown.state, shown.reason) == ("refused", "launcher-revoked")
        for r in (
            _start(leaver, platform),
            leaver.get(f"/v1/launches/{launch['id']}"),
            leaver.get("/v1/launches"),
            leaver.post(f"/v1/launches/{launch['id']}/measurement", json=body),
        ):
            assert (r.status_code, r.json()["error"]) == (401, "unauthenticated")
    with service.http(LAUNCHER_TOKEN) as default:  # the other launchers are untouched
        assert _start(default, platform).status_code == 201


def test_a_launcher_over_its_open_limit_gets_429_with_retry_after(
    service: Service, platform: FakePlatform
) -> None:
    token = service.add("busy", max_open=2)
    with service.http(token) as busy:
        first, second = _start(busy, platform).json(), _start(busy, platform)
        assert second.status_code == 201
        refused = _start(busy, platform)
        assert (refused.status_code, refused.json()["error"]) == (429, "too-many-open-launches")
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        keys = platform.launch_start(first["dhCert"], first["session"], POLICY)
        body = platform.info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
        assert busy.post(f"/v1/launches/{first['id']}/measurement", json=body).status_code == 200
        assert _start(busy, platform).status_code == 201  # a finished launch frees its place


def test_a_launcher_over_its_rate_gets_429_with_retry_after(
    service: Service, platform: FakePlatform
) -> None:
    token = service.add("hasty", rate=1, burst=2)  # one a minute after a burst of two
    with service.http(token) as hasty:
        assert [_start(hasty, platform).status_code for _ in range(2)] == [201, 201]
        refused = [_start(hasty, platform) for _ in range(3)]
        assert {(r.status_code, r.json()["error"]) for r in refused} == {(429, "rate-limited")}
        assert all(50 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    with service.owner() as owner:
        audited = [e for e in owner.audit(launcher="hasty", limit=1000) if e.outcome == "refused"]
        listed = {r.name: r for r in owner.launchers()}
    assert [e.reason for e in audited] == ["rate-limited"]  # repeats are answered from memory
    assert listed["hasty"].open == 2
    with service.http(LAUNCHER_TOKEN) as default:  # limits are per launcher
        assert _start(default, platform).status_code == 201


def test_a_launcher_cannot_administer_launchers_and_a_stolen_database_holds_no_token(
    service: Service, platform: FakePlatform
) -> None:
    victim, mallory = service.add("victim"), service.add("mallory2")
    with service.http(mallory) as m:
        for r in (
            m.post("/v1/launchers", json={"name": "mine"}),
            m.get("/v1/launchers"),
            m.post("/v1/launchers/victim/revoke"),
        ):
            assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    with service.http(victim) as v:
        assert _start(v, platform).status_code == 201  # not revoked
    stored = b"".join(p.read_bytes() for p in service.socket.parent.glob("broker.db*"))
    for token in (victim, mallory, LAUNCHER_TOKEN.decode(), OWNER_TOKEN.decode()):
        assert token.encode() not in stored
    for token in (victim, mallory):
        assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
