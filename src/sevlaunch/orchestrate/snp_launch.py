"""An SEV-SNP launch between a host manager and a broker (issue 19): SNP's 12 steps.

No owner is asked before the guest runs: the VM tool puts the broker's address and the
workload in the domain (``<sysinfo type='fwcfg'>``, :data:`~sevlaunch.protocol.snp.FW_CFG_NAME`,
as QEMU's ``-fw_cfg`` hands it to the guest), defines and starts it, resumes it (the pages are
measured and the launch finished), and the guest attests after boot: it asks the broker for a
nonce, has the AMD-SP sign a report binding it and a fresh key, and gets the workload's secrets
sealed to that key, or nothing. The VM tool learns the guest's steps from its console; any
failure destroys the domain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sevlaunch.errors import HostError, SevlaunchError
from sevlaunch.host.domxml import Domain, FwCfgEntry
from sevlaunch.orchestrate.host_port import HostPort
from sevlaunch.protocol.snp import FW_CFG_NAME, GuestAttestationConfig, SnpStep

#: The guest's console lines for steps 8-11 (vmm/snp_guest.py prints what Linux and the agent
#: would): each step is done when its line is there.
GUEST_LINES = {
    SnpStep.NONCE_ISSUED: "sevlaunch-attest: nonce from",
    SnpStep.REPORT_REQUESTED: "sevlaunch-attest: report from the AMD-SP",
    SnpStep.REPORT_VERIFIED: "sevlaunch-attest: secrets released",
    SnpStep.SECRET_RELEASED: "sevlaunch-attest: secrets released",
}
_REFUSED = re.compile(r"attestation refused: ([a-z0-9-]+): (.*)")
_ATTESTATION = re.compile(r"secrets released \((\d+) entries\), attestation (\S+)")
#: Steps the host records itself (started, SNP_LAUNCH_START, the measuring resume).
HOST_STEPS = (SnpStep.SNP_GUEST_BUILT, SnpStep.STARTED_PAUSED, SnpStep.LAUNCH_STARTED)


@dataclass
class SnpStepRecord:
    step: SnpStep
    status: str = "pending"  # pending, ok, failed, skipped
    detail: str = ""


@dataclass
class SnpLaunchResult:
    domain: str
    steps: list[SnpStepRecord] = field(default_factory=list)
    ok: bool = False
    error: str | None = None
    reason: str | None = None  #: the broker's refusal code (owner/snp/decision.py)
    failed_step: SnpStep | None = None
    console: str = ""
    attestation: str = ""  #: the broker's audit id of the release the guest printed

    @property
    def message(self) -> str:
        if self.ok:
            return f"{self.domain}: launched, attested after boot and booted"
        step = self.failed_step
        if step is None:
            return f"{self.domain}: not launched"
        after = "the domain was destroyed" if step >= SnpStep.STARTED_PAUSED else "nothing ran"
        return f"{self.domain}: {step} failed: {self.error}; {after}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "snp": True,
            "ok": self.ok,
            "error": self.error,
            "reason": self.reason,
            "failed_step": None if self.failed_step is None else int(self.failed_step),
            "message": self.message,
            "attestation": self.attestation or None,
            "steps": [
                {"step": int(s.step), "name": s.step.title, "status": s.status, "detail": s.detail}
                for s in self.steps
            ],
            "console": self.console,
        }


class _StepFailedError(SevlaunchError):
    def __init__(self, step: SnpStep, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.step, self.reason = step, reason


def snp_domain_xml(xml: str, name: str, config: GuestAttestationConfig) -> str:
    """The domain as defined: its name, and the attestation config as its fw_cfg entry
    (replacing one the XML had)."""
    domain = Domain.from_xml(xml)
    lsec = domain.launch_security
    if lsec is None or not lsec.is_snp:
        raise HostError(
            "unsupported configuration",
            "an SNP launch needs <launchSecurity type='sev-snp'>",
            field="launchSecurity/@type",
            value=None if lsec is None else lsec.type,
        )
    entries = tuple(e for e in domain.fw_cfg if e.name != FW_CFG_NAME)
    entry = FwCfgEntry(FW_CFG_NAME, config.to_json())
    return dataclasses.replace(domain, name=name, fw_cfg=(*entries, entry)).to_xml()


class SnpLauncher:
    """One SNP guest: define, start paused, resume, wait for its attested boot."""

    def __init__(
        self,
        host: HostPort,
        config: GuestAttestationConfig,
        xml: str,
        *,
        name: str | None = None,
        boot_timeout: float = 60.0,
    ) -> None:
        self.host, self.config, self.boot_timeout = host, config, boot_timeout
        self.name = name or Domain.from_xml(xml).name
        self.xml = snp_domain_xml(xml, self.name, config)
        self.result = SnpLaunchResult(self.name, [SnpStepRecord(s) for s in SnpStep])
        self._defined = False

    def _mark(self, step: SnpStep, status: str, detail: str = "") -> None:
        record = self.result.steps[step - 1]
        record.status, record.detail = status, detail

    def run(self) -> SnpLaunchResult:
        try:
            self._steps()
            self.result.ok = True
        except _StepFailedError as exc:
            self.result.failed_step, self.result.error = exc.step, str(exc)
            self.result.reason = exc.reason
            self._mark(exc.step, "failed", str(exc))
            self._destroy()
        except BaseException:
            self._destroy()
            raise
        return self.result

    def _steps(self) -> None:
        self._mark(SnpStep.LAUNCH_REQUESTED, "ok", f"domain {self.name}")
        where = f"broker {self.config.broker}, workload '{self.config.workload}'"
        self._mark(SnpStep.LAUNCH_PARAMETERS, "ok", where)
        self._host(SnpStep.DOMAIN_DEFINED, lambda: self.host.define(self.xml))
        self._defined = True
        started = self._host(
            SnpStep.STARTED_PAUSED, lambda: self.host.start(self.name, paused=True)
        )
        self._host_records(started.launch)
        self._host(SnpStep.RESUMED, lambda: self.host.resume(self.name))
        began = time.monotonic()
        try:
            self.host.wait_booted(self.name, self.boot_timeout)
        except (HostError, TimeoutError) as exc:
            self._guest_failed(exc, time.monotonic() - began)
        self.result.console = self.host.console(self.name)
        self._guest_records(self.result.console)
        self._mark(SnpStep.GUEST_BOOTED, "ok", "disk unlocked with the released secret")

    def _host(self, step: SnpStep, action: Any) -> Any:
        try:
            answer = action()
        except SevlaunchError as exc:
            raise _StepFailedError(step, str(exc)) from exc
        self._mark(step, "ok")
        return answer

    def _host_records(self, launch: int) -> None:
        """Steps 4 and 6 as the host recorded them: the VM tool does not see them happen."""
        recorded = {int(r.step): r for r in self.host.timeline(self.name, launch)}
        for step in HOST_STEPS:
            report = recorded.get(int(step))
            if report is None:
                self._mark(step, "skipped", "the host recorded no such step")
            else:
                self._mark(step, str(report.outcome), report.detail)
            if report is not None and str(report.outcome) != "ok":
                raise _StepFailedError(step, report.detail or "the host recorded a failure")

    def _guest_records(self, console: str) -> None:
        for step, line in GUEST_LINES.items():
            if line in console:
                self._mark(step, "ok")
        found = _ATTESTATION.search(console)
        if found:
            self.result.attestation = found.group(2)
            self._mark(SnpStep.SECRET_RELEASED, "ok", f"{found.group(1)} entries, {found.group(2)}")

    def _guest_failed(self, exc: Exception, waited: float) -> None:
        """Which of steps 8-12 failed, from what the guest printed before it halted."""
        with contextlib.suppress(HostError):
            self.result.console = self.host.console(self.name)
        console = self.result.console
        self._guest_records(console)
        refused = _REFUSED.search(console)
        if refused:
            step = (
                SnpStep.NONCE_ISSUED
                if GUEST_LINES[SnpStep.NONCE_ISSUED] not in console
                else SnpStep.REPORT_VERIFIED
            )
            message = f"the broker refused: {refused.group(1)}: {refused.group(2)}"
            raise _StepFailedError(step, message, refused.group(1)) from exc
        if isinstance(exc, TimeoutError):
            raise _StepFailedError(
                SnpStep.GUEST_BOOTED, f"no boot report in {waited:.0f} s"
            ) from exc
        raise _StepFailedError(SnpStep.GUEST_BOOTED, str(exc)) from exc

    def _destroy(self) -> None:
        if not self._defined:
            return
        with contextlib.suppress(HostError):
            self.host.destroy(self.name)
        with contextlib.suppress(HostError):
            self.result.console = self.host.console(self.name)
