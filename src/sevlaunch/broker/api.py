"""The HTTP/JSON API (FastAPI; the OpenAPI document is at ``/openapi.json``; no ``/docs``, whose
Swagger UI would load its scripts from a CDN).

Bearer tokens (:mod:`sevlaunch.broker.auth`): the owner's administers trust roots, workloads,
secrets and launchers and reads the audit log and every launch; each named launcher's runs and
reads its own launches. Errors are JSON ``{"error": reason, "detail": message}`` with 400 (bad
input), 401/403 (token), 404, 409, 403 for refused launches, 422 (``invalid-request``: a body
that is not JSON or does not validate) and 429 (with Retry-After) for a launcher over its limits.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse

from sevlaunch import __version__, _apierrors
from sevlaunch._guard import Guard, Limits
from sevlaunch.broker import models as m
from sevlaunch.broker import store
from sevlaunch.broker.auth import Auth
from sevlaunch.broker.launch_api import ERRORS as _ERRORS
from sevlaunch.broker.launch_api import b64, launch_router
from sevlaunch.broker.service import OWNER, Broker, NewWorkload
from sevlaunch.broker.sweeper import Sweeper
from sevlaunch.errors import (
    AccessDeniedError,
    BrokerError,
    ConflictError,
    FormatError,
    IntegrityError,
    LaunchRefusedError,
    LimitExceededError,
    NotFoundError,
    ServiceUnavailableError,
    SevlaunchError,
)

log = logging.getLogger("sevlaunch.broker")
Name = Annotated[str, Path(pattern=m.NAME_PATTERN)]
__all__ = ["b64", "create_app", "render_error"]


_STATUS: tuple[tuple[type[SevlaunchError], int], ...] = (
    (LimitExceededError, 429),
    (NotFoundError, 404),
    (ConflictError, 409),
    (LaunchRefusedError, 403),
    (IntegrityError, 500),
    (ServiceUnavailableError, 503),
)


def _status(exc: SevlaunchError) -> int:
    if isinstance(exc, AccessDeniedError):
        return exc.status
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)


def _error_body(exc: SevlaunchError) -> dict[str, object]:
    reason = exc.reason if isinstance(exc, BrokerError) else type(exc).__name__
    body: dict[str, object] = {"error": reason, "detail": str(exc)}
    if isinstance(exc, LaunchRefusedError) and exc.diagnosis:
        body["diagnosis"] = exc.diagnosis
    return body


def _root_out(row: store.TrustRootRow) -> m.TrustRootOut:
    return m.TrustRootOut(
        name=row.name,
        fingerprint=row.fingerprint,
        key_id=row.key_id,
        amd=row.amd,
        has_ask=row.ask is not None,
        created_at=row.created_at,
    )


def _workload_out(row: store.WorkloadRow) -> m.WorkloadOut:
    return m.WorkloadOut(
        name=row.name,
        policies=list(row.policies),
        digests=list(row.digests),
        min_api_major=row.min_api_major,
        min_api_minor=row.min_api_minor,
        min_build=row.min_build,
        secrets=list(row.secret_guids),
        created_at=row.created_at,
    )


def render_error(status: int, reason: str, message: str) -> dict[str, object]:
    """The API's error body for a refusal made before the app ran (:mod:`sevlaunch._guard`)."""
    del status
    return {"error": reason, "detail": message}


def _sweeping(broker: Broker) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: while it serves, this instance sweeps expired launches (as every
    instance does), starting with what expired while nobody served."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        interval = broker.settings.sweep_interval
        if interval <= 0:
            yield
            return
        sweeper = Sweeper(broker.sweep, interval)
        await anyio.to_thread.run_sync(sweeper.sweep)
        sweeper.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(sweeper.stop)

    return lifespan


