"""The host manager's HTTP/JSON API (FastAPI), named as libvirt names things.

Errors come back as ``{"error": {"code": <libvirt error text>, "message": ...}}`` with an HTTP
status that says who is at fault (422 ``invalid argument`` for a body that is not JSON or does
not validate). No ``/docs``: FastAPI's Swagger UI loads its scripts from a CDN, and the host
manager must work offline; ``/openapi.json`` stays. On TCP every request needs the bearer token; on a Unix
socket the socket's file mode is the protection, as for libvirtd's.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sevlaunch import _apierrors
from sevlaunch._guard import Guard, Limits, Scope, bearer
from sevlaunch.errors import FormatError, HostError, QemuCommandError
from sevlaunch.host.manager import HostManager
from sevlaunch.host.store import DomainRow
from sevlaunch.protocol import StepReport

_STATUS = {
    "Domain not found": 404,
    "Secret not found": 404,
    "Requested operation is not valid": 409,
    "operation failed": 409,
    "XML error": 400,
    "invalid argument": 400,
    "unsupported configuration": 400,
    "Operation not supported": 400,
    "internal error": 502,
}


class DomainInfo(BaseModel):
    uuid: str
    name: str
    state: str
    reason: str
    launch: int

    @classmethod
    def of(cls, row: DomainRow) -> DomainInfo:
        return cls(
            uuid=row.uuid,
            name=row.name,
            state=row.state.replace("shutoff", "shut off"),
            reason=row.reason,
            launch=row.launch,
        )


class StartRequest(BaseModel):
    paused: bool = False


class LaunchSecurityState(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    sev_secret_header: str = Field(alias="sev-secret-header")
    sev_secret: str = Field(alias="sev-secret")
    sev_secret_set_address: int | None = Field(
        default=None, alias="sev-secret-set-address", ge=0, lt=1 << 64
    )


class StepReports(BaseModel):
    """Launch steps as the VM tool observed them: the protocol's StepReport on the wire."""

    model_config = ConfigDict(extra="forbid")
    steps: list[dict[str, Any]] = Field(max_length=13)


class SecretValue(BaseModel):
    value: str = Field(description="base64 of the secret value")


_GUARD_CODES = {
    "unauthenticated": "authentication failed",
    _apierrors.INVALID: "invalid argument",
    "not-found": "Operation not supported",
    "method-not-allowed": "Operation not supported",
}
#: The JSON schema of every error body (the OpenAPI document's ``HostErrorOut``).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "HostErrorOut",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "libvirt's error text"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}


def render_error(status: int, reason: str, message: str) -> dict[str, Any]:
    """The API's error body for a refusal made before the app ran (:mod:`sevlaunch._guard`)."""
    del status
    return {"error": {"code": _GUARD_CODES.get(reason, reason), "message": message, "field": None}}


