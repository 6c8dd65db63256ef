"""SNP_GUEST_REQUEST: the guest's encrypted channel to the firmware (sev-snp.md §5).

The hypervisor relays a request page and a response page, both shared (hypervisor-owned in the
RMP). The firmware opens the request with the VMPCK the header names, accepts only the
sequence number after the last one it answered for that VMPCK, answers MSG_REPORT_REQ with a
report signed by the VCEK at REPORTED_TCB (or the loaded VLEK) and MSG_KEY_REQ with a derived
key, seals the answer with sequence number + 1 and advances by two. Any problem with the
message itself (layout, tag, number, type) answers INVALID_PARAM and changes nothing.

MSG_KEY_REQ's derivation is AMD's secret; the emulator uses HMAC-SHA512 under the chip secret
and HKDF-SHA256 over the selected fields (deterministic, different for every input that the
ABI says it depends on).
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sevlaunch.crypto.snp import guest_msg
from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.firmware._core import CommandError, Core, Handler, require
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp.guest import SnpGuest
from sevlaunch.firmware.snp.launch_commands import guest_of
from sevlaunch.firmware.snp.platform_commands import snp
from sevlaunch.firmware.snp.report import build_report
from sevlaunch.firmware.snp.rmp import PAGE, page_of
from sevlaunch.formats.snp.commands import SnpCommand, SnpGuestRequestBuffer
from sevlaunch.formats.snp.guest_msg import (
    GuestField,
    KeyRequest,
    KeyResponse,
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.status import Status

MSG_VERSION = 1
_KNOWN_FIELDS = sum(f.value for f in GuestField)


def _open(guest: SnpGuest, page: bytes) -> tuple[MessageHeader, bytes]:
    try:
        header = MessageHeader.from_bytes(page)
    except FormatError as exc:
        raise CommandError(Status.INVALID_PARAM, f"message header: {exc}") from exc
    require(
        header.algo == 1 and header.hdr_version == 1,
        Status.INVALID_PARAM,
        f"algorithm {header.algo} / header version {header.hdr_version}: only 1 / 1 exist",
    )
    require(header.msg_vmpck <= 3, Status.INVALID_PARAM, f"VMPCK {header.msg_vmpck}")
    expected = guest.seqnos[header.msg_vmpck] + 1
    require(
        header.msg_seqno == expected,
        Status.INVALID_PARAM,
        f"sequence number {header.msg_seqno}, expected {expected} (a replayed or lost message)",
    )
    require(expected + 1 < 1 << 64, Status.AEAD_OFLOW, "the sequence numbers are exhausted")
    try:
        return guest_msg.open_message(guest.vmpcks[header.msg_vmpck], page)
    except (FormatError, IntegrityError) as exc:
        raise CommandError(Status.INVALID_PARAM, str(exc)) from exc


def _report(core: Core, guest: SnpGuest, vmpl: int, payload: bytes) -> bytes:
    try:
        request = ReportRequest.from_bytes(payload)
    except FormatError:
        return ReportResponse(int(Status.INVALID_PARAM), b"").to_bytes()
    if request.vmpl < vmpl:
        return ReportResponse(int(Status.INVALID_PARAM), b"").to_bytes()
    report = build_report(core, guest, request.report_data, request.vmpl)
    if report is None:
        return ReportResponse(int(Status.INVALID_KEY), b"").to_bytes()
    return ReportResponse(0, report).to_bytes()


def _derive(core: Core, guest: SnpGuest, request: KeyRequest) -> bytes:
    select = request.guest_field_select
    parts = [request.vmpl.to_bytes(4, "little"), select.to_bytes(8, "little")]
    info = guest.id_info
    for flag, value in (
        (GuestField.POLICY, guest.policy.to_bytes(8, "little")),
        (GuestField.IMAGE_ID, info.image_id),
        (GuestField.FAMILY_ID, info.family_id),
        (GuestField.MEASUREMENT, guest.ld),
        (GuestField.GUEST_SVN, request.guest_svn.to_bytes(4, "little")),
        (GuestField.TCB_VERSION, request.tcb_version.to_bytes(8, "little")),
        (GuestField.LAUNCH_MIT_VECTOR, (request.launch_mit_vector or 0).to_bytes(8, "little")),
    ):
        if select & flag:
            parts.append(value)
    root = hmac.digest(core.identity.cek_key, b"sevlaunch VCEK root key", "sha512")
    hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=b"sevlaunch MSG_KEY_REQ" + b"".join(parts))
    return hkdf.derive(root)


def _key(core: Core, guest: SnpGuest, vmpl: int, payload: bytes) -> bytes:
    try:
        request = KeyRequest.from_bytes(payload)
    except FormatError:
        return KeyResponse(int(Status.INVALID_PARAM)).to_bytes()
    platform = snp(core)
    committed = platform.profile.tcb(platform.current_tcb)
    ident = core.identity.snp
    if ident is not None:
        committed = platform.profile.tcb(ident.committed.tcb)
    wants_tcb = bool(request.guest_field_select & GuestField.TCB_VERSION)
    refused = (
        request.root_key_select != 0  # VMRK: only with a migration agent
        or request.guest_field_select & ~_KNOWN_FIELDS
        or not vmpl <= request.vmpl <= 3
        or request.guest_svn > guest.id_info.guest_svn
        or (wants_tcb and not platform.profile.tcb(request.tcb_version).at_most(committed))
    )
    if refused:
        return KeyResponse(int(Status.INVALID_PARAM)).to_bytes()
    return KeyResponse(0, _derive(core, guest, request)).to_bytes()


def guest_request(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpGuestRequestBuffer.from_bytes(buffer)
    guest = guest_of(core, buf.gctx_paddr)
    req, res = core.phys(buf.req_paddr), core.phys(buf.res_paddr)
    rmp = snp(core).rmp
    for paddr, what in ((req, "request"), (res, "response")):
        page_of(paddr)
        rmp.require_shared(paddr, what)
    header, payload = _open(guest, core.read(memory, req, PAGE))
    require(header.msg_version == MSG_VERSION, Status.INVALID_PARAM, "message version must be 1")
    vmpl = header.msg_vmpck
    if header.msg_type == MessageType.REPORT_REQ:
        answer = _report(core, guest, vmpl, payload)
    elif header.msg_type == MessageType.KEY_REQ:
        answer = _key(core, guest, vmpl, payload)
    else:
        raise CommandError(Status.INVALID_PARAM, f"message type {header.msg_type} is not served")
    reply = MessageHeader(
        msg_seqno=header.msg_seqno + 1,
        msg_type=header.msg_type + 1,
        msg_size=len(answer),
        msg_vmpck=vmpl,
        msg_version=header.msg_version,
    )
    core.write(memory, res, guest_msg.seal(guest.vmpcks[vmpl], reply, answer))
    guest.seqnos[vmpl] = header.msg_seqno + 1
    return buffer


HANDLERS: dict[SnpCommand, Handler] = {SnpCommand.SNP_GUEST_REQUEST: guest_request}
