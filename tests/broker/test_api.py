"""The launch protocol end to end over HTTP (in-process) against a simulated platform."""

from __future__ import annotations

import base64
import hashlib

from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.formats.session import Measurement
from tests.broker.conftest import (
    DIGEST,
    LAUNCHER,
    LUKS,
    OWNER,
    POLICY,
    SECRET,
    Instance,
    setup_owner,
    start,
)
from tests.broker.fakeplatform import FakePlatform


def _measure(
    instance: Instance,
    platform: FakePlatform,
    launch: dict[str, object],
    digest: bytes = DIGEST,
    policy: int = POLICY,
) -> tuple[int, dict[str, object], Measurement, TransportKeys]:
    keys = platform.launch_start(
        str(launch["dhCert"]), str(launch["session"]), int(str(launch["policy"]))
    )
    measurement = platform.launch_measure(keys, digest, policy)
    r = instance.client.post(
        f"/v1/launches/{launch['id']}/measurement",
        headers=LAUNCHER,
        json=platform.info(measurement, policy),
    )
    return r.status_code, r.json(), measurement, keys


def test_matching_measurement_releases_the_secret_to_the_guest(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    assert launch["policy"] == POLICY
    status, body, measurement, keys = _measure(instance, platform, launch)
    assert status == 200, body
    table = FakePlatform.launch_secret(
        keys,
        measurement,
        str(body["sev-secret-header"]),
        str(body["sev-secret"]),
    )
    assert table.get(LUKS) == SECRET
    state = instance.client.get(f"/v1/launches/{launch['id']}", headers=LAUNCHER).json()
    assert state["state"] == "released"


def test_wrong_measurement_gets_no_secret(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    status, body, _, _ = _measure(
        instance, platform, launch, digest=hashlib.sha256(b"evil").digest()
    )
    assert status == 403
    assert body["error"] == "measurement-mismatch"
    assert "sev-secret" not in body
    assert "sev-secret-header" not in body


def test_wrong_policy_gets_no_secret(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    status, body, _, _ = _measure(instance, platform, launch, policy=0x0001)
    assert (status, body["error"]) == (403, "policy-mismatch")


def test_policy_not_allowed_gets_no_session(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    r = instance.client.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={
            "workload": "web",
            "pdh": platform.pdh_b64,
            "cert-chain": platform.chain_b64,
            "policy": 0x0000,
        },
    )
    assert (r.status_code, r.json()["error"]) == (403, "policy-not-allowed")


def test_api_version_below_minimum_gets_no_secret(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform, min_api=(platform.api[0], platform.api[1] + 1))
    launch = start(instance.client, platform)
    status, body, _, _ = _measure(instance, platform, launch)
    assert (status, body["error"]) == (403, "firmware-too-old")


def test_build_below_minimum_gets_no_secret(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform, min_api=platform.api, min_build=platform.build + 1)
    launch = start(instance.client, platform)
    status, body, _, _ = _measure(instance, platform, launch)
    assert (status, body["error"]) == (403, "firmware-too-old")


def test_replay_gets_nothing(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    status, _, measurement, _ = _measure(instance, platform, launch)
    assert status == 200
    again = instance.client.post(
        f"/v1/launches/{launch['id']}/measurement",
        headers=LAUNCHER,
        json=platform.info(measurement, POLICY),
    )
    assert (again.status_code, again.json()["error"]) == (403, "replay")
    assert "sev-secret" not in again.json()


def test_refused_launch_cannot_be_retried(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    assert _measure(instance, platform, launch, digest=bytes(32))[0] == 403
    status, body, _, _ = _measure(instance, platform, launch)
    assert (status, body["error"]) == (403, "replay")


def test_expired_launch_gets_nothing(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    launch = start(instance.client, platform)
    instance.clock.now += instance.broker.settings.launch_ttl + 1
    status, body, _, _ = _measure(instance, platform, launch)
    assert (status, body["error"]) == (403, "expired")


def test_untrusted_platform_gets_no_session(
    instance: Instance, platform: FakePlatform, stranger: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    r = instance.client.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": "web", "pdh": stranger.pdh_b64, "cert-chain": stranger.chain_b64},
    )
    assert (r.status_code, r.json()["error"]) == (403, "platform-not-verified")


def test_pdh_swapped_into_a_trusted_chain_is_refused(
    instance: Instance, platform: FakePlatform, stranger: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    r = instance.client.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": "web", "pdh": stranger.pdh_b64, "cert-chain": platform.chain_b64},
    )
    assert (r.status_code, r.json()["error"]) == (403, "platform-not-verified")


def test_chain_cache_hit_is_audited_and_still_works(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    first, second = start(instance.client, platform), start(instance.client, platform)
    assert _measure(instance, platform, second)[0] == 200
    audit = instance.client.get("/v1/audit", headers=OWNER).json()
    starts = {
        a["launch"]: a["detail"]["chain-cache"] for a in audit if a["action"] == "launch.start"
    }
    assert starts == {first["id"]: "miss", second["id"]: "hit"}


def test_removing_the_root_drops_cached_verifications(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    start(instance.client, platform)
    assert instance.client.delete("/v1/trust-roots/lab", headers=OWNER).status_code == 204
    r = instance.client.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": "web", "pdh": platform.pdh_b64, "cert-chain": platform.chain_b64},
    )
    assert r.status_code == 403


def test_tokens_and_roles(instance: Instance, platform: FakePlatform) -> None:
    c = instance.client
    assert c.get("/v1/workloads").status_code == 401
    assert c.get("/v1/workloads", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/v1/workloads", headers=LAUNCHER).status_code == 403
    assert (
        c.post(
            "/v1/launches",
            headers=OWNER,
            json={
                "workload": "web",
                "pdh": platform.pdh_b64,
                "cert-chain": platform.chain_b64,
            },
        ).status_code
        == 403
    )
    assert c.get("/v1/workloads", headers=OWNER).status_code == 200


def test_read_apis_never_return_secret_values(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    shown = instance.client.get("/v1/workloads/web", headers=OWNER)
    assert shown.json()["secrets"] == [str(LUKS)]
    encoded = base64.b64encode(SECRET).decode()
    for path in ("/v1/workloads", "/v1/workloads/web", "/v1/audit", "/v1/trust-roots"):
        text = instance.client.get(path, headers=OWNER).text
        assert SECRET.decode() not in text
        assert encoded not in text


def test_secret_set_replaces_and_adds(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    c = instance.client
    other = "23058844-597b-42fb-8259-a0f5d9d495af"
    for guid, value in (("luks-key", b"new passphrase"), (other, b"api key")):
        r = c.put(
            f"/v1/workloads/web/secrets/{guid}",
            headers=OWNER,
            json={"value": base64.b64encode(value).decode()},
        )
        assert r.status_code == 204, r.text
    launch = start(c, platform)
    _status, body, measurement, keys = _measure(instance, platform, launch)
    table = FakePlatform.launch_secret(
        keys,
        measurement,
        str(body["sev-secret-header"]),
        str(body["sev-secret"]),
    )
    assert table.get(LUKS) == b"new passphrase"
    assert [str(e.guid) for e in table.entries] == sorted([str(LUKS), other])


def test_workload_without_secrets_is_verified_with_nothing_to_release(
    instance: Instance, platform: FakePlatform
) -> None:
    setup_owner(instance.client, platform)
    assert (
        instance.client.delete(f"/v1/workloads/web/secrets/{LUKS}", headers=OWNER).status_code
        == 204
    )
    status, body, _, _ = _measure(instance, platform, start(instance.client, platform))
    assert status == 200
    assert body["sev-secret"] is None


def test_errors_name_the_problem(instance: Instance, platform: FakePlatform) -> None:
    c = instance.client
    setup_owner(c, platform)
    r = c.post(
        "/v1/workloads",
        headers=OWNER,
        json={"name": "web", "policies": [1], "digests": [DIGEST.hex()]},
    )
    assert (r.status_code, r.json()["error"]) == (409, "workload-exists")
    r = c.post(
        "/v1/workloads", headers=OWNER, json={"name": "x", "policies": [1], "digests": ["abcd"]}
    )
    assert r.status_code == 400
    assert "32 bytes" in r.json()["detail"]
    r = c.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": "nope", "pdh": "AA==", "cert-chain": "AA=="},
    )
    assert (r.status_code, r.json()["error"]) == (404, "no-such-workload")
    r = c.post(
        f"/v1/launches/{'0' * 32}/measurement",
        headers=LAUNCHER,
        json=platform.info(Measurement(bytes(32), bytes(16)), POLICY),
    )
    assert r.status_code == 404
    r = c.post("/v1/trust-roots", headers=OWNER, json={"certificate": "not base64!"})
    assert r.status_code == 400


def test_every_decision_is_audited(instance: Instance, platform: FakePlatform) -> None:
    setup_owner(instance.client, platform)
    ok = start(instance.client, platform)
    _measure(instance, platform, ok)
    bad = start(instance.client, platform)
    _measure(instance, platform, bad, digest=bytes(32))
    rows = instance.client.get("/v1/audit", headers=OWNER).json()
    decisions = [
        (r["action"], r["outcome"], r["reason"]) for r in rows if r["action"].startswith("launch")
    ]
    assert decisions == [
        ("launcher.add", "ok", None),  # the default launcher, from the launcher token
        ("launch.start", "ok", None),
        ("launch.measure", "released", None),
        ("launch.start", "ok", None),
        ("launch.measure", "refused", "measurement-mismatch"),
    ]
    only_bad = instance.client.get("/v1/audit", headers=OWNER, params={"launch": bad["id"]}).json()
    assert {r["launch"] for r in only_bad} == {bad["id"]}
    assert {r["launcher"] for r in only_bad} == {"default"}


def test_malformed_and_invalid_bodies_get_the_documented_error_shape(
    instance: Instance,
) -> None:
    json_headers = {**OWNER, "content-type": "application/json"}
    r = instance.client.post("/v1/launchers", headers=json_headers, content=b'{"name": "x",')
    assert r.status_code == 422
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["error"] == "invalid-request"
    assert r.json()["detail"].startswith("body")  # where the JSON broke
    r = instance.client.post("/v1/launchers", headers=OWNER, json={"name": "x", "rate": 0})
    assert (r.status_code, r.json()["error"]) == (422, "invalid-request")
    assert "body.rate" in r.json()["detail"]
    r = instance.client.get("/v1/launches/not-an-id", headers=OWNER)
    assert (r.status_code, r.json()["error"]) == (422, "invalid-request")
    r = instance.client.get("/v1/nothing-here", headers=OWNER)
    assert r.json() == {"error": "not-found", "detail": "Not Found"}
    r = instance.client.delete("/v1/health", headers=OWNER)
    assert (r.status_code, r.json()["error"]) == (405, "method-not-allowed")


def test_no_cdn_docs_and_the_openapi_document_says_what_422_answers(instance: Instance) -> None:
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = instance.client.get(page, headers=OWNER)
        assert r.status_code == 404, page
        assert "cdn" not in r.text
    document = instance.client.get("/openapi.json").json()
    answers = [
        op["responses"]["422"]
        for path in document["paths"].values()
        for op in path.values()
        if "422" in op["responses"]
    ]
    assert len(answers) >= 10
    for answer in answers:
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
