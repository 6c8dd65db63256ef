"""The owner's SNP administration in the broker: pinned roots, SNP workloads and their secrets,
each change audited in its own transaction (the mixin :class:`SnpAdmin` of
:class:`~sevlaunch.broker.service.Broker`).

An SNP workload is an :class:`~sevlaunch.owner.snp.expectations.SnpExpectations` without
report data (each attestation binds its own nonce and key) plus secrets; it must name what
its guests are (expected measurements, or a trusted ID key) since an unchecked measurement
proves nothing.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sevlaunch.broker import db
from sevlaunch.broker import snp_store as snp
from sevlaunch.broker.seal import Sealer
from sevlaunch.crypto.snp.certs import load_certs
from sevlaunch.crypto.snp.chain import AMD_ARKS, verify_ark
from sevlaunch.errors import SevlaunchError, UsageError
from sevlaunch.formats.secret import guid_alias, resolve_guid
from sevlaunch.formats.snp.tcb import Generation
from sevlaunch.owner import secret as owner_secret
from sevlaunch.owner.snp.expectations import SnpExpectations

OWNER = "owner"


@dataclass(frozen=True)
class SnpSettings:
    """``kds_url`` None: ``$SEVLAUNCH_KDS_URL``, else AMD's; ``cache_dir`` None: the user's
    cache; ``peer_rate`` challenges and attestations a minute per client address, ``peer_burst``
    at once (every guest of a host on the broker's UNIX socket is one address: generous, so a
    host starting many guests is not refused; the guest agent does not retry a 429)."""

    kds_url: str | None = None
    cache_dir: Path | None = None
    nonce_ttl: float = 300.0
    max_open_nonces: int = 1000
    crl_ttl: float = 3600.0
    peer_rate: float = 3000.0
    peer_burst: int = 1000


@dataclass(frozen=True)
class NewSnpWorkload:
    name: str
    expectations: SnpExpectations
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)


def snp_secret_context(workload: str, guid: str) -> bytes:
    """Not SEV's context: a sealed SEV secret copied into an SNP row does not open."""
    return b"sevlaunch-broker/snp-secret/v1\0" + workload.encode() + b"\0" + guid.encode()


def check_expectations(exp: SnpExpectations) -> None:
    if exp.report_data is not None or exp.any_report_data:
        raise UsageError(
            "an SNP workload takes no report data: each attestation binds its own nonce and key"
        )
    if not (exp.measurements or exp.trusted_id_keys or exp.any_measurement):
        raise UsageError(
            "an SNP workload needs expected launch digests (--digest) or a trusted ID key "
            "(--trusted-id-key)"
        )


def parse_ark(data: bytes) -> tuple[str, Generation, bytes]:
    """``(fingerprint, product, DER)`` of the self-signed ARK in ``data`` (an ARK alone, or a
    KDS ``cert_chain`` of ASK ‖ ARK, PEM or DER)."""
    try:
        certs = load_certs(data)
    except SevlaunchError as exc:
        raise UsageError(f"not an ARK certificate or a cert_chain: {exc}") from exc
    arks = [c for c in certs if c.common_name.startswith("ARK-") and c.issuer == c.subject]
    if len(arks) != 1:
        raise UsageError(f"expected one self-signed ARK-<product> certificate, found {len(arks)}")
    ark = arks[0]
    try:
        product = Generation(ark.common_name.removeprefix("ARK-"))
    except ValueError as exc:
        raise UsageError(f"{ark.common_name!r} names no known SNP generation") from exc
    now = datetime.datetime.now(datetime.UTC)
    verify_ark(ark, now, {ark.fingerprint: product})  # self-signed by its own key, valid now
    return ark.fingerprint, product, ark.der


