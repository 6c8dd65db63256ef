"""The HTTP/JSON API (FastAPI; the OpenAPI document is at ``/openapi.json``).

Two bearer tokens, compared in constant time: the owner's administers trust roots, workloads
and secrets and reads the audit log; launchers' run launches. Errors are JSON
``{"error": reason, "detail": message}`` with 400 (bad input), 401/403 (token), 404, 409 and
403 for refused launches.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sevlaunch import __version__
from sevlaunch._guard import Guard, Limits, Scope, bearer
from sevlaunch.broker import models as m
from sevlaunch.broker import store
from sevlaunch.broker.service import LAUNCHER, OWNER, Broker, NewWorkload
from sevlaunch.errors import (
    AccessDeniedError,
    BrokerError,
    ConflictError,
    FormatError,
    IntegrityError,
    LaunchRefusedError,
    NotFoundError,
    SevlaunchError,
)
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo

log = logging.getLogger("sevlaunch.broker")
_bearer = HTTPBearer(auto_error=False, description="owner or launcher token")
Name = Annotated[str, Path(pattern=m.NAME_PATTERN)]
LaunchId = Annotated[str, Path(pattern=m.LAUNCH_ID_PATTERN)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": m.ErrorOut} for code in (400, 401, 403, 404, 409)
}


def b64(text: str, field: str) -> bytes:
    """Strict base64, or a FormatError naming the field."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError("request", field, "not valid base64", value=text[:40]) from exc


def _role(tokens: dict[str, bytes], given: bytes | None) -> str | None:
    if given is None:
        return None
    found = None
    for role, token in tokens.items():  # check every token: timing says nothing about which
        if hmac.compare_digest(given, token):
            found = role
    return found


def _require(tokens: dict[str, bytes], role: str) -> Callable[[Credentials], str]:
    def dependency(creds: Credentials) -> str:
        found = _role(tokens, creds.credentials.encode() if creds else None)
        if found is None:
            raise AccessDeniedError(401, "unauthenticated", "a valid bearer token is required")
        if found != role:
            raise AccessDeniedError(
                403, "forbidden", f"this call needs the {role} token, not the {found}'s"
            )
        return found

    return dependency


def _status(exc: SevlaunchError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, LaunchRefusedError):
        return 403
    if isinstance(exc, IntegrityError):
        return 500
    return 400


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


def create_app(
    broker: Broker, owner_token: bytes, launcher_token: bytes, *, limits: Limits | None = None
) -> FastAPI:
    """The ASGI app over one :class:`Broker`; tokens as read from their files."""
    if not owner_token or not launcher_token or owner_token == launcher_token:
        raise ValueError("owner and launcher tokens must be non-empty and different")
    tokens = {OWNER: owner_token, LAUNCHER: launcher_token}
    app = FastAPI(
        title="sevlaunch attestation broker",
        version=__version__,
        description="The guest owner's side of the AMD SEV launch flow: verify platforms, "
        "make launch sessions, check measurements, release secrets.",
    )

    def authorized(scope: Scope) -> bool:
        given = bearer(scope)
        return given is not None and _role(tokens, given) is not None

    app.add_middleware(Guard, authorized=authorized, render=render_error, limits=limits)
    owner = [Depends(_require(tokens, OWNER))]
    launcher = [Depends(_require(tokens, LAUNCHER))]

    @app.exception_handler(SevlaunchError)
    async def _sev_error(_request: Request, exc: SevlaunchError) -> JSONResponse:
        status = _status(exc)
        if status == 500:
            log.error("internal error: %s", exc)
        return JSONResponse(_error_body(exc), status_code=status)

    @app.exception_handler(AccessDeniedError)
    async def _auth_error(_request: Request, exc: AccessDeniedError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": exc.reason, "detail": exc.detail}, status_code=exc.status, headers=headers
        )

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
    ) -> list[m.AuditOut]:
        rows = broker.audit(after=after, limit=limit, workload=workload, launch=launch)
        return [m.AuditOut(**r.__dict__) for r in rows]

    # -- launchers -----------------------------------------------------------------------------

    @app.post(
        "/v1/launches",
        status_code=201,
        response_model=m.LaunchOut,
        responses=_ERRORS,
        tags=["launcher"],
        dependencies=launcher,
    )
    def start_launch(body: m.LaunchIn) -> m.LaunchOut:
        started = broker.start_launch(
            body.workload,
            b64(body.pdh, "pdh"),
            b64(body.cert_chain, "cert-chain"),
            b64(body.cek, "cek") if body.cek else None,
            body.policy,
        )
        return m.LaunchOut(
            id=started.id,
            dh_cert=base64.b64encode(started.godh).decode(),
            session=base64.b64encode(started.session).decode(),
            policy=started.policy,
            expires_at=started.expires_at,
        )

    @app.get(
        "/v1/launches/{launch_id}",
        response_model=m.LaunchStateOut,
        responses=_ERRORS,
        tags=["launcher"],
        dependencies=launcher,
    )
    def launch_state(launch_id: LaunchId) -> m.LaunchStateOut:
        row = broker.launch(launch_id)
        return m.LaunchStateOut(
            id=row.id,
            workload=row.workload,
            state=row.state,
            reason=row.reason,
            policy=row.policy,
            created_at=row.created_at,
            expires_at=row.expires_at,
            finished_at=row.finished_at,
        )

    @app.post(
        "/v1/launches/{launch_id}/measurement",
        response_model=m.SecretOut,
        responses=_ERRORS,
        tags=["launcher"],
        dependencies=launcher,
    )
    def measurement(launch_id: LaunchId, body: m.MeasurementIn) -> m.SecretOut:
        wire = body.model_dump(by_alias=True, exclude={"configuration"})
        report = LaunchSecurityInfo.from_wire(wire)
        given = body.configuration
        configuration = (
            LaunchConfiguration(given.direct_boot, given.kernel_hashes) if given else None
        )
        released = broker.finish_launch(launch_id, report, configuration)
        return m.SecretOut(
            id=released.id, secret_header=released.secret_header, secret=released.secret
        )

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
