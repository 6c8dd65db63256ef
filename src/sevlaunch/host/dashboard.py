"""The host manager's web page: node SEV info, domains and each launch's steps, live.

:func:`add_dashboard` mounts the page shell (no data, no token) and HTML fragments that go
through the API's own bearer-token check. The page reloads a fragment when the event stream
(``/v1/events``) says something changed; resume and destroy call the JSON API.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

from sevlaunch.errors import DomainXMLError, FormatError, HostError
from sevlaunch.formats.chain import CertExport
from sevlaunch.formats.sevcert import Algorithm, SevCert, Usage
from sevlaunch.host import platform_port
from sevlaunch.host.launchref import launch_ref
from sevlaunch.host.manager import HostManager
from sevlaunch.host.store import DomainRow, StepRow
from sevlaunch.host.timeline import booted
from sevlaunch.protocol import Step, StepReport, one_per_step
from sevlaunch.web import esc, fragment, missing_step_row, mount_shell, short, step_row

#: The steps the host takes part in, in order; a missing one is inferred from the protocol.
HOST_STEPS = tuple(s for s in Step if s >= Step.BLOBS_PASSED)
PLATFORM_TIMEOUT = 2.0


def add_dashboard(app: FastAPI, manager: HostManager, *, token_required: bool) -> None:
    """Mount the page at ``/`` and its fragments under ``/ui/fragments``."""
    mount_shell(
        app, "host.html", title="sevlaunch host manager", auth="token" if token_required else "none"
    )
    app.include_router(_router(manager))


def _router(manager: HostManager) -> APIRouter:
    router = APIRouter(prefix="/ui/fragments", include_in_schema=False)

    @router.get("/node", response_class=HTMLResponse)
    async def node() -> HTMLResponse:
        return fragment(await render_node(manager))

    @router.get("/domains", response_class=HTMLResponse)
    async def domains() -> HTMLResponse:
        return fragment(render_domains(manager))

    return router


# ---- node ----------------------------------------------------------------------------------


async def render_node(manager: HostManager) -> str:
    try:
        info = await manager.node_sev_info()
    except HostError as exc:
        return _alert("failed", "No SEV on this node", str(exc))
    facts = await asyncio.to_thread(platform_port.platform_facts, manager.platform)
    try:
        pdh = SevCert.from_bytes(info.pdh)
        export = CertExport.from_bytes(info.cert_chain)
    except FormatError as exc:
        return _alert("failed", "The node's certificate chain does not parse", str(exc))
    rows = [
        ("Generation", esc(generation(export, facts.profile))),
        ("Owner", esc(ownership(facts.externally_owned))),
        ("Firmware API", esc(f"{pdh.api_major}.{pdh.api_minor}")),
        ("Chip id", _chip_id(info.cpu0_id)),
        ("C-bit position", esc(info.cbitpos)),
        ("Reduced phys bits", esc(info.reduced_phys_bits)),
        ("Max SEV guests", esc(_or_dash(info.max_guests))),
        ("Max SEV-ES guests", esc(_or_dash(info.max_es_guests))),
    ]
    facts_html = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in rows)
    certs = [("PDH", pdh), ("PEK", export.pek), ("OCA", export.oca), ("CEK", export.cek)]
    chain = "".join(_cert_row(name, cert) for name, cert in certs)
    return (
        f'<dl class="facts">{facts_html}</dl>'
        '<table class="chain"><caption>Platform certificate chain</caption>'
        "<thead><tr><th>Certificate</th><th>Key</th><th>Key id</th><th>API</th>"
        f"<th>Signed by</th></tr></thead><tbody>{chain}</tbody></table>"
    )


def generation(export: CertExport, profile: str | None) -> str:
    """The platform's generation: the emulated profile, else what the CEK's signer tells."""
    if profile is not None:
        return f"emulated ({profile})"
    ask = next((s for s in export.cek.signatures if s.usage is Usage.ASK), None)
    if ask is None:
        return "AMD, generation not in the chain (the CEK is unsigned; fetch the signed CEK by chip id)"
    if ask.algorithm is Algorithm.RSA_SHA256:
        return "AMD Naples (CEK signed by an RSA-2048 ASK)"
    return "AMD Rome or later (CEK signed by an RSA-4096 ASK)"


def ownership(externally_owned: bool | None) -> str:
    if externally_owned is None:
        return "not reported (PLATFORM_STATUS is not in node SEV info)"
    return "externally owned (imported OCA)" if externally_owned else "self-owned (firmware OCA)"


def key_id(cert: SevCert) -> str:
    """A short id for a certificate's key: SHA-256 of its public-key field, 16 hex digits."""
    return hashlib.sha256(cert.public_key.to_bytes()).hexdigest()[:16]


