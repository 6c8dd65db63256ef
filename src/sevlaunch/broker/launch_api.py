"""The API's launch routes (launchers run them; the owner reads them) and the owner's
launcher administration."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from sevlaunch.broker import models as m
from sevlaunch.broker import store
from sevlaunch.broker.auth import Auth, Principal
from sevlaunch.broker.launchers import Launcher
from sevlaunch.broker.service import LAUNCHER, OWNER, Broker
from sevlaunch.errors import AccessDeniedError, FormatError
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo, StepReport

Name = Annotated[str, Path(pattern=m.NAME_PATTERN)]
LaunchId = Annotated[str, Path(pattern=m.LAUNCH_ID_PATTERN)]
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": m.ErrorOut} for code in (400, 401, 403, 404, 409, 429)
}


def b64(text: str, field: str) -> bytes:
    """Strict base64, or a FormatError naming the field."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError("request", field, "not valid base64", value=text[:40]) from exc


def launch_out(row: store.LaunchRow) -> m.LaunchStateOut:
    return m.LaunchStateOut(
        id=row.id,
        workload=row.workload,
        state=row.state,
        reason=row.reason,
        policy=row.policy,
        created_at=row.created_at,
        expires_at=row.expires_at,
        finished_at=row.finished_at,
        launcher=row.launcher,
    )


def launcher_out(found: Launcher) -> m.LauncherOut:
    return m.LauncherOut(
        name=found.name,
        created_at=found.created_at,
        revoked_at=found.revoked_at,
        max_open=found.limits.max_open,
        rate=found.limits.rate,
        burst=found.limits.burst,
        open=found.open,
        defaults=list(found.defaults),
    )


def launch_router(broker: Broker, auth: Auth) -> APIRouter:
    router = APIRouter()
    # defaults, not Annotated aliases: FastAPI resolves annotations in the module's globals
    launcher_only = Depends(auth.require(LAUNCHER))
    anyone = Depends(auth.principal)

    @router.post(
        "/v1/launches",
        status_code=201,
        response_model=m.LaunchOut,
        responses=ERRORS,
        tags=["launcher"],
    )
    def start_launch(body: m.LaunchIn, who: Principal = launcher_only) -> m.LaunchOut:
        launcher = _launcher(who)
        started = broker.start_launch(
            body.workload,
            b64(body.pdh, "pdh"),
            b64(body.cert_chain, "cert-chain"),
            b64(body.cek, "cek") if body.cek else None,
            body.policy,
            launcher=launcher,
            domain=body.domain,
            host=body.host,
        )
        return m.LaunchOut(
            id=started.id,
            dh_cert=base64.b64encode(started.godh).decode(),
            session=base64.b64encode(started.session).decode(),
            policy=started.policy,
            expires_at=started.expires_at,
        )

    @router.get(
        "/v1/launches",
        response_model=list[m.LaunchStateOut],
        responses=ERRORS,
        tags=["launcher", "owner"],
    )
    def list_launches(
        who: Principal = anyone,
        launcher: Annotated[str | None, Query(pattern=m.NAME_PATTERN)] = None,
        workload: Annotated[str | None, Query(pattern=m.NAME_PATTERN)] = None,
        state: Annotated[str | None, Query(pattern="^(" + "|".join(store.STATES) + ")$")] = None,
        before: Annotated[float | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[m.LaunchStateOut]:
        """Newest first: all launches for the owner, a launcher's own for a launcher."""
        if who.role != OWNER:
            launcher = who.launcher
        rows = broker.launches(
            launcher=launcher, workload=workload, state=state, before=before, limit=limit
        )
        return [launch_out(r) for r in rows]

    @router.get(
        "/v1/launches/{launch_id}",
        response_model=m.LaunchStateOut,
        responses=ERRORS,
        tags=["launcher", "owner"],
    )
    def launch_state(launch_id: LaunchId, who: Principal = anyone) -> m.LaunchStateOut:
        """Any launch for the owner; for a launcher, only its own (another's is not found)."""
        return launch_out(broker.launch(launch_id, launcher=who.launcher))

    @router.post(
        "/v1/launches/{launch_id}/measurement",
        response_model=m.SecretOut,
        responses=ERRORS,
        tags=["launcher"],
    )
    def measurement(
        launch_id: LaunchId, body: m.MeasurementIn, who: Principal = launcher_only
    ) -> m.SecretOut:
        launcher = _launcher(who)
        wire = body.model_dump(by_alias=True, exclude={"configuration"})
        report = LaunchSecurityInfo.from_wire(wire)
        given = body.configuration
        configuration = (
            LaunchConfiguration(given.direct_boot, given.kernel_hashes) if given else None
        )
        released = broker.finish_launch(launch_id, report, configuration, launcher=launcher)
        return m.SecretOut(
            id=released.id, secret_header=released.secret_header, secret=released.secret
        )

    @router.post(
        "/v1/launches/{launch_id}/steps",
        status_code=201,
        response_model=m.StepsOut,
        responses=ERRORS,
        tags=["launcher"],
    )
    def launch_steps(
        launch_id: LaunchId, body: m.StepsIn, who: Principal = launcher_only
    ) -> m.StepsOut:
        """The VM tool's record of its launch's steps, for the owner's records (once)."""
        launcher = _launcher(who)
        reports = [StepReport.from_wire({**s, "launch": 0}) for s in body.steps]
        recorded = broker.record_steps(
            launch_id, reports, host_launch=body.host_launch, launcher=launcher
        )
        return m.StepsOut(recorded=recorded)

    owner = [Depends(auth.require(OWNER))]

    @router.post(
        "/v1/launchers",
        status_code=201,
        response_model=m.NewLauncherOut,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def add_launcher(body: m.LauncherIn) -> m.NewLauncherOut:
        """A launcher and its token, which this answer carries once and never again."""
        made = broker.add_launcher(
            body.name, max_open=body.max_open, rate=body.rate, burst=body.burst
        )
        out = launcher_out(made.launcher)
        return m.NewLauncherOut(**out.model_dump(), token=made.token)

    @router.get(
        "/v1/launchers",
        response_model=list[m.LauncherOut],
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def list_launchers() -> list[m.LauncherOut]:
        return [launcher_out(found) for found in broker.launchers()]

    @router.post(
        "/v1/launchers/{name}/revoke",
        response_model=m.LauncherOut,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def revoke_launcher(name: Name) -> m.LauncherOut:
        """Refuse the launcher's token from now on; its open launches are refused."""
        return launcher_out(broker.revoke_launcher(name))

    return router


def _launcher(who: Principal) -> str:
    """The launcher's name: the launcher role's dependency passes only principals naming one."""
    if who.launcher is None:
        raise AccessDeniedError(403, "forbidden", "this call needs a named launcher's token")
    return who.launcher
