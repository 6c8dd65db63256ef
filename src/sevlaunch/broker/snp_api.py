"""The SNP routes: the guest's ``POST /v1/snp/challenge`` and ``POST /v1/snp/attest`` (no
token: see :data:`sevlaunch.broker.auth.GUEST_PATHS`), the owner's SNP roots and workloads.

Refusals are the broker's usual JSON errors: 403 with the reason code
(:class:`~sevlaunch.owner.snp.decision.SnpReason`), 404 for an unknown workload, 429 with
Retry-After for a client over its rate or a workload with too many nonces outstanding, 503
with Retry-After while the key server does not answer.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from sevlaunch.broker import models as m
from sevlaunch.broker import snp_models as sm
from sevlaunch.broker.auth import Auth
from sevlaunch.broker.launch_api import ERRORS, b64
from sevlaunch.broker.service import OWNER, Broker, NewSnpWorkload
from sevlaunch.broker.snp_admin import expectations_of
from sevlaunch.broker.snp_store import SnpRootRow, SnpWorkloadRow
from sevlaunch.errors import FormatError
from sevlaunch.owner.snp.expectations import SnpExpectations, TcbMinimum
from sevlaunch.protocol.snp import SnpEvidence

Name = Annotated[str, Path(pattern=m.NAME_PATTERN)]
GUEST_ERRORS: dict[int | str, dict[str, object]] = {**ERRORS, 503: ERRORS[400]}


def _hex48(text: str, field: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise FormatError("SNP workload", field, "not hex", value=text[:100]) from exc
    if len(value) != 48:
        raise FormatError(
            "SNP workload",
            field,
            f"a SHA-384 digest is 48 bytes (96 hex digits), got {len(value)}",
            value=text[:100],
        )
    return value


def expectations_in(body: sm.SnpWorkloadIn) -> SnpExpectations:
    """The verifier's expectations from the API's names (the rest keep their strict
    defaults)."""
    host = b64(body.host_data, "hostData") if body.host_data is not None else None
    return SnpExpectations(
        measurements=tuple(_hex48(d, "digests") for d in body.digests),
        host_data=host,
        vmpl=body.vmpl,
        allowed_policies=tuple(body.policies),
        min_abi=(body.min_abi_major, body.min_abi_minor),
        allow_debug=body.allow_debug,
        allow_migrate_ma=body.allow_migrate_ma,
        min_reported_tcb=TcbMinimum(**body.min_tcb.model_dump()),
        allow_provisional_firmware=body.allow_provisional_firmware,
        min_firmware=(body.min_firmware.major, body.min_firmware.minor, body.min_firmware.build),
        require_crl=body.require_crl,
        vlek_csp_ids=tuple(body.vlek_csp_ids),
        require_id_block=body.require_id_block,
        trusted_id_keys=tuple(_hex48(d, "idKeyDigests") for d in body.id_key_digests),
        trusted_author_keys=tuple(_hex48(d, "authorKeyDigests") for d in body.author_key_digests),
    )


def root_out(row: SnpRootRow) -> sm.SnpRootOut:
    return sm.SnpRootOut(
        name=row.name, fingerprint=row.fingerprint, product=row.product, created_at=row.created_at
    )


def workload_out(row: SnpWorkloadRow) -> sm.SnpWorkloadOut:
    return sm.SnpWorkloadOut(
        name=row.name,
        expectations=expectations_of(row).as_dict(),
        secrets=list(row.secret_guids),
        created_at=row.created_at,
    )


def _peer(request: Request) -> str:
    """The client's address; every caller on a UNIX socket is one local peer."""
    client = request.client
    return client.host if client is not None and client.host else "local"


def snp_router(broker: Broker, auth: Auth) -> APIRouter:
    router = APIRouter()
    owner = [Depends(auth.require(OWNER))]

    # -- the guest -----------------------------------------------------------------------------

    @router.post(
        "/v1/snp/challenge", response_model=sm.ChallengeOut, responses=ERRORS, tags=["guest"]
    )
    def challenge(body: sm.ChallengeIn, request: Request) -> sm.ChallengeOut:
        """A single-use nonce for one attestation of the workload (no token needed)."""
        made = broker.snp_challenge(body.workload, _peer(request))
        return sm.ChallengeOut(
            workload=made.workload,
            nonce=base64.b64encode(made.nonce).decode(),
            expires=made.expires,
        )

    @router.post(
        "/v1/snp/attest", response_model=sm.ReleaseOut, responses=GUEST_ERRORS, tags=["guest"]
    )
    def attest(body: sm.EvidenceIn, request: Request) -> sm.ReleaseOut:
        """Verify the report; the workload's secrets sealed to the key its REPORT_DATA binds."""
        evidence = SnpEvidence.from_wire(body.model_dump(by_alias=True))
        released = broker.snp_attest(evidence, _peer(request))
        wire = released.to_wire()
        return sm.ReleaseOut(
            ephemeral=str(wire["ephemeral"]),
            ciphertext=str(wire["ciphertext"]),
            attestation=released.attestation,
        )

    # -- the owner: roots ----------------------------------------------------------------------

    @router.post(
        "/v1/snp/trust-roots",
        status_code=201,
        response_model=sm.SnpRootOut,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def add_root(body: sm.SnpRootIn) -> sm.SnpRootOut:
        """Pin an ARK besides AMD's (an emulated platform's)."""
        return root_out(broker.add_snp_root(b64(body.certificate, "certificate"), body.name))

    @router.get(
        "/v1/snp/trust-roots",
        response_model=list[sm.SnpRootOut],
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def list_roots() -> list[sm.SnpRootOut]:
        return [root_out(r) for r in broker.snp_roots()]

    @router.delete(
        "/v1/snp/trust-roots/{name}",
        status_code=204,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_root(name: Name) -> None:
        broker.remove_snp_root(name)
        broker.snp_certs.forget()

    # -- the owner: workloads and secrets ------------------------------------------------------

    @router.post(
        "/v1/snp/workloads",
        status_code=201,
        response_model=sm.SnpWorkloadOut,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def add_workload(body: sm.SnpWorkloadIn) -> sm.SnpWorkloadOut:
        new = NewSnpWorkload(
            name=body.name,
            expectations=expectations_in(body),
            secrets={g: b64(v, f"secrets.{g}") for g, v in body.secrets.items()},
        )
        return workload_out(broker.add_snp_workload(new))

    @router.get(
        "/v1/snp/workloads",
        response_model=list[sm.SnpWorkloadOut],
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def list_workloads() -> list[sm.SnpWorkloadOut]:
        return [workload_out(w) for w in broker.snp_workloads()]

    @router.get(
        "/v1/snp/workloads/{name}",
        response_model=sm.SnpWorkloadOut,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def show_workload(name: Name) -> sm.SnpWorkloadOut:
        return workload_out(broker.snp_workload(name))

    @router.delete(
        "/v1/snp/workloads/{name}",
        status_code=204,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_workload(name: Name) -> None:
        broker.remove_snp_workload(name)

    @router.put(
        "/v1/snp/workloads/{name}/secrets/{guid}",
        status_code=204,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def set_secret(name: Name, guid: Annotated[str, Path(max_length=64)], body: m.SecretIn) -> None:
        broker.set_snp_secret(name, guid, b64(body.value, "value"))

    @router.delete(
        "/v1/snp/workloads/{name}/secrets/{guid}",
        status_code=204,
        responses=ERRORS,
        tags=["owner"],
        dependencies=owner,
    )
    def remove_secret(name: Name, guid: Annotated[str, Path(max_length=64)]) -> None:
        broker.remove_snp_secret(name, guid)

    return router
