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

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query, params
from fastapi.responses import HTMLResponse

from sevlaunch.broker import db, store
from sevlaunch.broker.schema import audit, launches
from sevlaunch.broker.service import Broker
from sevlaunch.errors import FormatError
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.secret import guid_alias
from sevlaunch.web import clock, esc, fragment, mount_shell, short

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
    minimum = f"API {row.min_api_major}.{row.min_api_minor} build {row.min_build}"
    return (
        f'<tr data-workload="{esc(row.name)}"><th>{esc(row.name)}</th><td>{policies}</td>'
        f"<td>{digests}</td><td>{esc(minimum)}</td><td>{secrets}</td>"
        f"<td>{clock(row.created_at)}</td></tr>"
    )


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
    a launch existed (then ``id`` is None)."""

    id: str | None
    workload: str
    at: float
    state: str
    reason: str | None
    policy: int | None
    message: str = ""
    diagnosis: str = ""
    launcher: str = ""

    @property
    def decision(self) -> str:
        return self.state if self.state in _DECISIONS else "pending"


_DECISIONS = (store.RELEASED, store.REFUSED, store.EXPIRED)


def launch_views(engine: sa.Engine, limit: int = RECENT) -> list[LaunchView]:
    """The latest launches, newest first, with the words of their refusals from the audit log."""
    columns = [c for c in launches.c if c.name != "sealed_keys"]
    with db.reading(engine) as conn:
        rows = conn.execute(
            sa.select(*columns).order_by(launches.c.created_at.desc()).limit(limit)
        ).mappings()
        found = [dict(r) for r in rows]
        refusals = conn.execute(
            sa.select(audit)
            .where(audit.c.outcome == "refused", audit.c.action.like("launch.%"))
            .order_by(audit.c.id.desc())
            .limit(AUDIT_SCAN)
        ).mappings()
        refused = [dict(r) for r in refusals]
    words: dict[str, dict[str, Any]] = {}
    early: list[LaunchView] = []
    for entry in refused:
        detail = _detail(entry["detail"])
        if entry["launch"] is not None:
            words.setdefault(entry["launch"], detail)
        elif entry["action"] == "launch.start":
            early.append(_early(entry, detail))
    views = [_view(r, words.get(r["id"], {})) for r in found] + early
    views.sort(key=lambda v: v.at, reverse=True)
    return views[:limit]


def _view(row: dict[str, Any], detail: dict[str, Any]) -> LaunchView:
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
    )


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
        )
    ]
    if not shown:
        return '<p class="empty">No launches match.</p>'
    body = "".join(_launch_rows(v) for v in shown)
    return (
        '<table class="launches"><thead><tr><th>When</th><th>Launch</th><th>Workload</th>'
        "<th>Launcher</th><th>Policy</th><th>Decision</th><th>Reason</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _launch_rows(view: LaunchView) -> str:
    ident = short(view.id) if view.id else '<span class="muted">no session</span>'
    policy = f"{view.policy:#06x}" if view.policy is not None else "—"
    row = (
        f'<tr class="launch decision-{view.decision}" data-launch="{esc(view.id or "")}">'
        f"<td>{clock(view.at)}</td><td>{ident}</td><td>{esc(view.workload)}</td>"
        f'<td class="launcher">{esc(view.launcher)}</td><td>{policy}</td>'
        f'<td><span class="badge decision">{esc(_state(view))}</span></td>'
        f'<td class="reason">{esc(view.reason or "")}</td></tr>'
    )
    if view.decision != "refused" or not (view.message or view.diagnosis):
        return row
    why = f'<p class="message">{esc(view.message)}</p>' if view.message else ""
    if view.diagnosis:
        why += (
            '<div class="diagnosis"><strong>Diagnosis (owner toolkit)</strong>'
            f"<pre>{esc(view.diagnosis)}</pre></div>"
        )
    elif view.reason == "measurement-mismatch":
        why += f'<p class="hint">{esc(UNEXPLAINED)}</p>'
    return row + f'<tr class="why decision-refused"><td></td><td colspan="6">{why}</td></tr>'


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
        "<th>Outcome</th><th>Reason</th><th>Workload</th><th>Launch</th><th>Detail</th></tr>"
        f"</thead><tbody>{body}</tbody></table>"
    )


def _audit_row(row: store.AuditRow) -> str:
    return (
        f'<tr class="audit-entry outcome-{esc(row.outcome)}"><td class="num">{row.id}</td>'
        f"<td>{clock(row.at)}</td><td>{esc(_who(row))}@{esc(row.instance)}</td>"
        f"<td><code>{esc(row.action)}</code></td>"
        f'<td><span class="badge outcome">{esc(row.outcome)}</span></td>'
        f'<td class="reason">{esc(row.reason or "")}</td><td>{esc(row.workload or "")}</td>'
        f"<td>{short(row.launch) if row.launch else ''}</td>"
        f'<td class="detail">{_detail_html(row.detail)}</td></tr>'
    )


def _who(row: store.AuditRow) -> str:
    """The actor, with the launcher's name for a launcher's entry."""
    return f"{row.actor} {row.launcher}" if row.actor == "launcher" and row.launcher else row.actor


def _detail_html(detail: dict[str, Any] | None) -> str:
    if not detail:
        return ""
    parts = []
    for key, value in sorted(detail.items()):
        if key == "checks" and isinstance(value, list):
            parts.append(_checks_html(value))
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        css = ' class="long"' if key in ("message", "diagnosis") else ""
        parts.append(f'<div{css}><span class="key">{esc(key)}</span> {esc(shown)}</div>')
    return "".join(parts)


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