class SnpAdmin:
    """Roots, workloads and secrets of SNP (the Broker sets these)."""

    engine: sa.Engine
    sealer: Sealer
    clock: Callable[[], float]
    _audit: Callable[..., None]

    # -- roots ---------------------------------------------------------------------------------

    def add_snp_root(self, data: bytes, name: str | None = None) -> snp.SnpRootRow:
        fingerprint, product, der = parse_ark(data)
        if fingerprint in AMD_ARKS:
            raise UsageError(f"AMD's {product.value} ARK is always trusted; nothing to add")
        row = snp.SnpRootRow(
            name=name or f"{product.value.lower()}-{fingerprint[:12]}",
            fingerprint=fingerprint,
            product=product.value,
            ark=der,
            created_at=self.clock(),
        )
        with db.writing(self.engine) as conn:
            snp.add_root(conn, row)
            detail = {"root": row.name, "fp": fingerprint, "product": product.value}
            self._audit(conn, OWNER, "snp.trust.add", "ok", detail=detail)
        return row

    def snp_roots(self) -> list[snp.SnpRootRow]:
        with db.reading(self.engine) as conn:
            return snp.list_roots(conn)

    def remove_snp_root(self, name: str) -> None:
        with db.writing(self.engine) as conn:
            snp.remove_root(conn, name)
            self._audit(conn, OWNER, "snp.trust.remove", "ok", detail={"root": name})

    # -- workloads and secrets -----------------------------------------------------------------

    def add_snp_workload(self, new: NewSnpWorkload) -> snp.SnpWorkloadRow:
        check_expectations(new.expectations)
        guids = {str(resolve_guid(k)): v for k, v in new.secrets.items()}
        _check_sizes(guids)
        now = self.clock()
        row = snp.SnpWorkloadRow(new.name, new.expectations.to_json(), now)
        with db.writing(self.engine) as conn:
            snp.add_workload(conn, row)
            for guid, value in guids.items():
                sealed = self.sealer.seal(value, snp_secret_context(new.name, guid))
                snp.set_secret(conn, new.name, guid, sealed, now)
            self._audit(
                conn,
                OWNER,
                "snp.workload.add",
                "ok",
                workload=new.name,
                detail=_workload_detail(new.expectations, sorted(guids)),
            )
            return snp.get_workload(conn, new.name)

    def snp_workload(self, name: str) -> snp.SnpWorkloadRow:
        with db.reading(self.engine) as conn:
            return snp.get_workload(conn, name)

    def snp_workloads(self) -> list[snp.SnpWorkloadRow]:
        with db.reading(self.engine) as conn:
            return snp.list_workloads(conn)

    def remove_snp_workload(self, name: str) -> None:
        with db.writing(self.engine) as conn:
            snp.remove_workload(conn, name)
            self._audit(conn, OWNER, "snp.workload.remove", "ok", workload=name)

    def set_snp_secret(self, workload: str, guid_text: str, value: bytes) -> str:
        guid = str(resolve_guid(guid_text))
        with db.writing(self.engine) as conn:
            current = snp.sealed_secrets(conn, workload)
            sizes = {g: bytes(len(s) - 1 - 12 - 16) for g, s in current.items()}
            _check_sizes({**sizes, guid: value})
            sealed = self.sealer.seal(value, snp_secret_context(workload, guid))
            snp.set_secret(conn, workload, guid, sealed, self.clock())
            alias = guid_alias(uuid.UUID(guid))
            detail = {"guid": alias}
            self._audit(conn, OWNER, "snp.secret.set", "ok", workload=workload, detail=detail)
        return guid

    def remove_snp_secret(self, workload: str, guid_text: str) -> None:
        guid = str(resolve_guid(guid_text))
        with db.writing(self.engine) as conn:
            snp.remove_secret(conn, workload, guid)
            detail = {"guid": guid_alias(uuid.UUID(guid))}
            self._audit(conn, OWNER, "snp.secret.remove", "ok", workload=workload, detail=detail)


def _check_sizes(secrets: Mapping[str, bytes]) -> None:
    """The guest gets an OVMF secret table, as an SEV guest does: the same size limit."""
    if secrets:
        table = owner_secret.secret_table(sorted((uuid.UUID(g), v) for g, v in secrets.items()))
        owner_secret.check_size(table)


def _workload_detail(exp: SnpExpectations, guids: list[str]) -> dict[str, Any]:
    """What the audit log says of a new workload: what differs from the strict defaults."""
    defaults = SnpExpectations().as_dict()
    changed = {k: v for k, v in exp.as_dict().items() if v != defaults[k] and k != "measurements"}
    return {
        "digests": [d.hex() for d in exp.measurements],
        "expectations": changed,
        "secrets": [guid_alias(uuid.UUID(g)) for g in guids],
    }


def expectations_of(row: snp.SnpWorkloadRow) -> SnpExpectations:
    return SnpExpectations.from_json(row.expectations)


__all__ = [
    "NewSnpWorkload",
    "SnpAdmin",
    "SnpSettings",
    "check_expectations",
    "expectations_of",
    "parse_ark",
    "snp_secret_context",
]
