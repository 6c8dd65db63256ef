"""The host manager's HTTP API: libvirt's errors, token auth on TCP, the Unix socket's mode,
the OpenAPI document."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sevlaunch.host.api import create_app
from sevlaunch.host.manager import HostManager
from tests.host.conftest import VMM, Daemon, Media, Platform, owner_session, sev_domain_xml

XML = {"Content-Type": "application/xml"}


@pytest.fixture
def api(platform: Platform, short_dir: Path) -> Iterator[TestClient]:
    manager = HostManager(short_dir / "state", qemu=VMM, platform=str(platform.socket))
    with TestClient(create_app(manager)) as client:
        yield client
        for row in client.get("/v1/domains").json():
            client.post(f"/v1/domains/{row['name']}/destroy")


def _error(response: object) -> tuple[int, str, str]:
    from httpx import Response

    assert isinstance(response, Response)
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_unknown_domain_is_domain_not_found(api: TestClient) -> None:
    for method, path in (
        ("GET", "/v1/domains/ghost"),
        ("GET", "/v1/domains/ghost/xml"),
        ("POST", "/v1/domains/ghost/start"),
        ("GET", "/v1/domains/ghost/launch-security"),
        ("DELETE", "/v1/domains/ghost"),
    ):
        status, code, message = _error(api.request(method, path))
        assert (status, code) == (404, "Domain not found"), path
        assert message == "Domain not found: no domain with matching name or uuid 'ghost'"


def test_bad_xml_is_an_xml_error(api: TestClient) -> None:
    status, code, _ = _error(api.post("/v1/domains", content="<domain>", headers=XML))
    assert (status, code) == (400, "XML error")


def test_launch_security_of_an_inactive_domain_is_not_running(
    api: TestClient, platform: Platform, media: Media, short_dir: Path
) -> None:
    owner = owner_session(platform, short_dir / "owner")
    api.post("/v1/domains", content=sev_domain_xml("idle", media, owner), headers=XML)
    status, code, message = _error(api.get("/v1/domains/idle/launch-security"))
    assert (status, code) == (409, "Requested operation is not valid")
    assert message.endswith("domain is not running")
    body = {"sev-secret-header": "AAAA", "sev-secret": "AAAA"}
    status, code, message = _error(api.put("/v1/domains/idle/launch-security", json=body))
    assert message.endswith("domain is not running")


def test_secret_needs_a_paused_sev_domain(
    api: TestClient, platform: Platform, media: Media, short_dir: Path
) -> None:
    owner = owner_session(platform, short_dir / "owner")
    api.post("/v1/domains", content=sev_domain_xml("sev", media, owner, disk=False), headers=XML)
    plain = sev_domain_xml("plain", media, None, kernel=False, disk=False)
    api.post("/v1/domains", content=plain, headers=XML)
    assert api.post("/v1/domains/sev/start", json={"paused": False}).json()["state"] == "running"
    assert api.post("/v1/domains/plain/start", json={"paused": True}).json()["state"] == "paused"
    body = {"sev-secret-header": "AAAA", "sev-secret": "AAAA"}
    status, code, message = _error(api.put("/v1/domains/sev/launch-security", json=body))
    assert (status, code) == (409, "Requested operation is not valid")
    assert message.endswith("domain must be in a paused state")
    status, code, message = _error(api.put("/v1/domains/plain/launch-security", json=body))
    assert (status, code) == (400, "Operation not supported")
    assert message.endswith("setting a launch secret is only supported in SEV-enabled domains")
    assert api.get("/v1/domains/plain/launch-security").json() == {}  # libvirt: 0 params


def test_launch_security_state_takes_only_libvirts_keys(api: TestClient) -> None:
    body = {"sev-secret-header": "AAAA", "sev-secret": "AAAA", "sev-secret-gpa": 1}
    status, code, message = _error(api.put("/v1/domains/any/launch-security", json=body))
    assert (status, code) == (422, "invalid argument")
    assert "body.sev-secret-gpa" in message


def test_malformed_json_and_unknown_routes_get_the_documented_error_shape(
    api: TestClient,
) -> None:
    headers = {"content-type": "application/json"}
    response = api.put("/v1/domains/any/launch-security", headers=headers, content=b"{nope")
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"code", "message", "field"}
    status, code, message = _error(response)
    assert (status, code) == (422, "invalid argument")
    assert message.startswith("body")
    status, code, _ = _error(api.post("/v1/domains/any/start", headers=headers, content=b"[1,"))
    assert (status, code) == (422, "invalid argument")
    assert _error(api.get("/v1/no-such-call"))[:2] == (404, "Operation not supported")
    assert _error(api.delete("/v1/node/sev-info"))[:2] == (405, "Operation not supported")


def test_no_cdn_docs_and_the_openapi_document_says_what_422_answers(api: TestClient) -> None:
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = api.get(page)
        assert response.status_code == 404, page
        assert "cdn" not in response.text
    document = api.get("/openapi.json").json()
    answers = [
        op["responses"]["422"]
        for path in document["paths"].values()
        for op in path.values()
        if "422" in op["responses"]
    ]
    assert len(answers) >= 5
    for answer in answers:
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/HostErrorOut"}
    assert document["components"]["schemas"]["HostErrorOut"]["required"] == ["error"]


def test_start_twice_and_undefine_running(
    api: TestClient, platform: Platform, media: Media, short_dir: Path
) -> None:
    api.post(
        "/v1/domains",
        content=sev_domain_xml("twice", media, None, kernel=False, disk=False),
        headers=XML,
    )
    api.post("/v1/domains/twice/start", json={"paused": True})
    status, _, message = _error(api.post("/v1/domains/twice/start"))
    assert status == 409
    assert message.endswith("domain is already running")
    status, _, message = _error(api.delete("/v1/domains/twice"))
    assert status == 409
    assert "destroy it before undefining it" in message
    assert api.post("/v1/domains/twice/resume").json()["state"] == "running"
    status, _, message = _error(api.post("/v1/domains/twice/resume"))
    assert (status, message.endswith("domain is already running")) == (409, True)
    assert api.post("/v1/domains/twice/suspend").json()["state"] == "paused"
    assert api.post("/v1/domains/twice/destroy").json() == {
        **api.get("/v1/domains/twice").json(),
        "state": "shut off",
        "reason": "destroyed",
    }


def test_secret_values_never_come_back(api: TestClient) -> None:
    uid = api.post(
        "/v1/secrets", content="<secret ephemeral='no' private='yes'/>", headers=XML
    ).json()["uuid"]
    assert (
        api.put(f"/v1/secrets/{uid}/value", json={"value": "c2VjcmV0IHZhbHVl"}).status_code == 200
    )
    listing = api.get("/v1/secrets").text
    assert uid in listing
    assert "c2VjcmV0IHZhbHVl" not in listing
    assert "secret value" not in listing
    status, code, _ = _error(
        api.put("/v1/secrets/00000000-0000-0000-0000-000000000000/value", json={"value": "AA=="})
    )
    assert (status, code) == (404, "Secret not found")
    assert api.delete(f"/v1/secrets/{uid}").status_code == 200
    assert uid not in api.get("/v1/secrets").text


def test_openapi_names_libvirts_calls(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    summaries = {op["summary"] for path in document["paths"].values() for op in path.values()}
    assert {
        "virNodeGetSEVInfo",
        "virDomainDefineXML",
        "virDomainCreateWithFlags",
        "virDomainGetLaunchSecurityInfo",
        "virDomainSetLaunchSecurityState",
        "virSecretSetValue",
    } <= summaries


def test_tcp_needs_the_bearer_token(
    platform: Platform, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = start_daemon(platform=platform, tcp=True)
    with daemon.client() as client:
        assert client.get("/v1/domains").status_code == 200
        client.headers.pop("Authorization")
        refused = client.get("/v1/domains")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "authentication failed"
        wrong = client.get("/v1/domains", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_unix_socket_is_mode_0600_and_serves_openapi(
    platform: Platform, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = start_daemon(platform=platform)
    mode = (daemon.state / "host.sock").stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((daemon.state / "host.db").stat().st_mode) == 0o600
    with daemon.client() as client:
        assert client.get("/openapi.json").json()["info"]["title"] == "sevlaunch host manager"
        assert client.get("/v1/domains").json() == []
