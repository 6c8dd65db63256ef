"""No Python traceback for a user's mistake: a corpus of wrong invocations of the real
``sevlaunch`` against a real emulated host with a guest running (wrong socket, service down,
wrong token, typo'd option, missing or malformed file, wrong address form, a second server
on a live one's socket, state or database). Each must end with one line on stderr that says
what was wrong, exit 1 or 2, and lose nothing: the services still answer and the platform's
state, the host's domains and the broker's catalogue are what they were.

Signals to the servers (SIGTERM and SIGINT to ``platform serve``, ``host serve`` and ``broker
serve`` with guests running) are ``tests/platform/test_serve.py``'s.

Exit 2 is for the command line (click's refusals; an option value, address or file that
cannot be used as given), 1 for what the command met (a service, a file's contents or mode,
a socket or state in use)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sevlaunch._files import write_atomic
from sevlaunch.broker.client import BrokerClient
from sevlaunch.cli import cli
from sevlaunch.host.client import HostClient
from sevlaunch.platform.client import PlatformClient
from tests.orchestrate.stack import BIN, RunningStack, running_stack, unique
from tests.services import free_port, service

SEVLAUNCH = str(BIN / "sevlaunch")
GUEST = "corpus-guest"


@dataclass(frozen=True)
class Case:
    """``args`` and ``env`` are formatted with :meth:`Corpus.names`."""

    id: str
    args: tuple[str, ...]
    status: int  # 1 or 2
    words: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def case(id_: str, args: str, status: int, *words: str, **env: str) -> Case:
    return Case(id_, tuple(args.split()), status, words, tuple(env.items()))


CASES = [
    # -- wrong socket: another service's, named within seconds
    case("platform-at-host-socket", "platform status --platform {host_sock}", 1,
         "{host_sock}", "did not answer as a platform service"),
    case("host-at-platform-socket", "host list -c unix:{platform_sock}", 1, "{platform_sock}"),
    case("broker-at-host-socket", "broker trust list --broker unix:{host_sock}", 1,
         "unix:{host_sock}", "not a broker"),
    case("launch-host-at-platform-socket",
         "launch {f}/vm.xml --workload demo -c unix:{platform_sock}", 1, "{platform_sock}"),
    # -- service down
    case("host-down", "host list -c unix:{f}/none.sock", 1, "{f}/none.sock", "host serve"),
    case("platform-down", "platform status --platform {f}/none.sock", 1, "{f}/none.sock"),
    case("broker-down", "broker trust list --broker tcp:127.0.0.1:{closed}", 1,
         "127.0.0.1:{closed}", "broker serve"),
    case("launch-broker-down", "launch {f}/vm.xml --workload demo --broker tcp:127.0.0.1:{closed}",
         1, "127.0.0.1:{closed}"),
    case("kds-down", "owner fetch-cek --chip-id {chip} --kds-url http://127.0.0.1:{closed}", 2,
         "127.0.0.1:{closed}"),
    case("launch-kds-down", "launch {f}/vm.xml --workload demo --kds-url http://127.0.0.1:{closed}",
         1, "127.0.0.1:{closed}", "VM tool → AMD key server"),
    # -- wrong token
    case("host-wrong-token", "host list -c {host_tcp} --host-token-file {f}/wrong.token", 1,
         "token"),
    case("host-no-token", "host list -c {host_tcp}", 1, "token"),
    case("owner-wrong-token", "broker workload list --owner-token-file {f}/wrong.token", 1, "token"),
    case("owner-launcher-token", "broker workload list --owner-token-file {launcher_token}", 1,
         "owner token"),
    case("launch-wrong-token", "launch {f}/vm.xml --workload demo --launcher-token-file {f}/wrong.token",
         1, "token"),
    case("owner-malformed-token", "broker workload list --owner-token-file {f}/short.token", 2,
         "{f}/short.token", "at least 16"),
    case("broker-no-token", "broker workload list", 2, "--owner-token-file",
         SEVLAUNCH_OWNER_TOKEN_FILE=""),
    case("broker-token-missing", "broker workload list --owner-token-file {f}/missing.token", 2,
         "{f}/missing.token"),
    # -- typos
    case("option-typo", "platform export --ful --out {f}/x", 2, "--full"),
    case("command-typo", "host lsit", 2, "'list'"),
    case("subcommand-typo", "broker workload ad x", 2, "'add'"),
    case("launch-option-typo", "launch {f}/vm.xml --workloadd demo", 2, "--workload"),
    case("owner-option-typo", "owner digest --firmwre {f}/garbage", 2, "--firmware"),
    case("demo-option-typo", "demo --guest 2", 2, "--guests"),
    case("missing-option", "image firmware", 2, "--out"),
    # -- missing or malformed files
    case("define-missing", "host define {f}/missing.xml", 2, "{f}/missing.xml"),
    case("define-not-xml", "host define {f}/bad.xml", 1, "XML error"),
    case("define-not-a-domain", "host define {f}/foo.xml", 1, "<domain>"),
    case("launch-missing-xml", "launch {f}/missing.xml --workload demo", 2, "{f}/missing.xml"),
    case("verify-garbage-chain", "owner verify --chain {f}/garbage --trust-root {f}/ca.cert", 1,
         "{f}/garbage", "chain"),
    case("verify-missing-chain", "owner verify --chain {f}/missing", 2, "{f}/missing"),
    case("trust-add-garbage", "broker trust add {f}/garbage", 1, "{f}/garbage"),
    case("owner-json-not-json", "launch {f}/vm.xml --owner-dir {f}/badjson", 2, "is not JSON"),
    case("owner-json-typo", "launch {f}/vm.xml --owner-dir {f}/typo", 2, "unknown key 'trust-root'"),
    case("secret-missing-tek", "owner secret --tek {f}/missing --tik {f}/garbage --measurement AAAA "
         "--secret luks-key:{f}/garbage --header-out {f}/h --payload-out {f}/p", 2, "{f}/missing"),
    case("disk-empty-passphrase", "image disk --out {f}/d.img --label r --passphrase-file {f}/empty",
         2, "empty"),
    case("inject-garbage", "host domsetlaunchsecstate " + GUEST + " --secrethdr {f}/garbage.txt "
         "--secret {f}/garbage.txt", 1, "base64"),
    case("serve-short-kek", "broker serve --db sqlite:///{f}/b1.db --kek-file {f}/short.kek "
         "--owner-token-file {owner_token} --listen tcp:127.0.0.1:{free}", 1, "32 random bytes"),
    case("serve-open-kek", "broker serve --db sqlite:///{f}/b2.db --kek-file {f}/open.kek "
         "--owner-token-file {owner_token} --listen tcp:127.0.0.1:{free}", 1, "{f}/open.kek",
         "chmod 600"),
    case("validate-not-base64", "owner validate --measurement *** --api-major 0 --api-minor 24 "
         "--build-id 15 --policy 1 --tik {f}/tik --firmware {f}/garbage", 2, "measurement"),
    case("launch-garbage-cek", "launch {f}/vm.xml --workload demo --cek {f}/garbage.cek", 1,
         "step 4"),
    case("policy-typo", "broker workload add w --policy nodgb --digest " + "ab" * 32, 2,
         "'nodgb'"),
    # -- wrong address forms
    case("address-scheme", "host list -c foo:bar", 2, "'foo:bar'", "tcp:HOST:PORT"),
    case("address-no-port", "host list -c tcp:localhost", 2, "'tcp:localhost'"),
    case("address-no-colon", "broker trust list --broker http//x", 1, "http//x"),
    case("kds-listen-unix", "platform kds --listen unix:{f}/k.sock", 2, "tcp:HOST:PORT"),
    case("listen-host-port", "broker serve --db sqlite:///{f}/b3.db --kek-file {kek} "
         "--owner-token-file {owner_token} --listen 127.0.0.1:99999", 2, "tcp:127.0.0.1:99999"),
    case("listen-plain-off-loopback", "host serve --state {f}/h1 --listen tcp:0.0.0.0:{free}", 2,
         "loopback"),
    case("launch-host-closed-port", "launch {f}/vm.xml --workload demo -c http://127.0.0.1:{closed}",
         1, "127.0.0.1:{closed}"),
    # -- requests the services refuse
    case("start-unknown", "host start nosuch", 1, "nosuch"),
    case("undefine-running", "host undefine " + GUEST, 1, GUEST),
    case("launch-running", "launch {f}/running.xml --workload demo", 1, "already running"),
    case("workload-unknown", "broker workload show nosuch", 1, "nosuch"),
    # -- a second server on a live one's socket, state or database
    case("second-host-same-socket", "host serve --state {f}/h2 --listen unix:{host_sock}", 1,
         "{host_sock}", "in use"),
    case("second-host-same-state", "host serve --state {host_state} --listen unix:{f}/h3.sock",
         1, "{host_state}", "in use"),
    case("second-platform-same-state", "platform serve --state {platform_state} "
         "--listen {f}/p.sock", 2, "{platform_state}"),
    case("second-platform-same-socket", "platform serve --state {f}/p2 --listen {platform_sock}",
         1, "{platform_sock}", "another platform service"),
]  # fmt: skip


class Corpus:
    """The running stack, a TCP host manager with a token, and the files the cases name."""

    def __init__(self, env: RunningStack, host_tcp: str, files: Path) -> None:
        self.env, self.host_tcp, self.files = env, host_tcp, files

    def names(self) -> dict[str, str]:
        stack = self.env.stack
        with PlatformClient(stack.platform_socket) as platform:
            chip = platform.get_id()[:64].hex()
        return {
            "f": str(self.files),
            "host_sock": str(stack.host_socket),
            "platform_sock": str(stack.platform_socket),
            "host_tcp": self.host_tcp,
            "host_state": str(stack.root / "host"),
            "platform_state": str(stack.root / "platform"),
            "owner_token": str(stack.owner_token),
            "launcher_token": str(stack.launcher_token),
            "kek": str(stack.root / "kek"),
            "closed": str(closed_port()),
            "free": str(free_port()),
            "chip": chip,
        }

    def environ(self, extra: dict[str, str]) -> dict[str, str]:
        stack = self.env.stack
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
        env.update(
            COLUMNS="200",
            SEVLAUNCH_HOST=stack.host_uri,
            SEVLAUNCH_PLATFORM=f"unix:{stack.platform_socket}",
            SEVLAUNCH_BROKER_URL=stack.broker_url,
            SEVLAUNCH_OWNER_TOKEN_FILE=str(stack.owner_token),
            SEVLAUNCH_LAUNCHER_TOKEN_FILE=str(stack.launcher_token),
            SEVLAUNCH_KDS_URL=stack.kds_url,
            XDG_CACHE_HOME=str(self.files / "cache"),
        )
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def snapshot(self) -> dict[str, Any]:
        """What must not change: platform state files, domains, the broker's catalogue."""
        stack = self.env.stack
        state = stack.root / "platform"
        with HostClient(stack.host_uri) as host:
            domains = {
                d.name: (d.state, host.dumpxml(d.name)) for d in host.list_domains(all_domains=True)
            }
        token = stack.owner_token.read_bytes().strip()
        with BrokerClient(stack.broker_url, token) as broker:
            catalogue = (broker.roots(), broker.workloads())
        with PlatformClient(stack.platform_socket) as platform:
            status = platform.platform_status()
        return {
            "platform": {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(state.iterdir())
                if p.is_file() and p.suffix != ".lock"
            },
            "guests": status.guest_count,
            "domains": domains,
            "broker": catalogue,
        }


