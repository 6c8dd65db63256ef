"""SEV-SNP certificates from AMD's Key Distribution Service (sev-snp.md §6.3), cached only
after they verify, and verified again whenever they are loaded from the cache.

- VCEK: ``/vcek/v1/{Milan|Genoa}/{hex(CHIP_ID)}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..``;
  Turin names the chip by its first 8 bytes and adds ``fmcSPL`` first. The SPLs are the
  report's REPORTED_TCB, written as snpguest and trustee do (two digits, zero-padded).
- ``/{vcek|vlek}/v1/{Product}/cert_chain``: PEM, ASK (or ASVK) then ARK; the ARK must be a
  pinned AMD root.
- ``/{vcek|vlek}/v1/{Product}/crl``: DER, signed by the ARK.

KDS throttles (HTTP 429): requests retry after Retry-After, or with backoff. A VLEK itself is
not fetched: KDS hands it only to the cloud provider that loads it (it arrives in the
extended report's certificate table).
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sevlaunch.crypto.snp.certs import load_cert, load_certs
from sevlaunch.crypto.snp.chain import (
    AMD_ARKS,
    SignerKind,
    VerifiedCa,
    VerifiedChain,
    verify_ca_bundle,
    verify_chain,
)
from sevlaunch.crypto.snp.crl import VerifiedCrl, verify_crl
from sevlaunch.errors import DownloadError, SevlaunchError, TrustStoreError, UsageError
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from sevlaunch.kds._io import (
    DEFAULT_TIMEOUT,
    KDS_URL_ENV,
    default_cache_dir,
    http_get,
    read_cached,
    write_atomic,
)

AMD_KDS_URL = "https://kdsintf.amd.com"
DEFAULT_RETRIES = 4
MAX_CRL_SIZE = 1024 * 1024


def kds_base(base_url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """AMD's KDS, or the mirror named by ``base_url`` or ``$SEVLAUNCH_KDS_URL`` (laid out as
    KDS is: ``<base>/vcek/v1/...``)."""
    env = os.environ if environ is None else environ
    base = base_url or env.get(KDS_URL_ENV) or AMD_KDS_URL
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"the key server URL {base!r} must start with http:// or https://")
    return base.rstrip("/")


def _kind_path(kind: SignerKind) -> str:
    return "vcek" if kind is SignerKind.VCEK else "vlek"


def vcek_path(product: Generation, chip_id: bytes, tcb: TcbVersion) -> str:
    """The KDS path and query of one chip's VCEK at one TCB."""
    size = product.hwid_size
    if len(chip_id) < size or not any(chip_id[:size]):
        raise UsageError(
            f"a {product.value} VCEK is named by {size} bytes of CHIP_ID, and this one is "
            "zero or short (a guest launched with MASK_CHIP_ID cannot fetch its VCEK)"
        )
    if tcb.layout is not product.layout:
        raise UsageError(f"a {product.value} TCB uses the {product.layout.value} layout")
    spl = f"blSPL={tcb.bootloader:02}&teeSPL={tcb.tee:02}&snpSPL={tcb.snp:02}"
    spl += f"&ucodeSPL={tcb.microcode:02}"
    if product.layout is TcbLayout.TURIN:
        spl = f"fmcSPL={tcb.fmc:02}&" + spl
    return f"/vcek/v1/{product.value}/{chip_id[:size].hex()}?{spl}"


def cert_chain_path(product: Generation, kind: SignerKind = SignerKind.VCEK) -> str:
    return f"/{_kind_path(kind)}/v1/{product.value}/cert_chain"


def crl_path(product: Generation, kind: SignerKind = SignerKind.VCEK) -> str:
    return f"/{_kind_path(kind)}/v1/{product.value}/crl"


@dataclass(frozen=True)
class CachedSnpCa:
    path: Path
    data: bytes
    verified: VerifiedCa


@dataclass(frozen=True)
class CachedVcek:
    path: Path
    data: bytes
    chain: VerifiedChain


@dataclass(frozen=True)
class CachedCrl:
    path: Path
    data: bytes
    verified: VerifiedCrl


