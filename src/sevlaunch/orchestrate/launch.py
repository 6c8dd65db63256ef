"""Steps 1-13 of an attested launch, between a host manager and a guest owner.

:class:`Launcher` runs one guest: it asks the host for node SEV info, gets a session from the
owner, defines and starts the domain paused, reads the measurement, has it checked, injects
the secret, resumes and waits for the guest to report its boot. Any failure destroys the
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

from sevlaunch.errors import HostError, LaunchFailedError, SevlaunchError
from sevlaunch.formats.chain import CertExport
from sevlaunch.formats.sevcert import Usage
from sevlaunch.host.client import HostClient
from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.orchestrate.owner_port import GuestOwner
from sevlaunch.protocol import (
    DomainInfo,
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

    @property
    def name(self) -> str:
        return self.step.title

    @property
    def party(self) -> str:
        return self.step.party


Observer = Callable[[str, StepRecord], None]
T = TypeVar("T")

#: Seconds to wait for the host's "measurement-available" event before polling instead.
EVENT_WAIT = 2.0


class MeasurementWatch:
    """Listens on the host's event stream for this domain's "measurement-available" (the 2017
    design's wish); :meth:`wait` says whether it came, and the caller polls otherwise."""

    def __init__(self, host: HostClient, domain: str) -> None:
        self.domain = domain
        self.heard = threading.Event()
        self.subscribed = threading.Event()
        self._client = HostClient(host.uri, token=host.token)
        self._thread = threading.Thread(target=self._listen, name=f"events-{domain}", daemon=True)

    def __enter__(self) -> MeasurementWatch:
        self._thread.start()
        self.subscribed.wait(EVENT_WAIT)  # the stream must be open before the start
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def _listen(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when the watch closes
            for event in self._client.events():
                if event.kind == "subscribed":
                    self.subscribed.set()
                elif event.kind == "measurement-available" and event.domain == self.domain:
                    self.heard.set()
                    return
        self.subscribed.set()

    def wait(self, timeout: float) -> bool:
        return self.heard.wait(timeout)


#: Seconds to wait for a hypervisor that measures after it serves QMP.
MEASUREMENT_WAIT = 30.0

#: Guests started (steps 8-9: hypervisor up, firmware encrypted and measured) at once per host
#: when N launches run together; see :meth:`Launcher._start`.
PARALLEL_STARTS = 8


@dataclass
class LaunchResult:
    domain: str
    steps: list[StepRecord] = field(default_factory=list)
    ok: bool = False
    error: str | None = None
    failed_step: Step | None = None
    console: str = ""
    measurement: str = ""  #: sev-measurement as the host reported it (step 10)

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
        return f"{self.domain}: {step} failed: {self.error}; {after}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ok": self.ok,
            "error": self.error,
            "failed_step": None if self.failed_step is None else int(self.failed_step),
            "message": self.message,
            "steps": [
                {
                    "step": int(s.step),
                    "name": s.name,
                    "party": s.party,
                    "status": s.status,
                    "duration": s.duration,
                    "detail": s.detail,
                    "by_host": s.by_host,
                }
                for s in self.steps
            ],
        }


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
    xml: str, offer_policy: int, dh_cert: str, session: str, *, name: str | None = None
) -> str:
    """The domain XML with the owner's launch blobs in ``<launchSecurity type='sev'>``."""
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
    return dataclasses.replace(domain, **changes).to_xml()