def _cert_row(name: str, cert: SevCert) -> str:
    signers = [
        f"{s.usage.name} ({s.algorithm.name.replace('_', '-')})"
        for s in cert.signatures
        if not s.is_empty
    ]
    signed = ", ".join(signers) or '<span class="muted">unsigned</span>'
    return (
        f"<tr><th>{name}</th><td>{esc(cert.algorithm.name.replace('_', '-'))}</td>"
        f"<td><code>{key_id(cert)}</code></td><td>{cert.api_major}.{cert.api_minor}</td>"
        f"<td>{esc(signed) if signers else signed}</td></tr>"
    )


def _or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def _chip_id(value: bytes | None) -> str:
    if not value:
        return '<span class="muted">—</span>'
    return short(value.hex(), 24)


# ---- domains -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """How a domain's latest launch went: ``kind`` ok, running, failed or idle; the step at
    fault (recorded or inferred) and words for it."""

    kind: str
    step: Step | None = None
    text: str = ""


def verdict(row: DomainRow, steps: list[StepRow]) -> Verdict:
    """Judge the latest launch from its recorded steps and the domain's state."""
    if row.launch == 0 or not steps:
        return Verdict("idle", text="never launched")
    failed = next((s for s in steps if s.outcome == "failed"), None)
    if failed is not None:
        step = Step.of(failed.step)
        return Verdict("failed", step, f"{step} failed: {failed.detail}")
    if booted(steps):
        return Verdict("ok", text="booted")
    following = _next_step(steps)
    if row.state in ("running", "paused"):
        return Verdict("running", following, "in progress")
    if following is None:
        return Verdict("ok", text=f"shut off ({row.reason})")
    text = (
        f"launch #{row.launch} ended ({row.reason}) after step {max(s.step for s in steps)}; "
        f"step {int(following)} ({following.title}, {following.party}) never happened"
    )
    if following is Step.MEASUREMENT_CHECKED:
        text += ": the guest owner released no secret (the broker's audit log says why)"
    return Verdict("failed", following, text)


def _next_step(steps: list[StepRow]) -> Step | None:
    """The host's next step after the last one recorded (the VM tool's step 11 counts)."""
    counted = [s.step for s in steps if s.step >= Step.BLOBS_PASSED]
    done = max(counted, default=0)
    return next((n for n in HOST_STEPS if n > done), None)


def render_domains(manager: HostManager) -> str:
    rows = manager.list_domains(all_domains=True)
    if not rows:
        return '<p class="empty">No domains defined yet.</p>'
    return "".join(render_domain(r, manager.store.steps(r.uuid, r.launch)) for r in rows)


