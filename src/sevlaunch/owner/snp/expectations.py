"""What the owner (or a key broker) accepts in an SNP report: one frozen, JSON-serialisable
value, so a broker can store it beside a workload and hand it to :func:`verify_report`.

Defaults are strict: VMPL 0, no debugging, no migration agent, no CXL, committed firmware
only, a CRL required, no VLEK unless its cloud is named, and the measurement and report data
must be given unless the caller says explicitly that any value will do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from sevlaunch.errors import UsageError
from sevlaunch.formats.snp.tcb import TcbVersion

REPORT_DATA_SIZE = 64


@dataclass(frozen=True)
class TcbMinimum:
    """Lowest acceptable SVN per component (``fmc`` only applies to Turin and later)."""

    bootloader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0
    fmc: int = 0

    def shortfalls(self, tcb: TcbVersion) -> list[str]:
        have = tcb.components()
        return [f"{n} {v} < {getattr(self, n)}" for n, v in have.items() if v < getattr(self, n)]

    @classmethod
    def parse(cls, text: str) -> Self:
        """``bl=3,tee=0,snp=8,ucode=115[,fmc=0]``."""
        names = {"bl": "bootloader", "ucode": "microcode"}
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = names.get(key, key)
            if not sep or key not in {f.name for f in dataclasses.fields(cls)}:
                raise UsageError(f"TCB minimum {part!r}: expected bl=, tee=, snp=, ucode=, fmc=")
            try:
                values[key] = int(value, 0)
            except ValueError as exc:
                raise UsageError(f"TCB minimum {part!r}: {value!r} is not a number") from exc
        return cls(**values)


@dataclass(frozen=True)
class SnpExpectations:
    # binding to this guest
    measurements: tuple[bytes, ...] = ()
    any_measurement: bool = False
    report_data: bytes | None = None
    any_report_data: bool = False
    host_data: bytes | None = None
    vmpl: int | None = 0
    # guest policy
    allowed_policies: tuple[int, ...] = ()  # exact 64-bit policies accepted; () = any
    min_abi: tuple[int, int] = (0, 0)
    allow_debug: bool = False
    allow_migrate_ma: bool = False
    allow_smt: bool = True
    allow_cxl: bool = False
    require_single_socket: bool = False
    require_aes_256_xts: bool = False
    require_rapl_dis: bool = False
    require_ciphertext_hiding: bool = False
    require_page_swap_disable: bool = False
    allowed_platform_info: int | None = None  # a mask of allowed bits; None = any
    # TCB and firmware
    min_reported_tcb: TcbMinimum = TcbMinimum()
    min_launch_tcb: TcbMinimum = TcbMinimum()
    allow_provisional_firmware: bool = False
    min_firmware: tuple[int, int, int] = (0, 0, 0)  # major, minor, build
    # signer and chain
    require_crl: bool = True
    vlek_csp_ids: tuple[str, ...] = ()
    allow_vcek: bool = True
    # ID block
    require_id_block: bool = False
    trusted_id_keys: tuple[bytes, ...] = ()  # SHA-384 digests of ID key structures
    trusted_author_keys: tuple[bytes, ...] = ()
    family_id: bytes | None = None
    image_id: bytes | None = None
    min_guest_svn: int = 0
    # optional identity and v5 mitigations
    chip_ids: tuple[bytes, ...] = ()
    report_ids: tuple[bytes, ...] = ()
    required_mitigations: int = 0
    min_report_version: int = 2
    allow_unknown_version: bool = False

    def __post_init__(self) -> None:
        for digest in self.measurements:
            if len(digest) != 48:
                raise UsageError(f"an SNP measurement is 48 bytes, got {len(digest)}")
        if self.report_data is not None and len(self.report_data) > REPORT_DATA_SIZE:
            raise UsageError(f"report data is at most 64 bytes, got {len(self.report_data)}")
        if self.host_data is not None and len(self.host_data) > 32:
            raise UsageError(f"host data is at most 32 bytes, got {len(self.host_data)}")
        if self.vmpl is not None and not 0 <= self.vmpl <= 3:
            raise UsageError(f"a VMPL is 0..3, got {self.vmpl}")

    @property
    def padded_report_data(self) -> bytes | None:
        """Shorter report data is compared zero-padded to 64 bytes (a SHA-384 of a nonce)."""
        if self.report_data is None:
            return None
        return self.report_data + bytes(REPORT_DATA_SIZE - len(self.report_data))

    @property
    def padded_host_data(self) -> bytes | None:
        if self.host_data is None:
            return None
        return self.host_data + bytes(32 - len(self.host_data))

    # --- JSON ---------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UsageError(f"unknown SNP expectation(s): {', '.join(unknown)}")
        defaults = cls()
        values = {k: _decode(v, getattr(defaults, k), k) for k, v in data.items()}
        return dataclasses.replace(defaults, **values)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"SNP expectations are not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError("SNP expectations are a JSON object")
        return cls.from_dict(data)


_BYTES_FIELDS = frozenset({"report_data", "host_data", "family_id", "image_id"})
_BYTES_TUPLES = frozenset(
    {"measurements", "trusted_id_keys", "trusted_author_keys", "chip_ids", "report_ids"}
)


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TcbMinimum):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: object, default: object, name: str) -> object:
    try:
        if name in _BYTES_FIELDS:
            return None if value is None else bytes.fromhex(str(value))
        if name in _BYTES_TUPLES:
            return tuple(bytes.fromhex(str(v)) for v in _as_list(value, name))
        if isinstance(default, TcbMinimum):
            return TcbMinimum(**_as_dict(value, name))
        if isinstance(default, tuple):
            return tuple(_as_list(value, name))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"SNP expectation {name}: {exc}") from exc
    return value


def _as_list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"SNP expectation {name}: expected a list")
    return value


def _as_dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"SNP expectation {name}: expected an object")
    return value