def closed_port() -> int:
    """A loopback port nobody listens on (bound to nothing once this returns)."""
    return free_port()


def make_files(env: RunningStack, files: Path) -> None:
    files.mkdir()
    (files / "vm.xml").write_text(env.xml(unique("corpus")))
    (files / "running.xml").write_text(env.xml(GUEST))
    (files / "bad.xml").write_text("<domain")
    (files / "foo.xml").write_text("<foo/>")
    (files / "garbage").write_bytes(os.urandom(100))
    (files / "tik").write_bytes(os.urandom(16))
    (files / "garbage.cek").write_bytes(os.urandom(2084))
    (files / "garbage.txt").write_text("not base64 !\n")
    (files / "empty").write_bytes(b"")
    write_atomic(files / "wrong.token", os.urandom(24).hex().encode() + b"\n")
    write_atomic(files / "short.token", b"not-a-token\n")
    write_atomic(files / "short.kek", os.urandom(5))
    (files / "open.kek").write_bytes(os.urandom(32))
    (files / "open.kek").chmod(0o644)
    with PlatformClient(env.stack.platform_socket) as platform:
        (files / "ca.cert").write_bytes(platform.ca_chain())
    for name, text in (("badjson", '{"policy": '), ("typo", '{"trust-root": ["ca.cert"]}')):
        (files / name).mkdir()
        (files / name / "owner.json").write_text(text)


