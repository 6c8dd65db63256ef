"""Steps 1-13 of an attested launch, between a host manager and a guest owner.

The host manager is a :class:`~sevlaunch.orchestrate.host_port.HostPort`: sevlaunch's over
HTTP or libvirt, the same steps either way. :class:`Launcher` runs one guest: it asks the
host for node SEV info, gets a session from the owner, defines and starts the domain paused,
reads the measurement, has it checked, injects the secret, resumes and waits for the guest to
report its boot. Any failure destroys the
domain and is reported as :class:`LaunchFailedError` naming the step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sevlaunch import _http
from sevlaunch.errors import (
    DownloadError,
    HostError,
    LaunchFailedError,
    LaunchRefusedError,
    QemuCommandError,
    SevlaunchError,
    UsageError,
)
from sevlaunch.formats.chain import CertExport
from sevlaunch.formats.sevcert import Usage
from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.host.launchref import with_launch_ref
from sevlaunch.orchestrate.host_port import HostPort, Watch
from sevlaunch.orchestrate.owner_port import GuestOwner
from sevlaunch.protocol import (
    DomainInfo,
    LaunchConfiguration,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    SessionOffer,
    Step,
)


@dataclass
class StepRecord:
    """One step as the VM tool reports it; ``by_host`` when the host's own record is shown."""

    step: Step
    status: str = "pending"  # pending, running, ok, failed, skipped
    started: float | None = None
    duration: float | None = None
    detail: str = ""
    by_host: bool = False
    by: str | None = None  #: who did the step when not the step's usual party

    @property
    def name(self) -> str:
        return self.step.title

    @property
    def party(self) -> str:
        return self.by or self.step.party


Observer = Callable[[str, StepRecord], None]
MEASURE_COMMAND = "query-sev-launch-measure"
T = TypeVar("T")

#: Seconds to wait for the measurement of a hypervisor that measures after it serves QMP.
MEASUREMENT_WAIT = 30.0
#: Who a CEK download failure belongs to: not the host or its firmware, which exported a chain.
KEY_SERVER = "VM tool → AMD key server"
#: Steps the host does alone; the VM tool reports them from the host's own record.
HOST_RECORDED = (Step.SEV_GUEST_BUILT, Step.LAUNCH_MEASURED)

#: Guests started (steps 8-9: hypervisor up, firmware encrypted and measured) at once per host
#: when N launches run together; see :meth:`Launcher._start`.
PARALLEL_STARTS = 8
#: Launches in flight at once (the VM tool's worker threads) when N run together: four per
#: start slot keep the slots fed (a launch spends most of its time outside them) while the
#: rest wait in submission order, each timed from its submission.
LAUNCHERS = 4 * PARALLEL_STARTS


@dataclass
class LaunchResult:
    domain: str
    steps: list[StepRecord] = field(default_factory=list)
    ok: bool = False
    error: str | None = None
    failed_step: Step | None = None
    console: str = ""
    measurement: str = ""  #: sev-measurement as the host reported it (step 10)
    launch_id: str = ""  #: the guest owner's id of this launch (step 4), in the domain's XML
    host_launch: int | None = None  #: the host's number of this launch (step 8)

    @property
    def message(self) -> str:
        """One line for a person: which step failed, why, and what became of the domain."""
        if self.ok:
            return f"{self.domain}: launched and booted"
        if self.failed_step is None:
            return f"{self.domain}: not launched"
        step = self.failed_step
        after = (
            "the domain was destroyed" if step >= Step.STARTED_PAUSED else "no guest was started"
        )
        by = self.steps[step - 1].by if len(self.steps) >= step else None
        return f"{self.domain}: {step} failed{f' ({by})' if by else ''}: {self.error}; {after}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ok": self.ok,
            "error": self.error,
            "failed_step": None if self.failed_step is None else int(self.failed_step),
            "message": self.message,
            "launch_id": self.launch_id or None,
            "host_launch": self.host_launch,
            "measurement": self.measurement or None,
            "steps": [
                {
                    "step": int(s.step),
                    "name": s.name,
                    "party": s.party,
                    "status": s.status,
                    "started": s.started,
                    "duration": s.duration,
                    "detail": s.detail,
                    "by_host": s.by_host,
                }
                for s in self.steps
            ],
        }


