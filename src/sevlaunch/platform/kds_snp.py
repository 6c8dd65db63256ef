"""The SNP half of the emulated key server, under AMD's URL forms (sev-snp.md §6.3):

- ``/vcek/v1/{Product}/{hwid}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=`` (Turin: ``fmcSPL`` too, and
  the chip named by 8 bytes of CHIP_ID; the other form answers 404, as AMD's server does);
- ``/{vcek|vlek}/v1/{Product}/cert_chain``: PEM, the ASK (or ASVK) then the ARK;
- ``/{vcek|vlek}/v1/{Product}/crl``: DER, signed by the ARK, listing the VCEKs of the TCBs
  revoked with :meth:`SnpRoutes.revoke` (AMD revokes by TCB in practice; the emulated VCEKs
  carry distinct serials so that one can be listed).

An optional throttle answers 429 with Retry-After once more than ``limit`` requests arrived
within ``window`` seconds, as AMD's server does under load.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from sevlaunch.crypto.snp.certs import load_cert
from sevlaunch.errors import FormatError, UsageError
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from sevlaunch.platform import snp_host
from sevlaunch.platform.client import PlatformClient

CRL_LIFETIME = datetime.timedelta(days=7)
_PATH = re.compile(r"^/(vcek|vlek)/v1/([A-Za-z]+)/([^/]+)$")
_SPLS = ("blSPL", "teeSPL", "snpSPL", "ucodeSPL")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    kind: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()


NOT_FOUND = Answer(404, b"not found\n", "text/plain")


@dataclass
class Throttle:
    limit: int
    window: float = 1.0
    retry_after: int = 1
    clock: Callable[[], float] = time.monotonic
    _seen: list[float] = field(default_factory=list)

    def refuse(self) -> Answer | None:
        now = self.clock()
        self._seen = [t for t in self._seen if now - t < self.window]
        if len(self._seen) >= self.limit:
            return Answer(
                429, b"too many requests\n", "text/plain", (("Retry-After", str(self.retry_after)),)
            )
        self._seen.append(now)
        return None


def _tcb(product: Generation, query: dict[str, list[str]]) -> TcbVersion | None:
    names = ("fmcSPL", *_SPLS) if product is Generation.TURIN else _SPLS
    try:
        values = {n: int(query[n][0], 10) for n in names}
    except (KeyError, ValueError, IndexError):
        return None
    if any(not 0 <= v <= 0xFF for v in values.values()):
        return None
    fmc = values.get("fmcSPL") if product is Generation.TURIN else None
    return TcbVersion(
        product.layout,
        values["blSPL"],
        values["teeSPL"],
        values["snpSPL"],
        values["ucodeSPL"],
        fmc,
    )


class SnpRoutes:
    """What one platform's SNP key server answers; thread-safe."""

    def __init__(
        self,
        client: Callable[[], PlatformClient],
        *,
        throttle: Throttle | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._client, self.throttle, self._clock = client, throttle, clock
        self._lock = threading.Lock()
        self._info: snp_host.SnpInfo | None = None
        self._revoked: dict[int, datetime.datetime] = {}  # reported TCB -> revocation time
        self._cache: dict[tuple[str, int], bytes] = {}
        self._crl: dict[str, tuple[datetime.datetime, bytes]] = {}

    def revoke(self, tcb: int) -> None:
        """List this chip's VCEK at ``tcb`` in the CRLs served from now on."""
        with self._lock:
            self._revoked.setdefault(tcb, self._clock())
            self._crl.clear()

    def _platform(self) -> snp_host.SnpInfo:
        if self._info is None:
            with self._client() as client:
                self._info = client.run(snp_host.info())
        return self._info

    def answer(self, url: str) -> Answer | None:
        """The answer for ``url``, or None when it is not an SNP route."""
        parsed = urllib.parse.urlsplit(url)
        match = _PATH.match(parsed.path)
        if match is None:
            return None
        if self.throttle is not None:
            with self._lock:
                refused = self.throttle.refuse()
            if refused is not None:
                return refused
        kind, product_name, leaf = match.groups()
        info = self._platform()
        if product_name != info.product:
            return NOT_FOUND
        return self._route(kind, Generation.parse(product_name), info, leaf, parsed.query)

    def _route(
        self, kind: str, product: Generation, info: snp_host.SnpInfo, leaf: str, query: str
    ) -> Answer:
        if leaf == "cert_chain":
            return Answer(200, self._fetch(("ca", 0), kind), "application/x-pem-file")
        if leaf == "crl":
            return Answer(200, self._crl_for(kind), "application/pkix-crl")
        if kind != "vcek":
            return NOT_FOUND
        return self._vcek(product, info, leaf, urllib.parse.parse_qs(query))

    def _vcek(
        self, product: Generation, info: snp_host.SnpInfo, hwid: str, query: dict[str, list[str]]
    ) -> Answer:
        if len(hwid) != 2 * product.hwid_size or hwid.lower() != info.hwid.hex():
            return NOT_FOUND  # Turin names chips by 8 bytes, Milan and Genoa by 64
        tcb = _tcb(product, query)
        if tcb is None:
            wanted = ("fmcSPL, " if product is Generation.TURIN else "") + ", ".join(_SPLS)
            return Answer(400, f"expected {wanted} (0..255)\n".encode(), "text/plain")
        return Answer(200, self._fetch(("vcek", tcb.to_int()), "vcek"))

    def _fetch(self, key: tuple[str, int], kind: str) -> bytes:
        with self._lock:
            cached = self._cache.get((f"{key[0]}-{kind}", key[1]))
        if cached is not None:
            return cached
        info = self._platform()
        call = snp_host.ca(kind) if key[0] == "ca" else snp_host.vcek(info.hwid, key[1])
        with self._client() as client:
            data = client.run(call)
        with self._lock:
            self._cache[(f"{key[0]}-{kind}", key[1])] = data
        return data

    def _crl_for(self, kind: str) -> bytes:
        now = self._clock()
        with self._lock:
            cached = self._crl.get(kind)
            revoked = dict(self._revoked)
        if cached is not None and now < cached[0] + CRL_LIFETIME / 2:
            return cached[1]
        serials = []
        if kind == "vcek":
            for tcb, when in revoked.items():
                serials.append((load_cert(self._fetch(("vcek", tcb), "vcek")).serial, when))
        issued = now.replace(microsecond=0) - datetime.timedelta(minutes=5)
        with self._client() as client:
            data = client.run(snp_host.crl(kind, serials, issued, issued + CRL_LIFETIME))
        with self._lock:
            self._crl[kind] = (issued, data)
        return data


def parse_tcb(text: str, layout: TcbLayout) -> int:
    """A TCB as the CLI takes it: a number (the u64) or ``bl=,tee=,snp=,ucode=[,fmc=]``."""
    text = text.strip()
    names = {"bl": "bootloader", "ucode": "microcode"}
    known = {"bootloader", "tee", "snp", "microcode"} | (
        {"fmc"} if layout is TcbLayout.TURIN else set()
    )
    try:
        if "=" not in text:
            return TcbVersion.from_int(int(text, 0), layout).to_int()
        values: dict[str, int] = dict.fromkeys(known, 0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            key = names.get(key, key)
            if key not in known:
                raise UsageError(f"TCB {text!r}: {key!r} is not one of {sorted(known)}")
            values[key] = int(value, 0)
        return TcbVersion(layout, **values).to_int()
    except (ValueError, FormatError) as exc:
        raise UsageError(f"TCB {text!r}: {exc}") from exc
