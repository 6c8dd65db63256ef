"""The SNP host operations of the platform service as procedures (driven by ``client.run``):
RMPUPDATE, the guest's memory controller and the emulated AMD key server, each one
:class:`~sevlaunch.platform.protocol.SnpRequest` answered with bytes (JSON for the
structured answers)."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sevlaunch.errors import ProtocolError
from sevlaunch.platform import protocol as p
from sevlaunch.platform.calls import Procedure


def host(op: str, regions: Iterable[p.Region] = (), **args: Any) -> Procedure[p.BlobReply]:
    reply = yield p.SnpRequest(json.dumps({"op": op, **args}).encode(), tuple(regions))
    if not isinstance(reply, p.BlobReply):
        raise ProtocolError("response", "expected bytes", value=type(reply).__name__)
    return reply


@dataclass(frozen=True)
class SnpInfo:
    product: str
    hwid: bytes
    current_tcb: int
    reported_tcb: int
    committed_tcb: int
    state: str
    guests: int


def info() -> Procedure[SnpInfo]:
    doc = json.loads((yield from host("info")).data)
    return SnpInfo(
        doc["product"],
        bytes.fromhex(doc["hwid"]),
        doc["current_tcb"],
        doc["reported_tcb"],
        doc["committed_tcb"],
        doc["state"],
        doc["guests"],
    )


def ca(kind: str = "vcek") -> Procedure[bytes]:
    """KDS ``cert_chain``: ASK (or ASVK) then ARK, PEM."""
    return (yield from host("ca", kind=kind)).data


def vcek(hwid: bytes, tcb: int) -> Procedure[bytes]:
    """The VCEK of chip ``hwid`` at ``tcb`` (DER), or b"" when it is not this chip."""
    return (yield from host("vcek", hwid=hwid.hex(), tcb=tcb)).data


def vlek_cert(csp_id: str, tcb: int) -> Procedure[bytes]:
    return (yield from host("vlek_cert", csp_id=csp_id, tcb=tcb)).data


def vlek_hashstick(csp_id: str, tcb: int) -> Procedure[bytes]:
    return (yield from host("vlek_hashstick", csp_id=csp_id, tcb=tcb)).data


def crl(
    kind: str,
    revoked: Iterable[tuple[int, datetime.datetime]],
    last_update: datetime.datetime,
    next_update: datetime.datetime,
) -> Procedure[bytes]:
    listed = [[serial, when.isoformat()] for serial, when in revoked]
    reply = yield from host(
        "crl",
        kind=kind,
        revoked=listed,
        last_update=last_update.isoformat(),
        next_update=next_update.isoformat(),
    )
    return reply.data


@dataclass(frozen=True)
class RmpResult:
    ok: bool
    code: str
    done: int
    detail: str


def rmp_update(
    spa: int, pages: int, *, private: bool, asid: int = 0, gpa: int = 0
) -> Procedure[RmpResult]:
    """RMPUPDATE over ``pages`` pages from ``spa`` (KVM's rmp_make_private / _shared)."""
    args: dict[str, Any] = {"spa": spa, "pages": pages, "private": private}
    if private:
        args.update(asid=asid, gpa=gpa)
    doc = json.loads((yield from host("rmp_update", **args)).data)
    return RmpResult(doc["ok"], doc["code"], doc["done"], doc["detail"])


def guest_read(gctx: int, paddr: int, ciphertext: bytes) -> Procedure[bytes]:
    """The guest's own read of its private memory (``ciphertext`` as the VMM holds it)."""
    region = p.Region(paddr, ciphertext)
    reply = yield from host("guest_read", [region], gctx=gctx, paddr=paddr, length=len(ciphertext))
    return reply.data


def guest_write(gctx: int, paddr: int, plaintext: bytes, ciphertext: bytes) -> Procedure[bytes]:
    """The guest's own store; returns the ciphertext now at ``paddr``."""
    data = base64.b64encode(plaintext).decode()
    reply = yield from host(
        "guest_write", [p.Region(paddr, ciphertext)], gctx=gctx, paddr=paddr, data=data
    )
    return _read_region(reply.regions, paddr, len(ciphertext), ciphertext)


def _read_region(regions: tuple[p.Region, ...], paddr: int, length: int, default: bytes) -> bytes:
    out = bytearray(default)
    for region in regions:
        start = max(region.paddr, paddr)
        end = min(region.end, paddr + length)
        if start < end:
            out[start - paddr : end - paddr] = region.data[
                start - region.paddr : end - region.paddr
            ]
    return bytes(out)