@pytest.fixture(scope="module")
def corpus() -> Iterator[Corpus]:
    with running_stack("sl-corpus-") as env:
        result = env.launch(env.xml(GUEST))
        assert result.ok, result.message
        files = env.root / "files"
        make_files(env, files)
        with service("host", env.root / "tcp-host") as tcp:
            yield Corpus(env, tcp.address, files)
        shutil.rmtree(files, ignore_errors=True)


def in_process(item: Case) -> bool:
    """Servers (their umask, locks, sockets and loops) and ``sevlaunch --help``/``owner
    digest`` (answered before click by ``cli._fast``) run as processes; the rest through
    click's runner, which gives the same line and status at a fraction of the cost."""
    return item.args[1:2] != ("serve",) and item.args[:2] not in {
        ("platform", "kds"),
        ("owner", "digest"),
    }


def invoke(corpus: Corpus, item: Case, names: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The case through click's runner; an exception that escapes is shown as a traceback."""
    args = [a.format(**names) for a in item.args]
    env = corpus.environ({k: v.format(**names) for k, v in item.env})
    unset: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    result = CliRunner().invoke(cli, args, env={**unset, **env}, catch_exceptions=True)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "Traceback: " + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, err)


def run_case(corpus: Corpus, item: Case, names: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [a.format(**names) for a in item.args]
    extra = {k: v.format(**names) for k, v in item.env}
    try:
        return subprocess.run(
            [SEVLAUNCH, *args],
            capture_output=True,
            text=True,
            env=corpus.environ(extra),
            cwd=corpus.files,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # killed by run(): a hang is a failure too
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else ""
        return subprocess.CompletedProcess(args, -9, out, "did not end within 60 s")


def check(item: Case, done: subprocess.CompletedProcess[str], names: dict[str, str]) -> str | None:
    """Why ``done`` is not a one-line refusal with the right status and words, or None."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    said = f"status {done.returncode}, stderr {done.stderr!r}"
    if "Traceback" in done.stdout + done.stderr:
        return f"a traceback: {said}"
    if done.returncode != item.status:
        return f"expected status {item.status}: {said}"
    if len(lines) != 1:
        return f"expected one line on stderr: {said}"
    for word in item.words:
        if word.format(**names) not in lines[0]:
            return f"{word.format(**names)!r} not in the line: {said}"
    return None


def test_the_corpus_is_at_least_forty_distinct_mistakes() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.status for c in CASES} == {1, 2}


def test_every_mistake_is_one_line_and_loses_nothing(corpus: Corpus) -> None:
    before = corpus.snapshot()
    names = corpus.names()
    processes = [c for c in CASES if not in_process(c)]
    # the runner sets os.environ while the processes start: it changes only SEVLAUNCH_*
    # variables, which Corpus.environ sets for each process anyway
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = pool.map(lambda c: run_case(corpus, c, names), processes)
        results = {c.id: invoke(corpus, c, names) for c in CASES if in_process(c)}
        results.update((c.id, done) for c, done in zip(processes, running, strict=True))
    failures = []
    for item in CASES:
        done = results[item.id]
        why = check(item, done, names)
        if why is not None:
            failures.append(f"{item.id}: {why}")
    assert failures == [], "\n".join(failures)
    assert corpus.snapshot() == before  # every service still answers, with what it had
    with HostClient(corpus.env.stack.host_uri) as host:
        assert "disk label" in host.console(GUEST)  # the guest still runs, unharmed
