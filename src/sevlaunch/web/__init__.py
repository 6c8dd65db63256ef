"""What the host manager's and the broker's dashboards share: the page shell, static assets
and small HTML helpers.

The pages are server-rendered HTML fragments. The shell at ``/`` carries no data, so it is
served without a token; the page fetches its fragments (and the host's event stream) with the
bearer token the user typed, kept in ``sessionStorage``. Assets ship in the wheel under
``sevlaunch/web/static``: no build step, no network.
"""

from __future__ import annotations

import html
import string
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

from sevlaunch import __version__
from sevlaunch.protocol import Step, StepReport

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATE_DIR = WEB_DIR / "templates"
STATIC_URL = "/ui/static"

#: The shell runs only its own files: no inline script, nothing from another origin.
SHELL_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FRAGMENT_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def clock(at: float | None) -> str:
    """A ``<time>`` element in ISO 8601 with its offset (UTC to the millisecond, with a break
    after the date for narrow columns); the page rewrites it in the viewer's zone, offset
    shown, so a time read off the page is never ambiguous."""
    if at is None:
        return '<span class="muted">—</span>'
    day = time.strftime("%Y-%m-%d", time.gmtime(at))
    hour = time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}+00:00"
    return f'<time datetime="{day}T{hour}" title="{day}T{hour}">{day}T<wbr>{hour}</time>'


def seconds(duration: float | None) -> str:
    """A duration as people read it: ms below a second, else seconds."""
    if duration is None:
        return '<span class="muted">—</span>'
    if duration < 1.0:
        return f"{duration * 1000:.1f} ms"
    return f"{duration:.2f} s"


def short(text: str, keep: int = 12, *, what: str = "value") -> str:
    """A long identifier shown cut to about ``keep`` (8, 12 or 24) characters by the stylesheet
    only (the CSP admits no inline style): the element holds all of it (selectable, and what a
    copy of the selection gets), and a button copies it whole."""
    if len(text) <= keep:
        return f"<code>{esc(text)}</code>"
    return (
        f'<span class="copyable keep-{keep}"><code class="value" title="{esc(text)}">'
        f"{esc(text)}</code>{copy_button(text, what)}</span>"
    )


def copy_button(text: str, what: str = "value") -> str:
    """A button that puts ``text`` on the clipboard (dashboard.js handles every one)."""
    return (
        f'<button type="button" class="copy" data-copy="{esc(text)}" title="Copy the {esc(what)}"'
        f' aria-label="Copy the {esc(what)}">copy</button>'
    )


def step_row(report: StepReport, first: float, *, css: str = "", attrs: str = "") -> str:
    """One recorded launch step as both pages show it: its start (and offset from the
    launch's first step), duration, outcome and detail."""
    offset = f'<span class="muted offset">+{report.started - first:.3f} s</span>'
    step = report.step
    return (
        f'<tr class="step outcome-{esc(report.outcome)}{css}" data-step="{int(step)}"{attrs}>'
        f'<td class="num">{int(step)}</td><td>{esc(step.title)}</td><td>{esc(step.party)}</td>'
        f"<td>{clock(report.started)} {offset}</td><td>{seconds(report.duration)}</td>"
        f'<td><span class="badge outcome">{esc(report.outcome)}</span></td>'
        f'<td class="detail">{step_detail(report.detail)}</td></tr>'
    )


def missing_step_row(step: Step, outcome: str, css: str, why: str = "") -> str:
    """A launch step with no record, and why (not reached, waiting, not reported)."""
    return (
        f'<tr class="step outcome-{css}" data-step="{int(step)}">'
        f'<td class="num">{int(step)}</td><td>{esc(step.title)}</td><td>{esc(step.party)}</td>'
        f'<td></td><td></td><td><span class="badge outcome">{esc(outcome)}</span></td>'
        f'<td class="detail">{esc(why)}</td></tr>'
    )


def step_detail(text: str) -> str:
    """A step's detail; a measurement in it is shown whole with a copy button."""
    head, sep, value = text.partition("sev-measurement ")
    if not sep:
        return esc(text)
    measurement, _, rest = value.partition(" ")
    return (
        f'{esc(head)}<span class="measurement"><span class="key">sev-measurement</span> '
        f'<code class="value">{esc(measurement)}</code>'
        f"{copy_button(measurement, 'measurement')}</span>{esc(' ' + rest if rest else '')}"
    )


def fragment(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers=FRAGMENT_HEADERS)


def mount_shell(app: FastAPI, template: str, *, title: str, auth: str) -> None:
    """Serve ``template`` at ``/`` and ``/ui/`` and the static assets under ``/ui/static``.

    These routes are plain Starlette routes, outside the API's token dependency: they carry no
    data. ``auth`` is ``"token"`` when the page must ask for a bearer token, else ``"none"``.
    """
    page = string.Template((TEMPLATE_DIR / template).read_text()).substitute(
        title=esc(title), auth=esc(auth), static=STATIC_URL, version=esc(__version__)
    )

    async def shell(_request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=SHELL_HEADERS)

    for path in ("/", "/ui", "/ui/"):
        app.add_route(path, shell, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
