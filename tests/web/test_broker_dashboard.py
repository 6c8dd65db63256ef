"""The broker's dashboard over plain HTTP: owner token only, workloads without secret values,
launch decisions with their reasons and diagnoses, expired launches, launchers, filters."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from sevlaunch.broker import db
from sevlaunch.broker.api import create_app as broker_app
from sevlaunch.broker.dashboard import Filters, LaunchView, detail_html, render_launches
from sevlaunch.broker.service import Broker, Settings
from sevlaunch.crypto.launch import TransportKeys
from tests.broker.conftest import (
    DIGEST,
    KEK,
    LAUNCHER,
    LAUNCHER_TOKEN,
    OWNER,
    OWNER_TOKEN,
    POLICY,
    SECRET,
    setup_owner,
    start,
)
from tests.broker.fakeplatform import FakePlatform

FRAGMENTS = ("/ui/fragments/workloads", "/ui/fragments/launches", "/ui/fragments/audit")


def _measure(
    client: TestClient, platform: FakePlatform, *, digest: bytes = DIGEST, swap: bool = False
) -> tuple[str, int]:
    launch = start(client, platform)
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    if swap:  # the owner's classic mistake: TEK and TIK the wrong way round
        keys = TransportKeys(keys.tik, keys.tek)
    measurement = platform.launch_measure(keys, digest, POLICY)
    r = client.post(
        f"/v1/launches/{launch['id']}/measurement",
        headers=LAUNCHER,
        json=platform.info(measurement, POLICY),
    )
    return str(launch["id"]), r.status_code


def _get(client: TestClient, path: str, **params: str) -> str:
    r = client.get(path, headers=OWNER, params=params)
    assert r.status_code == 200, r.text
    text: str = r.text
    return text


def test_shell_is_open_fragments_need_the_owner_token(broker: TestClient) -> None:
    page = broker.get("/")
    assert page.status_code == 200
    assert 'data-app="broker"' in page.text
    assert 'data-auth="token"' in page.text
    assert all(f'id="{i}"' in page.text for i in ("workloads", "launches", "audit", "filters"))
    assert broker.get("/ui/static/broker.js").status_code == 200
    for path in FRAGMENTS:
        assert broker.get(path).status_code == 401
        assert broker.get(path, headers=LAUNCHER).status_code == 403
        assert broker.get(path, headers=OWNER).status_code == 200


def test_workloads_show_digests_policies_and_secret_names_only(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    broker.put(
        "/v1/workloads/web/secrets/0a8ea1b2-7c51-4bd4-9d2e-1c0f1a2b3c4d",
        headers=OWNER,
        json={"value": base64.b64encode(b"second secret value").decode()},
    )
    _measure(broker, fake_platform)  # a release: the secrets went out in a packet
    text = _get(broker, "/ui/fragments/workloads")
    assert DIGEST.hex() in text
    assert "0x0003 (nodbg,noks)" in text
    assert ">luks-key<" in text
    assert "0a8ea1b2-7c51-4bd4-9d2e-1c0f1a2b3c4d" in text
    assert '<option value="web">' in text
    pages = [broker.get("/").text] + [_get(broker, p) for p in FRAGMENTS]
    for secret in (SECRET, b"second secret value"):
        for page in pages:
            assert secret.decode() not in page
            assert base64.b64encode(secret).decode() not in page


def test_a_mismatch_shows_its_reason_and_diagnosis(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    released, _ = _measure(broker, fake_platform)
    wrong, status = _measure(broker, fake_platform, digest=bytes(32))
    assert status == 403
    swapped, status = _measure(broker, fake_platform, swap=True)
    assert status == 403
    text = _get(broker, "/ui/fragments/launches")
    rows = re.findall(r'<tr class="launch decision-(\w+)" data-launch="(\w+)"', text)
    assert (rows[0], rows[1], rows[2]) == (
        ("refused", swapped),
        ("refused", wrong),
        ("released", released),
    )  # newest first
    assert text.count("measurement-mismatch") == 2
    assert "matches none of the workload&#x27;s 1 expected launch digest(s)" in text
    assert text.count("Diagnosis (owner toolkit)") == 1  # only the swapped keys explain one
    assert text.count("sevlaunch owner validate") == 1  # the other one says what to run
    after = text.split(f'data-launch="{swapped}"')[1].split('<tr class="launch')[0]
    assert "Diagnosis (owner toolkit)" in after
    assert "swapped" in after


def test_the_audit_log_keeps_the_refusal_words(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    launch, _ = _measure(broker, fake_platform, swap=True)
    entries = broker.get("/v1/audit", headers=OWNER, params={"launch": launch}).json()
    refusal = next(e for e in entries if e["outcome"] == "refused")
    assert refusal["reason"] == "measurement-mismatch"
    assert "matches none" in refusal["detail"]["message"]
    assert "swapped" in refusal["detail"]["diagnosis"]
    text = _get(broker, "/ui/fragments/audit")
    assert '<tr class="audit-entry outcome-refused">' in text
    assert "diagnosis" in text
    ids = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>', text)]
    assert ids == sorted(ids, reverse=True)


def test_a_platform_refused_before_any_session_is_listed(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    stranger = FakePlatform.create(b"stranger")
    r = broker.post(
        "/v1/launches",
        headers=LAUNCHER,
        json={"workload": "web", "pdh": stranger.pdh_b64, "cert-chain": stranger.chain_b64},
    )
    assert r.status_code == 403
    text = _get(broker, "/ui/fragments/launches")
    assert "no session" in text
    assert "platform-not-verified" in text


def test_filters(broker: TestClient, fake_platform: FakePlatform) -> None:
    setup_owner(broker, fake_platform)
    setup_owner(broker, fake_platform, name="db")
    released, _ = _measure(broker, fake_platform)
    refused, _ = _measure(broker, fake_platform, digest=bytes(32))

    def launches(**params: str) -> set[str]:
        text = _get(broker, "/ui/fragments/launches", **params)
        return set(re.findall(r'data-launch="(\w+)"', text))

    assert launches() == {released, refused}
    assert launches(decision="refused") == {refused}
    assert launches(decision="released") == {released}
    assert launches(workload="db") == set()
    assert launches(q="MISMATCH") == {refused}
    assert launches(q=released[:10]) == {released}
    audit = _get(broker, "/ui/fragments/audit", workload="db")
    assert "workload.add" in audit
    assert "launch.start" not in audit
    refusals = _get(broker, "/ui/fragments/audit", decision="refused")
    assert refusals.count("audit-entry") == 1
    assert "No launches match." in _get(broker, "/ui/fragments/launches", q=str(uuid.uuid4()))


def test_expired_launches_and_launchers_are_shown(
    tmp_path: Path, fake_platform: FakePlatform
) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'expiry.db'}")
    db.upgrade(engine)
    now = [1_700_000_000.0]
    service = Broker(engine, KEK, Settings(instance="broker-web"), clock=lambda: now[0])
    client = TestClient(broker_app(service, OWNER_TOKEN, LAUNCHER_TOKEN))  # no sweeper thread
    try:
        setup_owner(client, fake_platform)
        token = client.post("/v1/launchers", headers=OWNER, json={"name": "nightly"}).json()
        stale = start(client, fake_platform)
        nightly = {"Authorization": f"Bearer {token['token']}"}
        body = {
            "workload": "web",
            "pdh": fake_platform.pdh_b64,
            "cert-chain": fake_platform.chain_b64,
        }
        theirs = client.post("/v1/launches", headers=nightly, json=body).json()
        now[0] += 601
        assert service.expire() == 2
        text = _get(client, "/ui/fragments/launches")
        rows = re.findall(
            r'<tr class="launch decision-(\w+)" data-launch="(\w+)" data-domain="">.*?<td class="launcher">'
            r"(\w+)</td>.*?badge decision\">(\w+)<",
            text,
        )
        assert sorted(rows) == sorted(
            [
                ("expired", stale["id"], "default", "expired"),
                ("expired", theirs["id"], "nightly", "expired"),
            ]
        )
        assert set(
            re.findall(
                r'data-launch="(\w+)"', _get(client, "/ui/fragments/launches", decision="expired")
            )
        ) == {stale["id"], theirs["id"]}
        assert _get(client, "/ui/fragments/launches", decision="pending").count("data-launch") == 0
        audit = _get(client, "/ui/fragments/audit", q="nightly")
        assert "launch.expire" in audit
        assert "sweeper@broker-web" in audit
        assert "launcher nightly@broker-web" in audit
    finally:
        engine.dispose()


def test_a_launch_names_its_domain_and_shows_its_measurement_whole(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    body = {"workload": "web", "pdh": fake_platform.pdh_b64,
            "cert-chain": fake_platform.chain_b64, "domain": "guest-7",
            "host": "http://127.0.0.1:9/"}  # fmt: skip
    launch = broker.post("/v1/launches", headers=LAUNCHER, json=body).json()
    keys = fake_platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    info = fake_platform.info(fake_platform.launch_measure(keys, bytes(32), POLICY), POLICY)
    r = broker.post(f"/v1/launches/{launch['id']}/measurement", headers=LAUNCHER, json=info)
    assert r.status_code == 403
    text = _get(broker, "/ui/fragments/launches")
    assert f'data-launch="{launch["id"]}" data-domain="guest-7"' in text
    measurement = info["sev-measurement"]
    assert f'<code class="value">{measurement}</code>' in text  # the whole value, no "…"
    assert f'data-copy="{measurement}"' in text
    assert f'data-copy="{launch["id"]}"' in text
    assert "…" not in text
    assert _get(broker, "/ui/fragments/launches", q="guest-7").count("data-launch=") == 1
    assert '<a href="http://127.0.0.1:9/#domain-guest-7"' in text  # back to the host's card
    for bad in ({**body, "domain": "a/b"}, {**body, "host": "javascript:alert(1)"}):
        assert broker.post("/v1/launches", headers=LAUNCHER, json=bad).status_code in (400, 422)


def test_audit_details_read_as_words(broker: TestClient, fake_platform: FakePlatform) -> None:
    setup_owner(broker, fake_platform)
    text = _get(broker, "/ui/fragments/audit", q="workload.add")
    assert "[&#x27;" not in text
    assert "[&quot;" not in text
    assert re.search(r'<span class="key">secrets</span> <ul class="values"><li>luks-key</li>', text)
    assert '<tr class="audit-detail outcome-ok">' in text  # the detail under its entry
    workloads = _get(broker, "/ui/fragments/workloads")
    assert "<td>any</td>" in workloads
    assert "API 0.0 build 0" not in workloads


def test_a_launch_shows_its_checks_when_its_audit_entry_has_them() -> None:
    checks = [
        {"name": "signature", "verdict": "pass", "detail": "VCEK signed the report"},
        {"name": "tcb", "verdict": "fail", "detail": "<old> TCB"},
    ]
    view = LaunchView("ab" * 16, "web", 1_700_000_000.0, "refused", "tcb", 1, checks=tuple(checks))
    html = render_launches([view], Filters())
    assert re.findall(r'<li class="verdict-(\w+)"><span class="key">(\w+)</span>', html) == [
        ("pass", "signature"),
        ("fail", "tcb"),
    ]
    assert "&lt;old&gt; TCB" in html
    assert detail_html({"checks": "not a list"}).count("<ul") == 0


def _steps_body(upto: int, *, start: float = 1_700_000_000.0) -> dict[str, Any]:
    return {
        "host-launch": 3,
        "steps": [
            {"step": n, "outcome": "failed" if n == upto else "ok", "started": start + n,
             "duration": 0.125, "detail": f"detail {n}"}
            for n in range(1, upto + 1)
        ],
    }  # fmt: skip


def test_a_launch_keeps_its_vm_tools_steps_once(
    broker: TestClient, fake_platform: FakePlatform
) -> None:
    setup_owner(broker, fake_platform)
    launch, status = _measure(broker, fake_platform, digest=bytes(32))
    assert status == 403
    url = f"/v1/launches/{launch}/steps"
    assert broker.post(url, headers=OWNER, json=_steps_body(11)).status_code == 403  # launchers'
    twice = _steps_body(11)
    twice["steps"] = [*twice["steps"], twice["steps"][0]]
    assert broker.post(url, headers=LAUNCHER, json=twice).status_code == 400
    r = broker.post(url, headers=LAUNCHER, json=_steps_body(11))
    assert r.status_code == 201, r.text
    assert r.json() == {"recorded": 11}
    again = broker.post(url, headers=LAUNCHER, json=_steps_body(11))
    assert again.status_code == 409  # once per launch: the record is not rewritten
    assert broker.post(f"/v1/launches/{'0' * 32}/steps", headers=LAUNCHER,
                       json=_steps_body(2)).status_code == 404  # fmt: skip
    text = _get(broker, "/ui/fragments/launches")
    table = text.split('<details class="steps">')[1].split("</details>")[0]
    rows = re.findall(r'<tr class="step outcome-([\w-]+)" data-step="(\d+)"', table)
    assert rows == [("ok", str(n)) for n in range(1, 11)] + [("failed", "11")] + [
        ("unreached", "12"),
        ("unreached", "13"),
    ]
    assert table.count("125.0 ms") == 11  # the VM tool's figures, as it printed them
    assert "Steps: 10 of 13 done" in table
    assert "launch #3" in text  # the host's launch number, with the domain
    assert "launch.steps" in _get(broker, "/ui/fragments/audit")
