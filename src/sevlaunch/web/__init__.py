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
    """A ``<time>`` element: UTC to the millisecond; the page shows it in local time."""
    if at is None:
        return '<span class="muted">—</span>'
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    shown = stamp[11:23]
    return f'<time datetime="{stamp}" title="{stamp}">{shown}</time>'


def seconds(duration: float | None) -> str:
    """A duration as people read it: ms below a second, else seconds."""
    if duration is None:
        return '<span class="muted">—</span>'
    if duration < 1.0:
        return f"{duration * 1000:.1f} ms"
    return f"{duration:.2f} s"


def short(text: str, keep: int = 12) -> str:
    """A long identifier cut to ``keep`` characters, the whole of it in the tooltip."""
    if len(text) <= keep:
        return f"<code>{esc(text)}</code>"
    return f'<code title="{esc(text)}">{esc(text[:keep])}…</code>'


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
