"""The dashboards in headless Chromium against a real emulated stack: a platform service, its
key server, a host manager on TCP with a token, and a broker on TCP.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package (its driver
only: Playwright never downloads a browser here). Screenshots go to $SEVLAUNCH_TEST_ARTIFACTS
(default: the test's tmp_path).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sevlaunch.broker.client import BrokerClient
from sevlaunch.errors import SevlaunchError
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate.demo import Artifacts, domain_xml, make_artifacts
from sevlaunch.orchestrate.launch import Launcher, LaunchResult
from sevlaunch.orchestrate.owner_port import BrokerOwner
from sevlaunch.platform.state import STATE_FILE
from tests.platform.templates import template_state

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SEVLAUNCH = str(Path(sys.executable).parent / "sevlaunch")
WORKLOAD = "web"
POLICY = 0x1
WAIT = 30.0  # a bound on waiting, not a claim about speed
WAIT_MS = WAIT * 1000


def _env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready within {WAIT} s")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class WebStack:
    root: Path
    art: Artifacts
    host_port: int = field(default_factory=_free_port)
    broker_port: int = field(default_factory=_free_port)
    host_token: str = field(default_factory=lambda: secrets.token_hex(16))
    owner_token: str = field(default_factory=lambda: secrets.token_hex(16))
    launcher_token: str = field(default_factory=lambda: secrets.token_hex(16))
    kds_url: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.broker_port}"

    @property
    def platform_socket(self) -> Path:
        return self.root / "p.sock"

    def _spawn(self, name: str, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [SEVLAUNCH, *args], stdout=stdout or log, stderr=log, env=_env(), cwd=self.root
        )
        self.procs.append(proc)
        return proc

    def _secret_file(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    def start(self) -> None:
        state = self.root / "platform"
        state.mkdir(mode=0o700)
        (state / STATE_FILE).write_bytes(template_state())
        (state / STATE_FILE).chmod(0o600)
        sock = str(self.platform_socket)
        platform = self._spawn(
            "platform", "platform", "serve", "--state", str(state), "--listen", sock
        )
        _wait(self.platform_socket.exists, "the platform service", platform)
        kds = self._spawn("kds", "platform", "kds", "--platform", sock, stdout=subprocess.PIPE)
        assert kds.stdout is not None
        self.kds_url = kds.stdout.readline().decode().strip()
        host = self._spawn(
            "host", "host", "serve", "--state", str(self.root / "host"),
            "--listen", f"tcp:127.0.0.1:{self.host_port}", "--platform", sock,
            "--host-token-file", self._secret_file("host.token", self.host_token.encode()),
        )  # fmt: skip
        broker = self._spawn(
            "broker", "broker", "serve", "--db", f"sqlite:///{self.root / 'broker.db'}",
            "--kek-file", self._secret_file("kek", secrets.token_bytes(32)),
            "--listen", f"tcp:127.0.0.1:{self.broker_port}",
            "--owner-token-file", self._secret_file("owner.token", self.owner_token.encode()),
            "--launcher-token-file", self._secret_file("launcher.token", self.launcher_token.encode()),
            "--log-level", "warning",
        )  # fmt: skip
        _wait(lambda: _answers(self.host_url), "the host manager", host)
        _wait(lambda: _answers(self.broker_url), "the broker", broker)
        self._register()

    def _register(self) -> None:
        """The guest owner trusts the emulated root and registers the workload and its secret."""
        from sevlaunch.owner.launch_digest import launch_digest
        from sevlaunch.platform.client import PlatformClient

        with PlatformClient(self.platform_socket) as platform:
            ca = platform.ca_chain()
        art = self.art
        with art.firmware.open("rb") as fw, art.kernel.open("rb") as k, art.initrd.open("rb") as i:
            digest = launch_digest(fw, k, i, "console=ttyS0 root=/dev/vda ro")
        with BrokerClient(self.broker_url, self.owner_token.encode()) as broker:
            broker.add_root(ca, name="emulated")
            broker.add_workload(
                WORKLOAD, [POLICY], [digest], secrets={"luks-key": art.passphrase.read_bytes()}
            )

    def host(self) -> HostClient:
        return HostClient(f"tcp:127.0.0.1:{self.host_port}", token=self.host_token)

    def launch(self, name: str, firmware: Path) -> LaunchResult:
        owner = BrokerOwner(self.broker_url, self.launcher_token.encode(), WORKLOAD)
        with self.host() as host:
            xml = domain_xml(name, self.art, firmware)
            return Launcher(host, owner, xml, kds_url=self.kds_url).run()

    def stop(self) -> None:
        """Destroy the guests (they outlive a stopped host manager), then end our processes."""
        try:
            with self.host() as host:
                for domain in host.list_domains():
                    host.destroy(domain.name)
        except (SevlaunchError, httpx.HTTPError) as exc:  # teardown goes on; say why
            print(f"could not destroy the guests: {exc}", file=sys.stderr)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="browser tests need the playwright package (pip install playwright)",
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(browser: Browser) -> Iterator[WebStack]:
    root = Path(tempfile.mkdtemp(prefix="sevweb-", dir="/tmp"))
    running = WebStack(root, make_artifacts(root / "media"))
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("SEVLAUNCH_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _sign_in(page: Page, url: str, token: str, shot: Path | None = None) -> None:
    page.goto(url)
    page.wait_for_selector("#login", state="visible", timeout=WAIT_MS)
    if shot is not None:
        page.screenshot(path=str(shot))
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def _card(name: str) -> str:
    return f'article.domain[data-name="{name}"]'


RECORD_CARD = """name => {
  window.seen = [];
  const record = () => {
    const card = document.querySelector(`article.domain[data-name="${name}"]`);
    if (!card) return;
    const rows = [...card.querySelectorAll("tr[data-step]")]
      .map(r => `${r.dataset.step}:${r.className}`).join(",");
    if (window.seen[window.seen.length - 1] !== rows) window.seen.push(rows);
  };
  new MutationObserver(record).observe(
    document.getElementById("domains"), {childList: true, subtree: true});
}"""


def test_host_page_follows_a_launch_live(page: Page, stack: WebStack, artifacts: Path) -> None:
    _sign_in(page, stack.host_url, stack.host_token, artifacts / "host-login.png")
    page.wait_for_selector("#live.on", timeout=WAIT_MS)  # subscribed to /v1/events
    page.wait_for_selector("#node dl.facts", timeout=WAIT_MS)
    assert "emulated (milan)" in page.inner_text("#node")
    assert "No events yet" in page.inner_text("#events")  # not blank before the first event
    assert "--host-token-file" in (page.text_content("#login .where") or "")  # where it is
    page.evaluate(RECORD_CARD, "web-live")
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(stack.launch, "web-live", stack.art.firmware).result(timeout=WAIT * 2)
    assert result.ok, result.error
    # wait on the state the card ends in, not on a row that appears before it gets there
    page.wait_for_selector(f"{_card('web-live')}.verdict-ok.state-running", timeout=WAIT_MS)
    booted = f'{_card("web-live")} tr[data-step="13"]:has-text("guest booted")'
    page.wait_for_selector(booted, timeout=WAIT_MS)
    seen: list[str] = page.evaluate("window.seen")
    assert len(seen) >= 2, seen  # the card changed while the launch ran, without a reload
    assert "13:step outcome-ok" not in seen[0]
    assert page.locator("#events li.event").count() > 0
    assert page.locator("#events li.no-events").count() == 0
    rows = _step_rows(page, _card("web-live"))
    assert [r["step"] for r in rows] == list(range(1, 14))  # all 13, none twice
    assert all(r["outcome"] == "ok" and r["duration"] not in ("", "—") for r in rows), rows
    _same_figures_as_the_terminal(rows, result)
    ends = {r["step"]: r["start"] + r["seconds"] for r in rows}
    # step 9 begins where step 8 ended, to the page's precision: starts to the millisecond,
    # durations to 0.1 ms below a second and to 10 ms above (a VMM start under load takes > 1 s)
    slack = 0.001 + (0.005 if rows[7]["duration"].endswith(" s") else 0.00005)
    assert rows[8]["start"] >= ends[8] - slack, rows
    page.screenshot(path=str(artifacts / "host-live-launch.png"), full_page=True)


STEP_ROWS = """card => [...document.querySelectorAll(`${card} tr[data-step]`)].map(r => {
  const cells = r.querySelectorAll("td");
  const time = cells[3].querySelector("time");
  return {step: Number(r.dataset.step), outcome: cells[5].innerText.trim(),
          duration: cells[4].innerText.trim(), detail: cells[6].innerText,
          start: time ? Date.parse(time.getAttribute("datetime")) / 1000 : null,
          text: time ? time.innerText : ""};
})"""


def _step_rows(page: Page, card: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.evaluate(STEP_ROWS, card)
    for row in rows:
        text = row["duration"]
        number = float(text.split()[0]) if text[:1].isdigit() else None
        row["seconds"] = None if number is None else number / (1000 if text.endswith(" ms") else 1)
    return rows


def _same_figures_as_the_terminal(rows: list[dict[str, Any]], result: LaunchResult) -> None:
    """The page's duration of each step is the one the VM tool printed (to its precision)."""
    for row, record in zip(rows, result.steps[: len(rows)], strict=True):
        assert record.duration is not None, record
        assert row["seconds"] == pytest.approx(record.duration, abs=0.006), (row, record)
        assert row["start"] == pytest.approx(record.started, abs=0.002), (row, record)


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def test_a_refused_launch_on_both_pages(page: Page, stack: WebStack, artifacts: Path) -> None:
    result = stack.launch("web-tampered", stack.art.tampered)
    assert (result.ok, result.failed_step) == (False, 11)
    _sign_in(page, stack.host_url, stack.host_token)
    card = _card("web-tampered")
    page.wait_for_selector(f"{card}.verdict-failed", timeout=WAIT_MS)
    alert = page.inner_text(f"{card} .alert-failed")
    assert "step 11 (measurement checked) failed" in alert
    assert "matches none of the workload's 1 expected launch digest(s)" in alert
    assert page.locator(f'{card} tr.outcome-failed[data-step="11"]').count() == 1
    rows = _step_rows(page, card)
    assert [r["step"] for r in rows] == list(range(1, 14))
    assert [r["outcome"] for r in rows[11:]] == ["not reached", "not reached"]
    assert result.measurement
    assert result.measurement in rows[9]["detail"]
    assert all(ISO.match(r["text"]) for r in rows[:11]), rows  # date, time and zone
    launch_id = page.get_attribute(f"{card} .owner-launch", "data-launch")
    assert launch_id == result.launch_id
    page.locator(card).scroll_into_view_if_needed()
    page.locator(card).screenshot(path=str(artifacts / "host-refused-launch.png"))

    _sign_in(page, stack.broker_url, stack.launcher_token)  # not the owner's: refused
    page.wait_for_selector("#login", state="visible", timeout=WAIT_MS)
    page.wait_for_selector("#toast:has-text('needs the owner token')", timeout=WAIT_MS)
    assert "needs the owner token" in page.inner_text("#login-error")
    assert "--owner-token-file" in page.inner_text("#login")  # where the token is
    page.fill("#token", stack.owner_token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#workloads table.workloads", timeout=WAIT_MS)
    assert page.locator("#login-error").is_hidden()  # no stale "refused" after a good login
    assert page.locator("#toast.auth").count() == 0 or page.locator("#toast").is_hidden()
    page.select_option("#f-decision", "refused")
    page.wait_for_function(
        "() => document.querySelectorAll('#launches tr.launch').length > 0 && "
        "[...document.querySelectorAll('#launches tr.launch')]"
        ".every(r => r.classList.contains('decision-refused'))",
        timeout=WAIT_MS,
    )
    refused = page.inner_text("#launches")
    assert "measurement-mismatch" in refused
    assert "matches none of the workload's 1 expected launch digest(s)" in refused
    row = f'#launches tr.launch[data-launch="{launch_id}"]'
    assert page.get_attribute(row, "data-domain") == "web-tampered"  # the broker names it
    assert result.measurement in page.inner_text("#launches .measurement")
    steps = f'#launches tr.launch[data-launch="{launch_id}"] + tr.why details.steps'
    page.click(f"{steps} summary")
    rows = _step_rows(page, steps)
    assert [r["step"] for r in rows] == list(range(1, 14))  # the owner's page: all 13 too
    _same_figures_as_the_terminal(rows[:11], result)  # steps 12, 13 did not happen
    assert page.locator("#audit tr.audit-entry.outcome-refused").count() >= 1
    page.screenshot(path=str(artifacts / "broker-refused-launch.png"), full_page=True)
    _follow_the_links(page, stack, launch_id, "web-tampered")


def _follow_the_links(page: Page, stack: WebStack, launch_id: str, domain: str) -> None:
    """The host's card links to the broker's page on its launch, which links back to it (the
    tab holds both tokens already: each origin keeps its own)."""
    page.goto(stack.host_url)
    link = f"{_card(domain)} .owner-launch a"
    page.wait_for_selector(link, timeout=WAIT_MS)
    to_broker = page.get_attribute(link, "href")
    assert to_broker == f"{stack.broker_url}/?q={launch_id}"
    page.goto(to_broker)  # the owner token is still in this tab's session for the broker
    page.wait_for_selector("#launches table.launches", timeout=WAIT_MS)
    assert page.input_value("#f-text") == launch_id
    page.wait_for_function(
        "id => [...document.querySelectorAll('#launches tr.launch')]"
        ".map(r => r.dataset.launch).join() === id",
        arg=launch_id,
        timeout=WAIT_MS,
    )  # only that launch
    back = page.get_attribute(
        f'#launches tr.launch[data-launch="{launch_id}"] td.domain-name a', "href"
    )
    assert back == f"{stack.host_url}/#domain-{domain}"
    page.goto(back)
    page.wait_for_selector(f"{_card(domain)}.linked", timeout=WAIT_MS)


def test_the_broker_page_at_800_px(browser: Browser, stack: WebStack, artifacts: Path) -> None:
    refused = stack.launch("web-narrow", stack.art.tampered)  # a launch with every detail
    assert refused.failed_step == 11
    context = browser.new_context(viewport={"width": 800, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.broker_url)
    page = context.new_page()
    try:
        _sign_in(page, stack.broker_url, stack.owner_token)
        page.wait_for_selector("#audit table.audit", timeout=WAIT_MS)
        page.wait_for_selector("#launches table.launches", timeout=WAIT_MS)
        page.screenshot(path=str(artifacts / "broker-800px.png"), full_page=True)
        size = page.evaluate(
            "() => ({width: document.documentElement.scrollWidth, "
            "height: document.documentElement.scrollHeight, "
            "detail: Math.min(...[...document.querySelectorAll('#audit tr.audit-detail > td.detail')]"
            ".map(c => c.getBoundingClientRect().width)), "
            "entries: document.querySelectorAll('#audit tr.audit-entry').length, "
            "overflow: [...document.querySelectorAll('#launches, #audit, #workloads')]"
            ".map(c => c.scrollWidth - c.clientWidth)})"
        )
        assert size["width"] <= 800, size  # nothing sticks out of the window
        assert size["overflow"] == [0, 0, 0], size  # no table wider than its card
        assert size["detail"] >= 400, size  # the detail has the row's width, not 5 characters
        assert size["height"] <= 800 + 200 * size["entries"], size  # no 5000 px page
        assert "any" in page.inner_text("#workloads td:nth-child(4)")  # not "API 0.0 build 0"
        secrets_ = page.eval_on_selector_all(
            "#audit ul.values li", "els => els.map(e => e.innerText)"
        )
        assert "luks-key" in secrets_  # a list on the page, not a Python repr
        assert "['luks-key']" not in page.inner_text("#audit")
        times = page.eval_on_selector_all(
            "#audit tr.audit-entry time", "els => els.map(e => e.innerText)"
        )
        assert times
        assert all(ISO.match(t) for t in times), times
        launch_id = page.get_attribute("#launches tr.launch", "data-launch")
        assert launch_id
        page.click(f'#launches tr.launch[data-launch="{launch_id}"] button.copy')
        page.wait_for_selector("#toast:has-text('Copied')", timeout=WAIT_MS)
        assert page.evaluate("navigator.clipboard.readText()") == launch_id  # whole, not cut
    finally:
        context.close()


def test_resume_and_destroy_buttons(page: Page, stack: WebStack, artifacts: Path) -> None:
    result = stack.launch("web-resume", stack.art.firmware)
    assert result.ok, result.error
    _sign_in(page, stack.host_url, stack.host_token)
    page.wait_for_selector("#live.on", timeout=WAIT_MS)
    card = _card("web-resume")
    with stack.host() as host:
        host.suspend("web-resume")
    page.wait_for_selector(f'{card}[data-state="paused"]', timeout=WAIT_MS)
    page.locator(card).screenshot(path=str(artifacts / "host-paused.png"))
    page.click(f'{card} button[data-action="resume"]')
    page.wait_for_selector(f'{card}[data-state="running"]', timeout=WAIT_MS)
    with stack.host() as host:
        assert host.domain("web-resume").state == "running"
    page.locator(card).screenshot(path=str(artifacts / "host-resumed.png"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f'{card} button[data-action="destroy"]')
    page.wait_for_selector(f'{card}[data-state="shutoff"]', timeout=WAIT_MS)
    assert page.locator(f'{card} button[data-action="resume"]').is_disabled()


DASHBOARD_LINE = re.compile(
    r"(host manager|broker) dashboard: (http://127\.0\.0\.1:\d+/) \((?:owner )?token: the file "
    r"(\S+)\)"
)


def test_demo_keep_prints_dashboards_a_browser_opens(page: Page, artifacts: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="sl-web-", dir="/tmp"))  # short: guest sockets under it
    env = _env() | {"COLUMNS": "200"}
    try:
        done = subprocess.run(
            [SEVLAUNCH, "demo", "--keep", "--dir", str(root)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        found = {
            m.group(1): (m.group(2), Path(m.group(3))) for m in DASHBOARD_LINE.finditer(done.stdout)
        }
        assert set(found) == {"host manager", "broker"}, done.stdout
        url, token_file = found["host manager"]
        _sign_in(page, url, token_file.read_text().strip())
        card = _card("demo-1")
        page.wait_for_selector(f"{card}.verdict-ok", timeout=WAIT_MS)
        assert [r["step"] for r in _step_rows(page, card)] == list(range(1, 14))
        launch_id = page.get_attribute(f"{card} .owner-launch", "data-launch")
        page.screenshot(path=str(artifacts / "demo-host.png"), full_page=True)
        url, token_file = found["broker"]
        _sign_in(page, url, token_file.read_text().strip())
        row = f'#launches tr.launch[data-launch="{launch_id}"]'
        page.wait_for_selector(row, timeout=WAIT_MS)
        assert page.get_attribute(row, "data-domain") == "demo-1"  # the same launch, both pages
        page.screenshot(path=str(artifacts / "demo-broker.png"), full_page=True)
    finally:
        _reap(root)
        shutil.rmtree(root, ignore_errors=True)


def _reap(root: Path) -> None:
    """End, by pid, every process the kept demo left running under ``root``."""
    from tests.orchestrate.stack import reap

    reap(str(root))