def create_app(
    broker: Broker,
    owner_token: bytes,
    launcher_token: bytes | None = None,
    *,
    limits: Limits | None = None,
) -> FastAPI:
    """The ASGI app over one :class:`Broker`; tokens as read from their files. A
    ``launcher_token`` becomes the ``default`` launcher's (see
    :meth:`Broker.ensure_default_launcher`); other launchers are added through the API."""
    if launcher_token is not None:
        if not launcher_token or owner_token == launcher_token:
            raise ValueError("owner and launcher tokens must be non-empty and different")
        broker.ensure_default_launcher(launcher_token)
    auth = Auth(broker, owner_token)
    app = FastAPI(
        lifespan=_sweeping(broker),
        title="sevlaunch attestation broker",
        version=__version__,
        description="The guest owner's side of the AMD SEV launch flow: verify platforms, "
        "make launch sessions, check measurements, release secrets.",
        docs_url=None,  # FastAPI's Swagger UI and ReDoc load from a CDN: the broker runs offline
        redoc_url=None,
    )
    _apierrors.install(app, render_error)
    _apierrors.document_errors(app, m.ErrorOut.model_json_schema(), "ErrorOut")

    app.add_middleware(Guard, authorized=auth.authorized, render=render_error, limits=limits)
    owner = [Depends(auth.require(OWNER))]

    @app.exception_handler(SevlaunchError)
    async def _sev_error(_request: Request, exc: SevlaunchError) -> JSONResponse:
        status = _status(exc)
        if status == 500:
            log.error("internal error: %s", exc)
        headers = None
        if isinstance(exc, AccessDeniedError) and exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, LimitExceededError | ServiceUnavailableError):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return JSONResponse(_error_body(exc), status_code=status, headers=headers)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok", "instance": broker.settings.instance}

    # -- owner: trust roots --------------------------------------------------------------------

    @app.post(
        "/v1/trust-roots",
        status_code=201,
        response_model=m.TrustRootOut,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def add_root(body: m.TrustRootIn) -> m.TrustRootOut:
        return _root_out(broker.add_root(b64(body.certificate, "certificate"), body.name))

    @app.get(
        "/v1/trust-roots",
        response_model=list[m.TrustRootOut],
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def list_roots() -> list[m.TrustRootOut]:
        return [_root_out(r) for r in broker.roots()]

    @app.delete(
        "/v1/trust-roots/{name}",
        status_code=204,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_root(name: Name) -> None:
        broker.remove_root(name)

    # -- owner: workloads and secrets ----------------------------------------------------------

    @app.post(
        "/v1/workloads",
        status_code=201,
        response_model=m.WorkloadOut,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def add_workload(body: m.WorkloadIn) -> m.WorkloadOut:
        new = NewWorkload(
            name=body.name,
            policies=tuple(body.policies),
            digests=tuple(_digest(d) for d in body.digests),
            min_api=(body.min_api_major, body.min_api_minor),
            min_build=body.min_build,
            secrets={g: b64(v, f"secrets.{g}") for g, v in body.secrets.items()},
        )
        return _workload_out(broker.add_workload(new))

    @app.get(
        "/v1/workloads",
        response_model=list[m.WorkloadOut],
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def list_workloads() -> list[m.WorkloadOut]:
        return [_workload_out(w) for w in broker.workloads()]

    @app.get(
        "/v1/workloads/{name}",
        response_model=m.WorkloadOut,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def show_workload(name: Name) -> m.WorkloadOut:
        return _workload_out(broker.workload(name))

    @app.delete(
        "/v1/workloads/{name}",
        status_code=204,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_workload(name: Name) -> None:
        broker.remove_workload(name)

    @app.put(
        "/v1/workloads/{name}/secrets/{guid}",
        status_code=204,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def set_secret(name: Name, guid: Annotated[str, Path(max_length=64)], body: m.SecretIn) -> None:
        broker.set_secret(name, guid, b64(body.value, "value"))

    @app.delete(
        "/v1/workloads/{name}/secrets/{guid}",
        status_code=204,
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_secret(name: Name, guid: Annotated[str, Path(max_length=64)]) -> None:
        broker.remove_secret(name, guid)

    @app.get(
        "/v1/audit",
        response_model=list[m.AuditOut],
        responses=_ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def audit(
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        workload: Annotated[str | None, Query(pattern=m.NAME_PATTERN)] = None,
        launch: Annotated[str | None, Query(pattern=m.LAUNCH_ID_PATTERN)] = None,
        launcher: Annotated[str | None, Query(pattern=m.NAME_PATTERN)] = None,
        newest: bool = False,
    ) -> list[m.AuditOut]:
        rows = broker.audit(
            after=after,
            limit=limit,
            workload=workload,
            launch=launch,
            launcher=launcher,
            newest=newest,
        )
        return [m.AuditOut(**r.__dict__) for r in rows]

    app.include_router(launch_router(broker, auth))
    from sevlaunch.broker.snp_api import snp_router

    app.include_router(snp_router(broker, auth))

    from sevlaunch.broker.dashboard import add_dashboard

    add_dashboard(app, broker, owner)
    return app


def _digest(text: str) -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError as exc:
        raise FormatError("workload", "digests", "not hex", value=text[:80]) from exc
    if len(digest) != 32:
        raise FormatError(
            "workload",
            "digests",
            f"a launch digest is 32 bytes (64 hex digits), got {len(digest)}",
            value=text[:80],
        )
    return digest
