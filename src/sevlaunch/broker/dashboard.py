"""The broker's web page: workloads, recent launches with their decision and launcher (an
expired launch shows as such), the audit log.

:func:`add_dashboard` mounts the page shell (no data, no token) and HTML fragments behind the
owner token. Secrets appear by GUID (or alias) only: this module never reads a sealed value.
Refusals show their reason, message and, for a measurement mismatch, the owner toolkit's
diagnosis as the service stored it in the audit log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query, params
from fastapi.responses import HTMLResponse

from sevlaunch._http import PAGE
from sevlaunch.broker import db, store
from sevlaunch.broker.launch_steps import steps_of
from sevlaunch.broker.schema import audit, launches
from sevlaunch.broker.service import Broker
from sevlaunch.errors import FormatError
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.secret import guid_alias
from sevlaunch.protocol import Step, StepReport
from sevlaunch.web import (
    clock,
    copy_button,
    esc,
    fragment,
    missing_step_row,
    mount_shell,
    short,
    step_row,
)

RECENT = 100
AUDIT_SCAN = 2000
UNEXPLAINED = (
    "No usual mistake with the keys explains it, and the broker keeps digests, not the boot "
    "artifacts: run 'sevlaunch owner validate' with the measurement, the TIK and the firmware, "
    "kernel, initrd and command line to find which one differs."
)
Text = Annotated[str, Query(max_length=200)]


def add_dashboard(app: FastAPI, broker: Broker, owner: Sequence[params.Depends]) -> None:
    """Mount the page at ``/``; its fragments need what ``owner`` checks (the owner token)."""
    mount_shell(app, "broker.html", title="sevlaunch attestation broker", auth="token")
    app.include_router(_router(broker), dependencies=list(owner))


@dataclass(frozen=True)
class Filters:
    """The page's filters: a workload name, a decision and free text (case-insensitive)."""

    workload: str = ""
    decision: str = ""
    text: str = ""

    def admits(self, workload: str | None, decision: str, *texts: object) -> bool:
        if self.workload and workload != self.workload:
            return False
        if self.decision and decision != self.decision:
            return False
        needle = self.text.strip().lower()
        return not needle or any(needle in str(t).lower() for t in texts if t is not None)


def _router(broker: Broker) -> APIRouter:
    router = APIRouter(prefix="/ui/fragments", include_in_schema=False)

    @router.get("/workloads", response_class=HTMLResponse)
    def workloads() -> HTMLResponse:
        return fragment(render_workloads(broker.workloads()))

    @router.get("/launches", response_class=HTMLResponse)
    def recent_launches(workload: Text = "", decision: Text = "", q: Text = "") -> HTMLResponse:
        return fragment(
            render_launches(launch_views(broker.engine), Filters(workload, decision, q))
        )

    @router.get("/audit", response_class=HTMLResponse)
    def audit_log(workload: Text = "", decision: Text = "", q: Text = "") -> HTMLResponse:
        return fragment(render_audit(audit_rows(broker.engine), Filters(workload, decision, q)))

    return router


# ---- workloads -----------------------------------------------------------------------------