@dataclass(frozen=True)
class SnpCache:
    """``<cache>/snp/{vcek|vlek}/<Product>/{cert_chain.pem,crl.der}`` and
    ``<cache>/snp/vcek/<Product>/<hwid>-<tcb>.der``."""

    root: Path

    def ca_path(self, product: Generation, kind: SignerKind) -> Path:
        return self.root / "snp" / _kind_path(kind) / product.value / "cert_chain.pem"

    def crl_path(self, product: Generation, kind: SignerKind) -> Path:
        return self.root / "snp" / _kind_path(kind) / product.value / "crl.der"

    def vcek_path(self, product: Generation, chip_id: bytes, tcb: TcbVersion) -> Path:
        hwid = chip_id[: product.hwid_size].hex()
        return self.root / "snp" / "vcek" / product.value / f"{hwid}-{tcb.to_int():016x}.der"


class SnpKdsClient:
    """Fetches, verifies and caches SNP certificates; ``clock`` gives the verification time."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        cache_dir: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        trusted_arks: Mapping[str, Generation] = AMD_ARKS,
    ) -> None:
        self.base = kds_base(base_url)
        self.cache = SnpCache(cache_dir if cache_dir is not None else default_cache_dir())
        self.timeout, self.retries, self.sleep, self.clock = timeout, retries, sleep, clock
        self.trusted_arks = trusted_arks

    def _get(self, path: str, what: str, max_size: int = 64 * 1024) -> tuple[str, bytes]:
        url = self.base + path
        hint = (
            f"fetch it on a machine with network access, or set {KDS_URL_ENV} to a mirror "
            "laid out as kdsintf.amd.com"
        )
        data = http_get(
            url,
            what=what,
            hint=hint,
            timeout=self.timeout,
            max_size=max_size,
            retries=self.retries,
            sleep=self.sleep,
        )
        return url, data

    @staticmethod
    def _refused(what: str, url: str, exc: SevlaunchError) -> DownloadError:
        return DownloadError(
            what,
            ((url, f"refused, not cached: {exc}", None),),
            "the server's answer did not verify to AMD's pinned root",
        )

    # --- cert_chain --------------------------------------------------------------------

    def _verify_ca(self, data: bytes, product: Generation, kind: SignerKind) -> VerifiedCa:
        verified = verify_ca_bundle(
            load_certs(data), kind, at=self.clock(), trusted_arks=self.trusted_arks
        )
        if verified.product is not product:
            raise TrustStoreError(
                f"the bundle is {verified.product.value}'s, not {product.value}'s"
            )
        return verified

    def load_ca(
        self, product: Generation, kind: SignerKind = SignerKind.VCEK
    ) -> CachedSnpCa | None:
        path = self.cache.ca_path(product, kind)
        data = read_cached(path)
        if data is None:
            return None
        try:
            return CachedSnpCa(path, data, self._verify_ca(data, product, kind))
        except SevlaunchError as exc:
            raise TrustStoreError(f"the cached {path} does not verify ({exc}); delete it") from exc

    def fetch_ca(self, product: Generation, kind: SignerKind = SignerKind.VCEK) -> CachedSnpCa:
        what = f"AMD's {product.value} {kind.value} cert_chain"
        url, data = self._get(cert_chain_path(product, kind), what)
        try:
            verified = self._verify_ca(data, product, kind)
        except SevlaunchError as exc:
            raise self._refused(what, url, exc) from exc
        path = write_atomic(self.cache.ca_path(product, kind), data)
        return CachedSnpCa(path, data, verified)

    def ca(
        self, product: Generation, kind: SignerKind = SignerKind.VCEK, *, fetch: bool = True
    ) -> CachedSnpCa:
        cached = self.load_ca(product, kind)
        if cached is not None:
            return cached
        if not fetch:
            raise TrustStoreError(
                f"no {product.value} {kind.value} cert_chain is cached in {self.cache.root}: run "
                f"'sevlaunch owner snp fetch ca --product {product.value}'"
            )
        return self.fetch_ca(product, kind)

    # --- VCEK --------------------------------------------------------------------------

    def _verify_vcek(
        self, data: bytes, product: Generation, chip_id: bytes, tcb: TcbVersion, ca: CachedSnpCa
    ) -> VerifiedChain:
        chain = verify_chain(
            load_cert(data),
            ca.verified.ask,
            ca.verified.ark,
            at=self.clock(),
            trusted_arks=self.trusted_arks,
        )
        cert_tcb = chain.extensions.tcb(product.layout)
        if cert_tcb is None or cert_tcb.components() != tcb.components():
            raise TrustStoreError(
                f"the VCEK is for TCB {cert_tcb.describe() if cert_tcb else '?'}"
                f", not {tcb.describe()}"
            )
        if chain.extensions.hwid != chip_id[: product.hwid_size]:
            raise TrustStoreError("the VCEK's hwID is not the chip asked for")
        return chain

    def load_vcek(self, product: Generation, chip_id: bytes, tcb: TcbVersion) -> CachedVcek | None:
        path = self.cache.vcek_path(product, chip_id, tcb)
        data = read_cached(path)
        if data is None:
            return None
        ca = self.ca(product, fetch=False)
        try:
            return CachedVcek(path, data, self._verify_vcek(data, product, chip_id, tcb, ca))
        except SevlaunchError as exc:
            raise TrustStoreError(f"the cached {path} does not verify ({exc}); delete it") from exc

    def fetch_vcek(self, product: Generation, chip_id: bytes, tcb: TcbVersion) -> CachedVcek:
        """Download one chip's VCEK at ``tcb`` (the cert_chain too, if not cached)."""
        path = vcek_path(product, chip_id, tcb)
        ca = self.ca(product)
        what = f"the {product.value} VCEK of chip {chip_id[:8].hex()}… at {tcb.describe()}"
        url, data = self._get(path, what)
        try:
            chain = self._verify_vcek(data, product, chip_id, tcb, ca)
        except SevlaunchError as exc:
            raise self._refused(what, url, exc) from exc
        where = write_atomic(self.cache.vcek_path(product, chip_id, tcb), data)
        return CachedVcek(where, data, chain)

    def vcek_for_report(
        self, report: AttestationReport, product: Generation | None = None, *, fetch: bool = True
    ) -> CachedVcek:
        """The VCEK that must have signed ``report`` (its CHIP_ID at its REPORTED_TCB)."""
        gen = report.generation or product
        if gen is None:
            raise UsageError("a version 2 report does not say its generation: give --product")
        tcb = report.tcb("reported_tcb", gen.layout)
        cached = self.load_vcek(gen, report.chip_id, tcb) if self.load_ca(gen) else None
        if cached is not None:
            return cached
        if not fetch:
            raise TrustStoreError(f"the VCEK is not cached in {self.cache.root}: add --fetch")
        return self.fetch_vcek(gen, report.chip_id, tcb)

    # --- CRL ---------------------------------------------------------------------------

    def load_crl(self, product: Generation, kind: SignerKind = SignerKind.VCEK) -> CachedCrl | None:
        path = self.cache.crl_path(product, kind)
        data = read_cached(path)
        if data is None:
            return None
        ca = self.ca(product, kind, fetch=False)
        try:
            return CachedCrl(path, data, verify_crl(data, ca.verified.ark, at=self.clock()))
        except SevlaunchError as exc:
            raise TrustStoreError(
                f"the cached {path} does not verify ({exc}); fetch it again"
            ) from exc

    def fetch_crl(self, product: Generation, kind: SignerKind = SignerKind.VCEK) -> CachedCrl:
        ca = self.ca(product, kind)
        what = f"AMD's {product.value} {kind.value} CRL"
        url, data = self._get(crl_path(product, kind), what, MAX_CRL_SIZE)
        try:
            verified = verify_crl(data, ca.verified.ark, at=self.clock())
        except SevlaunchError as exc:
            raise self._refused(what, url, exc) from exc
        path = write_atomic(self.cache.crl_path(product, kind), data)
        return CachedCrl(path, data, verified)