class Launcher:
    """One attested launch of ``xml`` on ``host`` for ``owner``."""

    def __init__(
        self,
        host: HostClient,
        owner: GuestOwner,
        xml: str,
        *,
        name: str | None = None,
        observer: Observer | None = None,
        boot_timeout: float = 60.0,
        kds_url: str | None = None,
        start_gate: threading.Semaphore | None = None,
    ) -> None:
        self.host = host
        self.owner = owner
        self.xml = xml
        self.name = name or Domain.from_xml(xml).name
        self.observer = observer or (lambda _d, _s: None)
        self.boot_timeout = boot_timeout
        self.start_gate = start_gate
        self.kds_url = kds_url
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
                str(exc),
            )
            self.observer(self.name, record)
            raise LaunchFailedError(int(step), step.title, str(exc)) from exc
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
        return self.result

    def _steps(self) -> None:
        self._mark(Step.LAUNCH_REQUESTED, "ok", f"domain {self.name}")
        node = self._run_step(
            Step.NODE_SEV_INFO, self.host.node_sev_info, lambda n: f"cbitpos {n.cbitpos}"
        )
        cek = self._run_step(
            Step.PDH_EXPORTED,
            lambda: self._signed_cek(node),
            lambda c: "CEK from the key server" if c else "",
        )
        offer = self._run_step(
            Step.PLATFORM_VERIFIED,
            lambda: self.owner.begin(node, cek),
            lambda o: f"launch {o.launch_id}",
        )
        self._mark(Step.SESSION_MADE, "ok", f"policy {offer.policy:#06x}")
        self._run_step(Step.BLOBS_PASSED, lambda: self._define(offer))
        with MeasurementWatch(self.host, self.name) as watch:
            self._run_step(Step.STARTED_PAUSED, self._start)
            self._mark(Step.SEV_GUEST_BUILT, "ok", "dh-cert-file, session-file, policy")
            self._mark(Step.LAUNCH_MEASURED, "ok", "LAUNCH_START … LAUNCH_MEASURE")
            heard = watch.wait(EVENT_WAIT)
        info = self._run_step(
            Step.MEASUREMENT_READ,
            self._measurement,
            lambda i: f"{i.measurement_b64} ({'event' if heard else 'polled'})",
        )
        self.result.measurement = info.measurement_b64
        release = self._run_step(
            Step.MEASUREMENT_CHECKED,
            lambda: self.owner.attest(offer.launch_id, info),
            lambda _r: "secret released",
        )
        self._inject(release)
        self._run_step(Step.RESUMED_BOOTED, self._resume_and_boot)
        self.result.console = self.host.console(self.name)

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
        if any(sig.usage is Usage.ASK for sig in export.cek.signatures) or not node.cpu0_id:
            return None
        return signed_cek(self.kds_url, node.cpu0_id)

    def _define(self, offer: SessionOffer) -> None:
        self._refuse_running()
        renamed = self.name if self.name != Domain.from_xml(self.xml).name else None
        self.host.define(
            prepare_domain(
                self.xml, offer.policy, offer.dh_cert_b64, offer.session_b64, name=renamed
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

    def _measurement(self) -> LaunchSecurityInfo:
        """The measurement exists once start returns (QEMU measures before serving QMP);
        poll briefly in case a hypervisor measures later. Any other refusal (the hypervisor
        died, the domain was destroyed) fails at once."""
        deadline = time.time() + MEASUREMENT_WAIT
        while True:
            try:
                info = self.host.launch_security_info(self.name)
            except HostError as exc:
                if "not available" not in exc.detail or time.time() > deadline:
                    raise
                time.sleep(0.1)
                continue
            if info is None:
                raise HostError(
                    "Operation not supported",
                    f"domain '{self.name}' has no launch security: nothing was measured",
                )
            return info

    def _resume_and_boot(self) -> None:
        self.host.resume(self.name)
        self.host.wait_booted(self.name, self.boot_timeout)
        console = self.host.console(self.name)
        if "halting" in console:
            raise HostError(
                "operation failed", "the guest halted: " + console.strip().splitlines()[-1]
            )

    def _destroy(self) -> None:
        if not self._defined:
            return
        with contextlib.suppress(HostError):  # not running: nothing to destroy
            self.host.destroy(self.name)
        with contextlib.suppress(HostError):
            self.result.console = self.host.console(self.name)