def page_of(address: str) -> str | None:
    """The web page of a service at ``address`` (its http(s) root), None on a Unix socket or
    for an address that is not sevlaunch's (a libvirt URI)."""
    try:
        parsed = _http.parse(address)
    except UsageError:
        return None
    return None if parsed.scheme == "unix" else f"{parsed}/"


def failure_words(exc: SevlaunchError) -> str:
    """A failed step's record: the error's words, and for a refusal its reason code and the
    owner's diagnosis, so that the host's page says why as the broker's does."""
    if not isinstance(exc, LaunchRefusedError):
        return str(exc)
    words = f"refused ({exc.reason}): {exc}"
    return f"{words}\ndiagnosis: {exc.diagnosis}" if exc.diagnosis else words


def terminal_words(exc: SevlaunchError) -> str:
    """A failed step's words on the terminal's one line: a refusal's diagnosis (for an
    unmeasurable configuration, its fix) with it, or the user sees the verdict without why."""
    if isinstance(exc, LaunchRefusedError) and exc.diagnosis:
        return f"{exc}; {' '.join(exc.diagnosis.split())}"
    return str(exc)


_signed_ceks: dict[tuple[str | None, bytes], bytes] = {}
_signed_ceks_lock = threading.Lock()


def signed_cek(kds_url: str | None, chip_id: bytes) -> bytes:
    """The AMD-signed CEK of ``chip_id``, fetched once per process: a chip's CEK never changes,
    and N launches on one host must not ask the key server N times (AMD's limits request
    rates). The owner verifies it at step 4 whichever copy it is."""
    from sevlaunch.kds import KdsClient

    key = (kds_url, chip_id)
    with _signed_ceks_lock:
        if key not in _signed_ceks:
            _signed_ceks[key] = KdsClient(kds_url).fetch_cek(chip_id).data
        return _signed_ceks[key]


def prepare_domain(
    xml: str,
    offer_policy: int,
    dh_cert: str,
    session: str,
    *,
    name: str | None = None,
    launch_id: str | None = None,
    broker: str | None = None,
) -> str:
    """The domain XML with the owner's launch blobs in ``<launchSecurity type='sev'>`` and
    the owner's ``launch_id`` (and its page, ``broker``) in its metadata."""
    domain = Domain.from_xml(xml)
    current = domain.launch_security or LaunchSecurity(type="sev", policy=offer_policy)
    if current.type != "sev":
        raise HostError(
            "unsupported configuration", f"launch security type '{current.type}' takes no session"
        )
    sev = dataclasses.replace(
        current,
        policy=offer_policy,
        dh_cert=dh_cert,
        session=session,
        dh_cert_secret=None,
        session_secret=None,
    )
    changes: dict[str, Any] = {"launch_security": sev}
    if name is not None:
        changes.update(name=name, uuid=uuid.uuid4())
    prepared = dataclasses.replace(domain, **changes).to_xml()
    return prepared if launch_id is None else with_launch_ref(prepared, launch_id, broker)