def render_workloads(rows: Sequence[store.WorkloadRow]) -> str:
    names = "".join(f'<option value="{esc(w.name)}"></option>' for w in rows)
    datalist = f'<datalist id="workload-names">{names}</datalist>'
    if not rows:
        return datalist + '<p class="empty">No workloads registered.</p>'
    body = "".join(_workload_row(w) for w in rows)
    return (
        f'{datalist}<table class="workloads"><thead><tr><th>Workload</th><th>Policies</th>'
        "<th>Expected launch digests</th><th>Minimum firmware</th><th>Secrets</th>"
        f"<th>Registered</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _workload_row(row: store.WorkloadRow) -> str:
    policies = "<br>".join(esc(_policy(p)) for p in row.policies)
    digests = "".join(f'<code class="digest">{esc(d)}</code>' for d in row.digests)
    secrets = (
        "".join(
            f'<span class="tag" title="{esc(g)}">{esc(_guid(g))}</span>' for g in row.secret_guids
        )
        or '<span class="muted">none</span>'
    )
    minimum = minimum_firmware(row.min_api_major, row.min_api_minor, row.min_build)
    return (
        f'<tr data-workload="{esc(row.name)}"><th>{esc(row.name)}</th><td>{policies}</td>'
        f"<td>{digests}</td><td>{esc(minimum)}</td><td>{secrets}</td>"
        f"<td>{clock(row.created_at)}</td></tr>"
    )


def minimum_firmware(major: int, minor: int, build: int) -> str:
    """A workload's minimum firmware in words: API 0.0 build 0 admits every firmware."""
    if (major, minor, build) == (0, 0, 0):
        return "any"
    return f"API {major}.{minor} build {build} or later"


def _policy(value: int) -> str:
    try:
        return Policy.from_int(value, allow_reserved=True).describe()
    except FormatError:
        return f"{value:#06x}"


def _guid(text: str) -> str:
    try:
        return guid_alias(uuid.UUID(text))
    except ValueError:
        return text


# ---- launches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchView:
    """One launch decision: a row of the launches table, or a session request refused before
    a launch existed (then ``id`` is None). ``domain`` and ``host_launch`` name the guest on
    its host manager as the VM tool reported them; ``measurement`` is what step 11 checked."""

    id: str | None
    workload: str
    at: float
    state: str
    reason: str | None
    policy: int | None
    message: str = ""
    diagnosis: str = ""
    launcher: str = ""
    domain: str = ""
    host_page: str = ""  #: the host manager's page, as the VM tool gave it (http or https)
    host_launch: int | None = None
    measurement: str = ""
    checks: tuple[dict[str, Any], ...] = ()
    steps: tuple[StepReport, ...] = ()  #: as the VM tool recorded them (see launch_steps)

    @property
    def decision(self) -> str:
        return self.state if self.state in _DECISIONS else "pending"


_DECISIONS = (store.RELEASED, store.REFUSED, store.EXPIRED)


def launch_views(engine: sa.Engine, limit: int = RECENT) -> list[LaunchView]:
    """The latest launches, newest first, with what the audit log says of each: the domain
    (at its start), the measurement and the words of a refusal (at its finish)."""
    columns = [c for c in launches.c if c.name != "sealed_keys"]
    with db.reading(engine) as conn:
        rows = conn.execute(
            sa.select(*columns).order_by(launches.c.created_at.desc()).limit(limit)
        ).mappings()
        found = [dict(r) for r in rows]
        entries = conn.execute(
            sa.select(audit)
            .where(audit.c.action.like("launch.%"))
            .order_by(audit.c.id.desc())
            .limit(AUDIT_SCAN)
        ).mappings()
        scanned = [dict(r) for r in entries]
    words: dict[str, dict[str, Any]] = {}
    early: list[LaunchView] = []
    for entry in reversed(scanned):  # oldest first: a later entry's words win
        detail = _detail(entry["detail"])
        if entry["launch"] is not None:
            words.setdefault(entry["launch"], {}).update(detail)
        elif entry["action"] == "launch.start" and entry["outcome"] == "refused":
            early.append(_early(entry, detail))
    views = [_view(r, words.get(r["id"], {})) for r in found] + early
    views.sort(key=lambda v: v.at, reverse=True)
    return views[:limit]


def _view(row: dict[str, Any], detail: dict[str, Any]) -> LaunchView:
    host_launch = detail.get("host-launch")
    checks = detail.get("checks")
    return LaunchView(
        id=row["id"],
        workload=row["workload"],
        at=row["finished_at"] or row["created_at"],
        state=row["state"],
        reason=row["reason"],
        policy=row["policy"],
        message=str(detail.get("message", "")),
        diagnosis=str(detail.get("diagnosis", "")),
        launcher=row["launcher"],
        domain=str(detail.get("domain", "")),
        host_page=_page(detail.get("host")),
        host_launch=host_launch if isinstance(host_launch, int) else None,
        measurement=str(detail.get("measurement", "")),
        checks=tuple(checks) if isinstance(checks, list) and _is_checks(checks) else (),
        steps=tuple(steps_of(detail)),
    )


def _page(value: object) -> str:
    """A page address from the audit log, if it is one (the API admitted only http(s))."""
    return value if isinstance(value, str) and PAGE.match(value) else ""


def _early(entry: dict[str, Any], detail: dict[str, Any]) -> LaunchView:
    return LaunchView(
        id=None,
        workload=entry["workload"] or "",
        at=entry["at"],
        state="refused",
        reason=entry["reason"],
        policy=None,
        message=str(detail.get("message", "")),
        launcher=entry["launcher"] or "",
        domain=str(detail.get("domain", "")),
    )


def _detail(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def render_launches(views: Sequence[LaunchView], filters: Filters) -> str:
    shown = [
        v
        for v in views
        if filters.admits(
            v.workload,
            v.decision,
            v.id,
            v.workload,
            v.state,
            v.reason,
            v.message,
            v.diagnosis,
            v.launcher,
            v.domain,
            v.measurement,
        )
    ]
    if not shown:
        return '<p class="empty">No launches match.</p>'
    body = "".join(_launch_rows(v) for v in shown)
    return (
        '<table class="launches"><thead><tr><th>When</th><th>Launch</th><th>Domain</th>'
        "<th>Workload</th><th>Launcher</th><th>Policy</th><th>Decision</th><th>Reason</th>"
        f"</tr></thead><tbody>{body}</tbody></table>"
    )


def _launch_rows(view: LaunchView) -> str:
    ident = (
        short(view.id, 8, what="launch id") if view.id else '<span class="muted">no session</span>'
    )
    policy = f"{view.policy:#06x}" if view.policy is not None else "—"
    domain = esc(view.domain) if view.domain else '<span class="muted">not reported</span>'
    if view.domain and view.host_page:
        page = f"{view.host_page.rstrip('/')}/#domain-{quote(view.domain)}"
        domain = f'<a href="{esc(page)}" target="_blank" rel="noopener noreferrer">{domain}</a>'
    if view.host_launch is not None:
        domain += f' <span class="muted">launch #{view.host_launch}</span>'
    row = (
        f'<tr class="launch decision-{view.decision}" data-launch="{esc(view.id or "")}" '
        f'data-domain="{esc(view.domain)}">'
        f'<td>{clock(view.at)}</td><td>{ident}</td><td class="domain-name">{domain}</td>'
        f"<td>{esc(view.workload)}</td>"
        f'<td class="launcher">{esc(view.launcher)}</td><td>{policy}</td>'
        f'<td><span class="badge decision">{esc(_state(view))}</span></td>'
        f'<td class="reason">{esc(view.reason or "")}</td></tr>'
    )
    why = ""
    if view.measurement:
        why += (
            '<div class="measurement"><span class="key">sev-measurement</span> '
            f'<code class="value">{esc(view.measurement)}</code>'
            f"{copy_button(view.measurement, 'measurement')}</div>"
        )
    if view.decision == "refused":
        why += _refusal_html(view)
    if view.checks:
        why += _checks_html(list(view.checks))
    if view.steps:
        why += steps_html(view.steps)
    if not why:
        return row
    return row + (
        f'<tr class="why decision-{view.decision}"><td></td><td colspan="7">{why}</td></tr>'
    )


_UNREACHED = ("not reached", "unreached")


def steps_html(steps: Sequence[StepReport]) -> str:
    """The launch's 13 steps as its VM tool recorded them (the figures it printed), the ones
    that did not happen said so."""
    known = {s.step: s for s in steps}
    first = min(s.started for s in steps)
    rows = "".join(
        step_row(known[step], first) if step in known else missing_step_row(step, *_UNREACHED)
        for step in Step
    )
    done = sum(1 for s in steps if s.outcome == "ok")
    return (
        f'<details class="steps"><summary>Steps: {done} of 13 done, as the VM tool recorded '
        "them</summary>"
        '<table class="timeline"><thead><tr><th>#</th><th>Step</th><th>Party</th>'
        "<th>Start</th><th>Duration</th><th>Outcome</th><th>Detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )


def _refusal_html(view: LaunchView) -> str:
    why = f'<p class="message">{esc(view.message)}</p>' if view.message else ""
    if view.diagnosis:
        why += (
            '<div class="diagnosis"><strong>Diagnosis (owner toolkit)</strong>'
            f"<pre>{esc(view.diagnosis)}</pre></div>"
        )
    elif view.reason == "measurement-mismatch":
        why += f'<p class="hint">{esc(UNEXPLAINED)}</p>'
    return why


def _state(view: LaunchView) -> str:
    return {"awaiting-measurement": "awaiting measurement"}.get(view.state, view.state)


# ---- audit ---------------------------------------------------------------------------------


def audit_rows(engine: sa.Engine, limit: int = AUDIT_SCAN) -> list[store.AuditRow]:
    """The newest audit entries first (the API pages oldest first, for followers)."""
    with db.reading(engine) as conn:
        rows = conn.execute(sa.select(audit).order_by(audit.c.id.desc()).limit(limit)).mappings()
        return [store.AuditRow(**{**r, "detail": _detail(r["detail"]) or None}) for r in rows]


def _audit_decision(row: store.AuditRow) -> str:
    return row.outcome if row.outcome in _DECISIONS else "pending"


def render_audit(rows: Sequence[store.AuditRow], filters: Filters, limit: int = 200) -> str:
    shown = [
        r
        for r in rows
        if filters.admits(
            r.workload,
            _audit_decision(r),
            r.action,
            r.outcome,
            r.reason,
            r.workload,
            r.launch,
            r.actor,
            r.instance,
            r.launcher,
            json.dumps(r.detail) if r.detail else None,
        )
    ][:limit]
    if not shown:
        return '<p class="empty">No audit entries match.</p>'
    body = "".join(_audit_row(r) for r in shown)
    return (
        '<table class="audit"><thead><tr><th>#</th><th>When</th><th>Who</th><th>Action</th>'
        "<th>Outcome</th><th>Reason</th><th>Workload</th><th>Launch</th></tr>"
        f"</thead><tbody>{body}</tbody></table>"
    )


def _audit_row(row: store.AuditRow) -> str:
    """One entry: its facts in a row, its detail (when any) in a full-width row under it, so
    that a narrow window squeezes neither."""
    main = (
        f'<tr class="audit-entry outcome-{esc(row.outcome)}"><td class="num">{row.id}</td>'
        f"<td>{clock(row.at)}</td><td>{esc(_who(row))}@{esc(row.instance)}</td>"
        f"<td><code>{esc(row.action)}</code></td>"
        f'<td><span class="badge outcome">{esc(row.outcome)}</span></td>'
        f'<td class="reason">{esc(row.reason or "")}</td><td>{esc(row.workload or "")}</td>'
        f"<td>{short(row.launch, 8, what='launch id') if row.launch else ''}</td></tr>"
    )
    if not row.detail:
        return main
    return (
        main + f'<tr class="audit-detail outcome-{esc(row.outcome)}"><td></td>'
        f'<td colspan="7" class="detail">{detail_html(row.detail)}</td></tr>'
    )


def _who(row: store.AuditRow) -> str:
    """The actor, with the launcher's name for a launcher's entry."""
    return f"{row.actor} {row.launcher}" if row.actor == "launcher" and row.launcher else row.actor


def detail_html(detail: dict[str, Any]) -> str:
    """An audit entry's detail, whatever its keys: text as text, lists as lists, a ``checks``
    list of {name, verdict, detail} (the SNP verifier's verdicts) one line per check."""
    parts = []
    for key, value in sorted(detail.items()):
        if key == "checks" and isinstance(value, list):
            parts.append(_checks_html(value))
            continue
        if key == "steps" and (steps := steps_of(detail)):
            parts.append(steps_html(steps))
            continue
        css = "long" if key in ("message", "diagnosis") else "field"
        parts.append(
            f'<div class="{css}"><span class="key">{esc(key)}</span> {_value(value)}</div>'
        )
    return "".join(parts)


def _value(value: object) -> str:
    if isinstance(value, list):
        if not value:
            return '<span class="muted">none</span>'
        return '<ul class="values">' + "".join(f"<li>{_value(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, dict):
        return (
            '<dl class="values">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{_value(v)}</dd>" for k, v in value.items())
            + "</dl>"
        )
    if isinstance(value, str) and len(value) > 24 and " " not in value:
        return short(value, 24)
    if isinstance(value, str) and "\n" in value:
        return f"<pre>{esc(value)}</pre>"
    return esc("none" if value is None else value)


def _is_checks(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(c, dict) and "name" in c and "verdict" in c for c in value)
    )


def _checks_html(checks: list[Any]) -> str:
    """An SNP attestation's verdicts, one line per check (see broker.snp_attest)."""
    items = "".join(
        f'<li class="verdict-{esc(str(c.get("verdict", "")))}"><span class="key">'
        f"{esc(str(c.get('name', '')))}</span> {esc(str(c.get('verdict', '')))}: "
        f"{esc(str(c.get('detail', '')))}</li>"
        for c in checks
        if isinstance(c, dict)
    )
    return f'<ul class="checks">{items}</ul>'