def render_domain(row: DomainRow, steps: list[StepRow]) -> str:
    judged = verdict(row, steps)
    state = row.state.replace("shutoff", "shut off")
    live = row.state in ("running", "paused")
    resume = "" if row.state == "paused" else " disabled"
    destroy = "" if live else " disabled"
    alert = ""
    if judged.kind == "failed":
        alert = _alert("failed", f"Launch #{row.launch} failed", judged.text)
    return (
        f'<article class="domain verdict-{judged.kind} state-{esc(row.state)}" '
        f'id="domain-{esc(quote(row.name))}" '
        f'data-name="{esc(row.name)}" data-state="{esc(row.state)}">'
        f'<header><h3>{esc(row.name)}</h3><span class="badge state-{esc(row.state)}">'
        f'{esc(state)}</span><span class="reason">{esc(row.reason)}</span>'
        f'<span class="muted">launch #{row.launch} · {short(row.uuid, 8, what="domain UUID")}'
        f"</span>{_owner_launch(row)}"
        '<span class="actions">'
        f'<button type="button" data-action="resume" data-domain="{esc(row.name)}"{resume}>'
        "Resume</button>"
        f'<button type="button" class="danger" data-action="destroy" '
        f'data-domain="{esc(row.name)}"{destroy}>Destroy</button></span></header>'
        f"{alert}{render_timeline(steps, judged)}</article>"
    )


def _owner_launch(row: DomainRow) -> str:
    """The guest owner's launch id, as the VM tool wrote it into the domain's metadata: the
    broker's records of this launch (its steps and its audit log) are keyed by it; a link
    opens the broker's page on it when the VM tool gave the broker's address."""
    try:
        ref = launch_ref(row.xml)
    except DomainXMLError:
        ref = None
    if ref is None:
        return ""
    words = "broker launch"
    if ref.broker is not None:
        page = f"{ref.broker.rstrip('/')}/?q={quote(ref.id)}"
        words = f'<a href="{esc(page)}" target="_blank" rel="noopener noreferrer">{words}</a>'
    return (
        f'<span class="owner-launch" data-launch="{esc(ref.id)}">{words} '
        f"{short(ref.id, 8, what='broker launch id')}</span>"
    )


def render_timeline(steps: list[StepRow], judged: Verdict) -> str:
    """All 13 steps of the launch, one row each: the host's records of its steps and the VM
    tool's of the others (merged as the terminal merges them), or why a step has none."""
    if not steps:
        return '<p class="empty">No launch steps recorded.</p>'
    merged = one_per_step(StepReport.from_wire(s.as_dict()) for s in steps)
    first = min(r.started for r in merged.values())
    body = "".join(
        _step_row(merged[step], first, judged)
        if step in merged
        else _missing_row(step, judged, merged)
        for step in Step
    )
    return (
        '<table class="timeline"><thead><tr><th>#</th><th>Step</th><th>Party</th>'
        "<th>Start</th><th>Duration</th><th>Outcome</th><th>Detail</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _missing_row(step: Step, judged: Verdict, merged: dict[Step, StepReport]) -> str:
    """A step with no record: not reached (after a failure), waiting, or not reported."""
    if judged.step == step and judged.kind == "failed":
        return missing_step_row(step, "not reached", "failed inferred", "inferred by the dashboard")
    if judged.step == step and judged.kind == "running":
        return missing_step_row(step, "waiting", "pending")
    if any(s > step for s in merged):
        why = (
            "done by the VM tool and the guest owner; this VM tool did not report it to the host"
            if step not in HOST_STEPS
            else "the host has no record of it"
        )
        return missing_step_row(step, "not reported", "unreported", why)
    return missing_step_row(step, "not reached", "unreached")


def _step_row(step: StepReport, first: float, judged: Verdict) -> str:
    failing = step.outcome == "failed" and judged.step == step.step
    who = "host" if step.step in HOST_STEPS and step.step != Step.MEASUREMENT_CHECKED else "VM tool"
    return step_row(step, first, css=" failing" if failing else "", attrs=f' data-by="{esc(who)}"')


def _alert(kind: str, title: str, text: str) -> str:
    return (
        f'<div class="alert alert-{kind}" role="alert"><strong>{esc(title)}</strong>'
        f"<p>{esc(text)}</p></div>"
    )
