"""What the platform service asks of the SNP firmware besides mailbox commands, as JSON
requests ``{"op": ..., ...}`` answered with bytes:

- the hypervisor's CPU (not firmware commands): ``rmp_update`` (RMPUPDATE over a run of
  pages, answered with ``{"ok": ..., "code": ..., "detail": ...}``), and the memory
  controller serving the guest's own accesses, ``guest_read`` / ``guest_write`` (only pages
  the RMP has validated for that guest);
- emulated AMD (its key server and its VLEK service hold keys only this chip's emulator
  has): ``info``, ``ca`` (KDS ``cert_chain``), ``vcek`` (by hwID and TCB; empty for another
  chip), ``vlek_cert`` and ``vlek_hashstick`` (for a cloud provider), ``crl`` (signed by the
  ARK, the times given by the caller: this layer has no clock).
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from typing import Any

from sevlaunch.crypto.snp.chain import SignerKind
from sevlaunch.crypto.snp.issue import issue_crl
from sevlaunch.errors import FirmwareError, FormatError
from sevlaunch.firmware._core import CommandError, Core
from sevlaunch.firmware.encryption import GuestCipher
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp import identity as snp_id
from sevlaunch.firmware.snp.guest import SnpGuest, SnpPlatform
from sevlaunch.firmware.snp.platform_commands import snp_identity
from sevlaunch.firmware.snp.rmp import PAGE
from sevlaunch.formats.status import Status

STRUCTURE = "SNP host request"
MAX_RMP_PAGES = 1 << 20

Op = Callable[[Core, SnpPlatform, dict[str, Any], Memory], bytes]


def _int(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(STRUCTURE, key, "expected a non-negative integer", value=value)
    return value


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise FormatError(STRUCTURE, key, "expected a string", value=value)
    return value


def _time(args: dict[str, Any], key: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(_text(args, key))
    except ValueError as exc:
        raise FormatError(STRUCTURE, key, "expected an ISO 8601 time", value=args[key]) from exc
    if when.tzinfo is None:
        raise FormatError(STRUCTURE, key, "the time must carry its offset (UTC)")
    return when


def _kind(args: dict[str, Any]) -> SignerKind:
    name = args.get("kind", "vcek")
    if name not in ("vcek", "vlek"):
        raise FormatError(STRUCTURE, "kind", "expected vcek or vlek", value=name)
    return SignerKind.VCEK if name == "vcek" else SignerKind.VLEK


def _info(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    ident = snp_identity(core)
    product = platform.profile.generation
    doc = {
        "product": product.value,
        "hwid": snp_id.hwid(core.identity.chip_id, product).hex(),
        "current_tcb": platform.current_tcb,
        "reported_tcb": platform.reported_tcb,
        "committed_tcb": ident.committed.tcb,
        "state": platform.state.name,
        "guests": len(platform.guests),
    }
    return json.dumps(doc, sort_keys=True).encode()


def _ca(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    return snp_identity(core).ca_pem(_kind(args))


def _vcek(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    ident = snp_identity(core)
    want = bytes.fromhex(_text(args, "hwid"))
    if want != snp_id.hwid(core.identity.chip_id, ident.product):
        return b""
    tcb = platform.profile.tcb(_int(args, "tcb"))
    return snp_id.vcek_cert(
        ident, core.identity.ask_key, core.identity.chip_id, core.identity.cek_key, tcb
    )


def _vlek_cert(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    tcb = platform.profile.tcb(_int(args, "tcb"))
    return snp_id.vlek_cert(snp_identity(core), _text(args, "csp_id"), tcb)


def _hashstick(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    tcb = platform.profile.tcb(_int(args, "tcb"))
    return snp_id.wrap_hashstick(
        snp_identity(core), core.identity.cek_key, _text(args, "csp_id"), tcb, core.rng(12)
    )


def _crl(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    revoked = []
    for item in args.get("revoked", []):
        if not isinstance(item, list) or len(item) != 2:
            raise FormatError(STRUCTURE, "revoked", "expected [serial, time] pairs", value=item)
        revoked.append((_int({"s": item[0]}, "s"), _time({"t": item[1]}, "t")))
    key = serialization.load_der_private_key(core.identity.ark_key, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise FormatError(STRUCTURE, "ark_key", "not RSA")
    return issue_crl(
        key,
        snp_identity(core).product,
        revoked,
        last_update=_time(args, "last_update"),
        next_update=_time(args, "next_update"),
    )


def _rmp_update(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    spa, pages = core.phys(_int(args, "spa")), _int(args, "pages")
    if not 0 < pages <= MAX_RMP_PAGES:
        raise FormatError(STRUCTURE, "pages", f"1..{MAX_RMP_PAGES} pages", value=pages)
    private = bool(args.get("private"))
    asid, gpa = (_int(args, "asid"), _int(args, "gpa")) if private else (0, 0)
    done = 0
    try:
        for index in range(pages):
            if private:
                platform.rmp.assign(spa + index * PAGE, asid, gpa + index * PAGE)
            else:
                platform.rmp.make_shared(spa + index * PAGE)
            done += 1
    except CommandError as exc:
        code = getattr(exc, "code", "FAIL_INPUT")
        return json.dumps({"ok": False, "code": code, "done": done, "detail": exc.detail}).encode()
    return json.dumps({"ok": True, "code": "", "done": done, "detail": ""}).encode()


def _running(platform: SnpPlatform, args: dict[str, Any]) -> tuple[SnpGuest, GuestCipher]:
    guest = platform.guests.get(_int(args, "gctx"))
    if guest is None or guest.cipher is None:
        raise FirmwareError("guest access", Status.INVALID_GUEST, "no launched SNP guest there")
    if not guest.active:
        raise FirmwareError("guest access", Status.INACTIVE, "the guest has no ASID")
    return guest, guest.cipher


def _check_private(platform: SnpPlatform, guest: SnpGuest, paddr: int, length: int) -> None:
    for page in range(paddr - paddr % PAGE, paddr + length, PAGE):
        entry = platform.rmp.get(page)
        if entry is None or not entry.validated or entry.asid != guest.asid:
            raise FirmwareError(
                "guest access",
                Status.INVALID_PAGE_STATE,
                f"page {page:#x} is not validated for this guest (an RMP fault, #VC 0x404)",
            )


def _guest_read(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    guest, cipher = _running(platform, args)
    paddr, length = _int(args, "paddr"), _int(args, "length")
    _check_private(platform, guest, paddr, length)
    return cipher.load(memory, paddr, length)


def _guest_write(core: Core, platform: SnpPlatform, args: dict[str, Any], memory: Memory) -> bytes:
    guest, cipher = _running(platform, args)
    paddr = _int(args, "paddr")
    data = base64.b64decode(_text(args, "data"))
    _check_private(platform, guest, paddr, len(data))
    cipher.store(memory, paddr, data)
    return b""


OPS: dict[str, Op] = {
    "info": _info,
    "ca": _ca,
    "vcek": _vcek,
    "vlek_cert": _vlek_cert,
    "vlek_hashstick": _hashstick,
    "crl": _crl,
    "rmp_update": _rmp_update,
    "guest_read": _guest_read,
    "guest_write": _guest_write,
}


def run(core: Core, request: bytes, memory: Memory) -> bytes:
    platform = core.snp
    if platform is None:
        raise FirmwareError("SNP", Status.INVALID_COMMAND, "this generation has no SNP firmware")
    try:
        args = json.loads(request)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(STRUCTURE, "json", f"not JSON: {exc}") from exc
    if not isinstance(args, dict) or args.get("op") not in OPS:
        raise FormatError(STRUCTURE, "op", f"expected one of {', '.join(OPS)}", value=args)
    return OPS[args["op"]](core, platform, args, memory)