def create_app(
    manager: HostManager, *, token: str | None = None, limits: Limits | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await manager.startup()
        try:
            yield
        finally:
            await manager.close()

    async def authorize(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        presented = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise HostError("authentication failed", "a valid bearer token is required")

    app = FastAPI(
        title="sevlaunch host manager",
        version="1",
        description="libvirt's SEV APIs over HTTP: node SEV info, domains, launch security, secrets, events.",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
        docs_url=None,
        redoc_url=None,
    )
    _apierrors.install(app, render_error)
    _apierrors.document_errors(app, ERROR_SCHEMA, "HostErrorOut")

    @app.exception_handler(HostError)
    async def host_error(_request: Request, exc: HostError) -> JSONResponse:
        status = 401 if exc.kind == "authentication failed" else _STATUS.get(exc.kind, 400)
        error: dict[str, object] = {"code": exc.kind, "message": str(exc), "field": exc.field}
        if isinstance(exc, QemuCommandError):  # the client raises the same class again
            error["qmp"] = {"command": exc.command, "class": exc.error_class, "desc": exc.desc}
        return JSONResponse({"error": error}, status_code=status)

    def authorized(scope: Scope) -> bool:
        presented = bearer(scope) or b""
        return token is None or hmac.compare_digest(presented, token.encode())

    app.add_middleware(Guard, authorized=authorized, render=render_error, limits=limits)
    _routes(app, manager)
    _report_routes(app, manager)
    from sevlaunch.host.dashboard import add_dashboard

    add_dashboard(app, manager, token_required=token is not None)
    return app


def _routes(app: FastAPI, m: HostManager) -> None:
    _node_routes(app, m)
    _domain_routes(app, m)


def _node_routes(app: FastAPI, m: HostManager) -> None:
    @app.get("/v1/node/sev-info", summary="virNodeGetSEVInfo")
    async def node_sev_info(refresh: bool = False) -> dict[str, Any]:
        return dict((await m.node_sev_info(refresh=refresh)).to_wire())

    @app.get("/v1/node/snp-info", summary="domain capabilities' launchSecurity, SNP status")
    async def node_snp_info(refresh: bool = False) -> dict[str, Any]:
        return (await m.node_snp_info(refresh=refresh)).to_wire()


def _domain_routes(app: FastAPI, m: HostManager) -> None:
    @app.get("/v1/domains", summary="virConnectListAllDomains")
    async def list_domains(all: Annotated[bool, Query(alias="all")] = False) -> list[DomainInfo]:  # noqa: A002
        return [DomainInfo.of(r) for r in m.list_domains(all_domains=all)]

    @app.post("/v1/domains", summary="virDomainDefineXML")
    async def define(xml: Annotated[str, Body(media_type="application/xml")]) -> DomainInfo:
        return DomainInfo.of(await m.define(xml))

    @app.get("/v1/domains/{name}", summary="virDomainGetInfo")
    async def get_domain(name: str) -> DomainInfo:
        return DomainInfo.of(m.domain(name))

    @app.get(
        "/v1/domains/{name}/xml", summary="virDomainGetXMLDesc", response_class=PlainTextResponse
    )
    async def dumpxml(name: str) -> str:
        return m.dumpxml(name)

    @app.delete("/v1/domains/{name}", summary="virDomainUndefine")
    async def undefine(name: str) -> dict[str, Any]:
        m.undefine(name)
        return {}

    @app.post("/v1/domains/{name}/start", summary="virDomainCreateWithFlags")
    async def start(name: str, body: StartRequest | None = None) -> DomainInfo:
        return DomainInfo.of(await m.start(name, paused=bool(body and body.paused)))

    @app.post("/v1/domains/{name}/resume", summary="virDomainResume")
    async def resume(name: str) -> DomainInfo:
        await m.resume(name)
        return DomainInfo.of(m.domain(name))

    @app.post("/v1/domains/{name}/suspend", summary="virDomainSuspend")
    async def suspend(name: str) -> DomainInfo:
        await m.suspend(name)
        return DomainInfo.of(m.domain(name))

    @app.post("/v1/domains/{name}/shutdown", summary="virDomainShutdown")
    async def shutdown(name: str) -> DomainInfo:
        await m.shutdown(name)
        return DomainInfo.of(m.domain(name))

    @app.post("/v1/domains/{name}/destroy", summary="virDomainDestroy")
    async def destroy(name: str) -> DomainInfo:
        await m.destroy(name)
        return DomainInfo.of(m.domain(name))

    @app.get("/v1/domains/{name}/launch-security", summary="virDomainGetLaunchSecurityInfo")
    async def launch_security_info(name: str) -> dict[str, Any]:
        info = await m.launch_security_info(name)
        return {} if info is None else dict(info.to_wire())

    @app.put("/v1/domains/{name}/launch-security", summary="virDomainSetLaunchSecurityState")
    async def set_launch_security_state(name: str, body: LaunchSecurityState) -> dict[str, Any]:
        await m.set_launch_security_state(name, body.model_dump(by_alias=True, exclude_none=True))
        return {}

    @app.get(
        "/v1/domains/{name}/console",
        summary="the serial console log",
        response_class=PlainTextResponse,
    )
    async def console(name: str) -> str:
        return m.console(name)

    @app.get("/v1/domains/{name}/timeline", summary="every launch step with timings")
    async def timeline(name: str, launch: int | None = None) -> list[dict[str, Any]]:
        return m.timeline(name, launch)

    @app.post("/v1/domains/{name}/wait-booted", summary="wait for the guest to report its boot")
    async def wait_booted(
        name: str, timeout: Annotated[float, Query(gt=0, le=600)] = 60.0
    ) -> DomainInfo:
        try:
            await m.wait_booted(name, timeout)
        except TimeoutError as exc:
            raise HostError(
                "operation failed", f"the guest did not report its boot within {timeout} s"
            ) from exc
        return DomainInfo.of(m.domain(name))

    @app.get(
        "/v1/events", summary="virConnectDomainEventRegisterAny: newline-delimited JSON events"
    )
    async def events(
        domain: Annotated[
            str | None, Query(max_length=1024, description="only this domain's events")
        ] = None,
    ) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            async with m.events.subscribe(domain) as queue:
                yield b'{"event": "subscribed"}\n'
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        yield b'{"event": "keepalive"}\n'
                        continue
                    yield json.dumps(event).encode() + b"\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @app.post("/v1/secrets", summary="virSecretDefineXML")
    async def secret_define(
        xml: Annotated[str, Body(media_type="application/xml")],
    ) -> dict[str, str]:
        return {"uuid": m.secret_define(xml)}

    @app.get("/v1/secrets", summary="virConnectListAllSecrets (never values)")
    async def secret_list() -> list[dict[str, Any]]:
        return m.secret_list()

    @app.put("/v1/secrets/{uuid}/value", summary="virSecretSetValue")
    async def secret_set_value(uuid: str, body: SecretValue) -> dict[str, Any]:
        import base64
        import binascii

        try:
            value = base64.b64decode(body.value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HostError("invalid argument", "secret value must be base64") from exc
        m.secret_set_value(uuid, value)
        return {}

    @app.delete("/v1/secrets/{uuid}", summary="virSecretUndefine")
    async def secret_undefine(uuid: str) -> dict[str, Any]:
        m.secret_undefine(uuid)
        return {}


def _report_routes(app: FastAPI, m: HostManager) -> None:
    """What the VM tool reports to the host: the steps it sees and the host does not."""

    @app.post(
        "/v1/domains/{name}/timeline",
        summary="the VM tool's record of the steps the host does not see (1-5, 11)",
    )
    async def report_steps(name: str, body: StepReports) -> dict[str, Any]:
        try:
            reports = [StepReport.from_wire(r) for r in body.steps]
        except FormatError as exc:
            raise HostError("invalid argument", str(exc), field="steps", value=None) from exc
        return {"recorded": m.report_steps(name, reports)}
