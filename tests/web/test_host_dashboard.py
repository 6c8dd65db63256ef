"""The host manager's dashboard over plain HTTP: the shell, its token rule, the fragments."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from sevlaunch.formats.sevcert import SevCert
from sevlaunch.host.api import create_app
from sevlaunch.host.dashboard import generation, key_id, verdict
from sevlaunch.host.launchref import with_launch_ref
from sevlaunch.host.store import DomainRow, StepRow
from sevlaunch.host.timeline import GUEST_BOOTED
from sevlaunch.orchestrate.demo import Artifacts, domain_xml
from sevlaunch.protocol import Step, StepReport
from tests.broker.fakeplatform import FakePlatform
from tests.web.conftest import CHIP_ID, HOST_TOKEN, NodeManager

AUTH = {"Authorization": f"Bearer {HOST_TOKEN}"}
SECRET_VALUE = b"the-host-secret-value-never-shown"


def _define(manager: NodeManager, name: str) -> DomainRow:
    art = Artifacts(*(Path(f"/srv/{n}") for n in ("fw", "bad", "vmlinuz", "initrd", "disk", "pw")))
    return asyncio.run(manager.define(domain_xml(name, art, art.firmware)))


def _steps(manager: NodeManager, row: DomainRow, launch: int, upto: int) -> None:
    now = time.time()
    for n in range(6, upto + 1):
        step = Step.of(n)
        manager.store.add_step(
            row.uuid, launch, n, step.title, step.party, "ok", f"detail {n}", started=now + n,
            duration=0.01,
        )  # fmt: skip


def test_the_shell_needs_no_token_and_carries_no_data(host: TestClient) -> None:
    for path in ("/", "/ui/"):
        page = host.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'data-auth="token"' in page.text
        assert 'id="login"' in page.text
        assert 'id="domains"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script: the CSP forbids it
    for asset in ("dashboard.js", "host.js", "dashboard.css"):
        assert host.get(f"/ui/static/{asset}").status_code == 200


def test_fragments_and_the_api_need_the_token(host: TestClient) -> None:
    for path in ("/ui/fragments/node", "/ui/fragments/domains", "/v1/domains"):
        assert host.get(path).status_code == 401
        assert host.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert host.get(path, headers=AUTH).status_code == 200


def test_on_a_unix_socket_the_page_asks_for_no_token(manager: NodeManager) -> None:
    with TestClient(create_app(manager, token=None)) as client:
        assert 'data-auth="none"' in client.get("/").text
        assert client.get("/ui/fragments/domains").status_code == 200


def test_dashboard_routes_stay_out_of_the_openapi_document(host: TestClient) -> None:
    paths = host.get("/openapi.json", headers=AUTH).json()["paths"]
    assert not [p for p in paths if not p.startswith("/v1/")]


def test_node_fragment_summarises_the_chain(host: TestClient, fake_platform: FakePlatform) -> None:
    text = host.get("/ui/fragments/node", headers=AUTH).text
    pdh = SevCert.from_bytes(base64.b64decode(fake_platform.pdh_b64))
    assert key_id(pdh) in text
    for cert in (fake_platform.pek, fake_platform.oca, fake_platform.cek):
        assert key_id(cert) in text
    assert "AMD Naples (CEK signed by an RSA-2048 ASK)" in text  # the fake's roots are RSA-2048
    assert CHIP_ID.hex()[:24] in text
    assert "not reported" in text  # no platform socket: the owner flag is not in node info
    assert re.search(r"<th>PEK</th>.*OCA \(ECDSA-SHA256\), CEK \(ECDSA-SHA256\)", text)


def test_generation_names_an_emulated_profile(fake_platform: FakePlatform) -> None:
    from sevlaunch.formats.chain import CertExport

    export = CertExport(fake_platform.pek, fake_platform.oca, fake_platform.cek)
    assert generation(export, "milan") == "emulated (milan)"
    unsigned = CertExport(fake_platform.pek, fake_platform.oca, fake_platform.oca)
    assert "generation not in the chain" in generation(unsigned, None)


def test_a_launch_refused_after_measurement_is_obvious(
    host: TestClient, manager: NodeManager
) -> None:
    row = _define(manager, "refused-vm")
    manager.store.set_runtime(row.uuid, launch=1, state="shutoff", reason="destroyed")
    _steps(manager, row, 1, 10)
    text = host.get("/ui/fragments/domains", headers=AUTH).text
    assert 'class="domain verdict-failed state-shutoff"' in text
    assert "step 11 (measurement checked, guest owner) never happened" in text
    assert re.search(r'<tr class="step outcome-failed inferred" data-step="11">', text)
    assert "broker&#x27;s audit log" in text


def test_a_failed_step_is_highlighted_and_escaped(host: TestClient, manager: NodeManager) -> None:
    row = _define(manager, "broken-vm")
    manager.store.set_runtime(row.uuid, launch=2, state="shutoff", reason="failed")
    _steps(manager, row, 1, 10)  # an earlier launch went further; only the latest counts
    blobs, start = Step.BLOBS_PASSED, Step.STARTED_PAUSED
    manager.store.add_step(row.uuid, 2, 6, blobs.title, blobs.party, "ok", "")
    evil = "<img src=x onerror=alert(1)>"
    manager.store.add_step(row.uuid, 2, 8, start.title, start.party, "failed", evil)
    text = host.get("/ui/fragments/domains", headers=AUTH).text
    assert "step 8 (hypervisor started paused (-S)) failed" in text
    assert '<tr class="step outcome-failed failing" data-step="8"' in text
    assert evil not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert '<tr class="step outcome-unreached" data-step="10">' in text  # not launch 1's


def test_buttons_follow_the_state(host: TestClient, manager: NodeManager) -> None:
    paused = _define(manager, "paused-vm")
    manager.store.set_runtime(paused.uuid, launch=1, state="paused", reason="user")
    _steps(manager, paused, 1, 10)
    _define(manager, "idle-vm")
    text = host.get("/ui/fragments/domains", headers=AUTH).text
    headers = re.finditer(r'data-name="([\w-]+)".*?</header>', text, re.S)
    cards = {m.group(1): m.group(0) for m in headers}
    assert 'data-action="resume" data-domain="paused-vm">' in cards["paused-vm"]
    assert 'data-action="resume" data-domain="idle-vm" disabled>' in cards["idle-vm"]
    assert 'data-domain="idle-vm" disabled>Destroy' in cards["idle-vm"]
    assert "verdict-running" in text  # the paused launch waits for step 11
    assert '<tr class="step outcome-pending" data-step="11">' in text


def test_secret_values_are_never_rendered(host: TestClient, manager: NodeManager) -> None:
    uid = manager.secret_define(
        "<secret ephemeral='no' private='yes'><usage type='volume'><volume>/x</volume></usage>"
        "</secret>"
    )
    manager.secret_set_value(uid, SECRET_VALUE)
    _define(manager, "with-secret")
    pages = [
        host.get(p, headers=AUTH).text for p in ("/", "/ui/fragments/node", "/ui/fragments/domains")
    ]
    for text in pages:
        assert SECRET_VALUE.decode() not in text
        assert base64.b64encode(SECRET_VALUE).decode() not in text


def test_verdicts() -> None:
    row = DomainRow("u", "vm", "<domain/>", "shutoff", "shutdown", None, None, 1)
    booted = [StepRow(1, n, f"s{n}", "host", 1.0, 0.1, "ok", GUEST_BOOTED if n == 13 else "")
              for n in (6, 7, 8, 9, 10, 12, 13)]  # fmt: skip
    assert verdict(row, booted).kind == "ok"
    assert verdict(row, []).kind == "idle"
    stopped = verdict(row, booted[:5])
    assert (stopped.kind, stopped.step) == ("failed", 11)
    running = DomainRow("u", "vm", "<domain/>", "paused", "user", 1, None, 1)
    assert (verdict(running, booted[:6]).kind, verdict(running, booted[:6]).step) == ("running", 13)


def _report(launch: int, step: int, started: float, outcome: str = "ok") -> StepReport:
    return StepReport(launch, Step.of(step), outcome, started, 0.25, f"vm tool {step}")


def test_a_launch_shows_its_13_steps_once_each(host: TestClient, manager: NodeManager) -> None:
    row = _define(manager, "whole-vm")
    manager.store.set_runtime(row.uuid, launch=1, state="running", reason="booted")
    now = time.time()
    _steps(manager, row, 1, 10)
    injected, resumed = Step.SECRET_INJECTED, Step.RESUMED_BOOTED
    manager.store.add_step(row.uuid, 1, 12, injected.title, injected.party, "ok", "",
                           started=now + 12, duration=0.01)  # fmt: skip
    manager.store.add_step(row.uuid, 1, 13, resumed.title, resumed.party, "ok", "resumed",
                           started=now + 13, duration=0.5)  # fmt: skip
    manager.store.add_step(row.uuid, 1, 13, resumed.title, resumed.party, "ok",
                           f"{GUEST_BOOTED} (console)", started=now + 15)  # fmt: skip
    reports = [_report(1, n, now + n * 0.1) for n in (1, 2, 3, 4, 5, 11)]
    assert manager.report_steps("whole-vm", reports) == 6
    text = host.get("/ui/fragments/domains", headers=AUTH).text
    rows = re.findall(r'<tr class="step[^"]*" data-step="(\d+)"[^>]*>(.*?)</tr>', text, re.S)
    assert [int(n) for n, _ in rows] == list(range(1, 14))  # all 13, none twice
    cells = {int(n): re.findall(r"<td[^>]*>(.*?)</td>", body, re.S) for n, body in rows}
    assert all("—" not in cells[n][4] for n in cells), cells  # every duration is there
    assert cells[13][4] == "2.00 s"  # from the resume to the boot report, merged
    assert "resumed; guest booted" in cells[13][6]
    assert cells[11][6] == "vm tool 11"


def test_the_host_keeps_only_the_vm_tools_steps_once(
    host: TestClient, manager: NodeManager
) -> None:
    row = _define(manager, "reported-vm")
    manager.store.set_runtime(row.uuid, launch=2, state="running", reason="booted")
    now = time.time()
    reports = [_report(2, 1, now), _report(2, 1, now + 1), _report(2, 8, now), _report(1, 2, now)]
    assert manager.report_steps("reported-vm", reports) == 1  # 1 once; 8 is the host's; 2 is old
    assert [s.step for s in manager.store.steps(row.uuid, 2)] == [1]
    body = {"steps": [_report(2, 11, now).to_wire() | {"outcome": "maybe"}]}
    r = host.post("/v1/domains/reported-vm/timeline", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "outcome"
    r = host.post("/v1/domains/reported-vm/timeline", headers=AUTH, json={"steps": [{"step": 99}]})
    assert r.status_code == 400, r.text


def test_the_card_names_the_owners_launch_id(host: TestClient, manager: NodeManager) -> None:
    art = Artifacts(*(Path(f"/srv/{n}") for n in ("fw", "bad", "vmlinuz", "initrd", "disk", "pw")))
    launch_id = "0123456789abcdef0123456789abcdef"
    xml = with_launch_ref(
        domain_xml("linked-vm", art, art.firmware), launch_id, "https://b.example"
    )
    asyncio.run(manager.define(xml))
    text = host.get("/ui/fragments/domains", headers=AUTH).text
    assert f'class="owner-launch" data-launch="{launch_id}"' in text
    assert f'<code class="value" title="{launch_id}">{launch_id}</code>' in text  # whole
    assert f'data-copy="{launch_id}"' in text
    assert f'<a href="https://b.example/?q={launch_id}" target="_blank"' in text
    assert 'id="domain-linked-vm"' in text  # where the broker's page links back to