class Launcher:
    """One attested launch of ``xml`` on ``host`` for ``owner``."""

    def __init__(
        self,
        host: HostPort,
        owner: GuestOwner,
        xml: str,
        *,
        name: str | None = None,
        observer: Observer | None = None,
        boot_timeout: float = 60.0,
        kds_url: str | None = None,
        cek: bytes | None = None,
        start_gate: threading.Semaphore | None = None,
    ) -> None:
        """``cek``: the AMD-signed CEK of the host's chip, when it is not to be downloaded."""
        self.host = host
        self.owner = owner
        self.xml = xml
        self.name = name or Domain.from_xml(xml).name
        self.observer = observer or (lambda _d, _s: None)
        self.boot_timeout = boot_timeout
        self.start_gate = start_gate
        self.kds_url = kds_url
        self.cek = cek
        self.result = LaunchResult(self.name, [StepRecord(s) for s in Step])
        self._defined = False

    def _run_step(
        self, step: Step, action: Callable[[], T], detail: Callable[[T], str] | None = None
    ) -> T:
        record = self.result.steps[step - 1]
        record.status, record.started = "running", time.time()
        self.observer(self.name, record)
        try:
            value = action()
        except SevlaunchError as exc:
            record.status, record.duration, record.detail = (
                "failed",
                time.time() - record.started,
                failure_words(exc),
            )
            self.observer(self.name, record)
            raise LaunchFailedError(int(step), step.title, terminal_words(exc)) from exc
        record.status, record.duration = "ok", time.time() - record.started
        record.detail = detail(value) if detail else ""
        self.observer(self.name, record)
        return value

    def _mark(self, step: Step, status: str, detail: str = "") -> None:
        record = self.result.steps[step - 1]
        record.status, record.detail = status, detail
        record.started = record.started or time.time()
        record.duration = 0.0 if record.duration is None else record.duration
        self.observer(self.name, record)

    def run(self) -> LaunchResult:
        try:
            self._steps()
            self.result.ok = True
        except LaunchFailedError as exc:
            self.result.error, self.result.failed_step = exc.reason, Step.of(exc.step)
            self._destroy()
        except BaseException:  # a bug or an interrupt: no guest is left behind either
            self._destroy()
            raise
        self._share_records()
        return self.result

    def _share_records(self) -> None:
        """One record of every step for the terminal and both dashboards (see
        :mod:`sevlaunch.orchestrate.records`)."""
        from sevlaunch.orchestrate.records import share_records

        share_records(self.host, self.owner, self.result, self.observer)

    def _steps(self) -> None:
        self._mark(Step.LAUNCH_REQUESTED, "ok", f"domain {self.name}")
        node = self._run_step(
            Step.NODE_SEV_INFO, self.host.node_sev_info, lambda n: f"cbitpos {n.cbitpos}"
        )
        cek = self._run_step(
            Step.PDH_EXPORTED,
            lambda: self._signed_cek(node),
            lambda c: ("CEK given" if self.cek else "CEK from the key server") if c else "",
        )
        offer = self._run_step(
            Step.PLATFORM_VERIFIED,
            lambda: self.owner.begin(node, cek, domain=self.name, host=page_of(self.host.uri)),
            lambda o: f"launch {o.launch_id}",
        )
        self.result.launch_id = offer.launch_id
        self._mark(Step.SESSION_MADE, "ok", f"policy {offer.policy:#06x}")
        self._run_step(Step.BLOBS_PASSED, lambda: self._define(offer))
        with self.host.watch(self.name) as watch:
            started = self._run_step(
                Step.STARTED_PAUSED, self._start, lambda d: f"launch #{d.launch}"
            )
            self.result.host_launch = started.launch
            self._host_records(started.launch)
            info, _how = self._run_step(
                Step.MEASUREMENT_READ,
                lambda: self._measurement(watch, started.launch),
                lambda found: f"{found[0].measurement_b64} ({found[1]})",
            )
        self.result.measurement = info.measurement_b64
        release = self._run_step(
            Step.MEASUREMENT_CHECKED,
            lambda: self.owner.attest(offer.launch_id, info, self._configuration()),
            lambda _r: "secret released",
        )
        self._inject(release)
        self._run_step(Step.RESUMED_BOOTED, self._resume_and_boot)
        self.result.console = self.host.console(self.name)

    def _host_records(self, launch: int) -> None:
        """Steps 7 and 9 as the host recorded them for this launch: the VM tool does not see
        them happen, so it shows the host's record (or says there is none)."""
        reports = {r.step: r for r in self.host.timeline(self.name, launch)}
        for step in HOST_RECORDED:
            report = reports.get(step)
            record = self.result.steps[step - 1]
            if report is None:
                record.status, record.detail = "skipped", "the host recorded no such step"
                self.observer(self.name, record)
                continue
            record.status, record.detail, record.by_host = report.outcome, report.detail, True
            record.started, record.duration = report.started, report.duration or 0.0
            self.observer(self.name, record)
            if report.outcome != "ok":
                raise LaunchFailedError(int(step), step.title, f"the host says: {report.detail}")

    def _configuration(self) -> LaunchConfiguration:
        """What this domain's XML says the measurement can cover (for step 11's words)."""
        domain = Domain.from_xml(self.xml)
        sev = domain.launch_security
        kernel_hashes = bool(sev is not None and sev.kernel_hashes)
        return LaunchConfiguration(domain.os.kernel is not None, kernel_hashes)

    def _inject(self, release: SecretRelease) -> None:
        if release.empty:
            self._mark(Step.SECRET_INJECTED, "skipped", "the workload has no secret")
            return
        self._run_step(
            Step.SECRET_INJECTED, lambda: self.host.set_launch_security_state(self.name, release)
        )

    def _signed_cek(self, node: NodeSevInfo) -> bytes | None:
        """Real firmware exports the CEK unsigned: fetch AMD's signed copy by chip ID, as
        ``sevctl export --full`` does (from ``kds_url`` for a mirror or an emulated platform)."""
        export = CertExport.from_bytes(node.cert_chain)
        if any(sig.usage is Usage.ASK for sig in export.cek.signatures):
            return None
        if self.cek is not None:
            return self.cek
        if not node.cpu0_id:
            raise HostError(
                "operation failed",
                "the host exports the CEK unsigned and reports no cpu0-id, so AMD's signed CEK "
                "cannot be looked up (libvirt 9.0 drops cpu0-id when it reloads its capability "
                "cache, as after a libvirtd restart: make it probe the emulator again, e.g. "
                "touch the emulator binary)",
                field="cpu0-id",
            )
        try:
            return signed_cek(self.kds_url, node.cpu0_id)
        except DownloadError:
            self.result.steps[Step.PDH_EXPORTED - 1].by = KEY_SERVER
            raise

    def _define(self, offer: SessionOffer) -> None:
        self._refuse_running()
        renamed = self.name if self.name != Domain.from_xml(self.xml).name else None
        self.host.define(
            prepare_domain(
                self.xml,
                offer.policy,
                offer.dh_cert_b64,
                offer.session_b64,
                name=renamed,
                launch_id=offer.launch_id,
                broker=self.owner.records_page(),
            )
        )
        self._defined = True

    def _start(self) -> DomainInfo:
        """Start paused, holding a slot of ``start_gate`` when launches share one: a start
        returns only once the PSP has measured the guest, and one PSP serves one command at
        a time, so unbounded concurrent starts only queue there until the host's monitor
        timeout fails them (nova's ``max_concurrent_builds`` exists for the same reason)."""
        with self.start_gate or contextlib.nullcontext():
            return self.host.start(self.name, paused=True)

    def _refuse_running(self) -> None:
        """Redefining a running domain would swap its launch blobs, and this launch's failure
        would then destroy a guest it never started."""
        try:
            state = self.host.domain(self.name).state
        except HostError as exc:
            if exc.kind == "Domain not found":
                return
            raise
        if state in ("running", "paused"):
            raise HostError(
                "Requested operation is not valid",
                f"domain '{self.name}' is already {state}: destroy it first or launch under "
                "another name",
                field="name",
                value=self.name,
            )

    def _measurement(self, watch: Watch, launch: int) -> tuple[LaunchSecurityInfo, str]:
        """Wait for the host's announcement of this launch's measurement, then read it; poll
        only when the event stream is unavailable. A domain that stopped fails at the read."""
        if watch.available:
            if watch.wait(launch, MEASUREMENT_WAIT):
                return self._read_measurement(), watch.announcement
            if watch.available:
                return self._read_measurement(), "read after the announcement did not come"
        return self._poll_measurement(), "polled: no event stream"

    def _read_measurement(self) -> LaunchSecurityInfo:
        info = self.host.launch_security_info(self.name)
        if info is None:
            raise HostError(
                "Operation not supported",
                f"domain '{self.name}' has no launch security: nothing was measured",
            )
        return info

    def _poll_measurement(self) -> LaunchSecurityInfo:
        """The fallback: ``query-sev-launch-measure`` answers GenericError until the
        hypervisor measured; any other refusal (the domain is gone) fails at once."""
        deadline = time.time() + MEASUREMENT_WAIT
        while True:
            try:
                return self._read_measurement()
            except QemuCommandError as exc:
                not_yet = (exc.command, exc.error_class) == (MEASURE_COMMAND, "GenericError")
                if not not_yet or time.time() > deadline:
                    raise
            time.sleep(0.1)

    def _resume_and_boot(self) -> None:
        """Resume; the host says whether the guest booted, halted or stopped first."""
        self.host.resume(self.name)
        self.host.wait_booted(self.name, self.boot_timeout)

    def _destroy(self) -> None:
        if not self._defined:
            return
        with contextlib.suppress(HostError):  # not running: nothing to destroy
            self.host.destroy(self.name)
        with contextlib.suppress(HostError):
            self.result.console = self.host.console(self.name)
