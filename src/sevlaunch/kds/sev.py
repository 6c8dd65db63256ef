"""Fetching and caching AMD's certificates: the IO side of the trust store.

Two kinds of file come from AMD:

- the CA file of a generation, ASK ‖ ARK (``ask_ark_<gen>.cert``). sevctl today does not
  download it: it uses the copies built into virtee/sev, whose stated provenance is
  ``https://developer.amd.com/wp-content/resources/ask_ark_<gen>.cert`` (the URL sev-tool
  downloads too). AMD now also serves the files from
  ``https://download.amd.com/developer/eula/sev/ask_ark_<gen>.cert``; both are tried, in
  that order.
- the AMD-signed CEK of one chip, from the key distribution service:
  ``https://kdsintf.amd.com/cek/id/<chip id>``, the chip id being GET_ID's 64 bytes as
  uppercase hex (virtee/sev formats its ``Identifier`` with ``{:02X}``).

``SEVLAUNCH_KDS_URL`` (or the ``base_url`` argument) replaces both with one mirror laid out
as ``<base>/ask_ark_<gen>.cert`` and ``<base>/cek/id/<CHIP ID>``.

Nothing is cached unless it parses, and a CA file only once it verifies to AMD's pinned root
of the generation asked for; cached CA files are verified again whenever they are loaded.
Downloads happen only when a caller asks for them (``fetch-ca``, ``fetch-cek``, ``--fetch``).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sevlaunch.crypto.chain import VerifiedCa, verify_ca, verify_cek
from sevlaunch.crypto.truststore import GENERATIONS, TrustStore
from sevlaunch.errors import (
    ChainError,
    DownloadError,
    MissingCekSignatureError,
    SevlaunchError,
    TrustStoreError,
    UsageError,
)
from sevlaunch.formats.chain import CaChain
from sevlaunch.formats.sevcert import Algorithm, SevCert, Usage
from sevlaunch.kds._io import (
    DEFAULT_TIMEOUT,
    KDS_URL_ENV,
    default_cache_dir,
    http_get,
    read_cached,
    write_atomic,
)

AMD_CA_URLS = (
    "https://developer.amd.com/wp-content/resources/ask_ark_{gen}.cert",
    "https://download.amd.com/developer/eula/sev/ask_ark_{gen}.cert",
)
AMD_CEK_URL = "https://kdsintf.amd.com/cek/id/{chip_id}"

CHIP_ID_SIZE = 64

_ASK_GENERATIONS = {
    Algorithm.RSA_SHA256: ("naples",),
    Algorithm.RSA_SHA384: ("rome", "milan", "genoa", "turin"),
}


def _ca_hint(gen: str) -> str:
    return (
        f"download ask_ark_{gen}.cert from AMD's SEV developer page on a machine with network "
        f"access and pass it with --ca FILE, or set {KDS_URL_ENV} to a mirror"
    )


def _cek_hint(url: str) -> str:
    return (
        f"download {url} on a machine with network access and pass the file with --cek FILE, "
        f"or set {KDS_URL_ENV} to a mirror (for an emulated platform, the URL that "
        "'sevlaunch platform kds' prints)"
    )


# --- where files come from and go to ------------------------------------------------------


@dataclass(frozen=True)
class KdsSources:
    """URL templates: ``ca`` with ``{gen}`` (tried in order), ``cek`` with ``{chip_id}``."""

    ca: tuple[str, ...]
    cek: str

    @classmethod
    def resolve(
        cls, base_url: str | None = None, environ: Mapping[str, str] | None = None
    ) -> KdsSources:
        """AMD's servers, or the one mirror named by ``base_url`` or ``$SEVLAUNCH_KDS_URL``."""
        env = os.environ if environ is None else environ
        base = base_url or env.get(KDS_URL_ENV)
        if not base:
            return cls(AMD_CA_URLS, AMD_CEK_URL)
        if not base.startswith(("http://", "https://")):
            raise UsageError(f"the key server URL {base!r} must start with http:// or https://")
        base = base.rstrip("/")
        return cls((base + "/ask_ark_{gen}.cert",), base + "/cek/id/{chip_id}")


# --- chip ids ------------------------------------------------------------------------------


def chip_id_hex(chip_id: bytes) -> str:
    """The chip id as AMD's key server names it: 128 uppercase hex digits."""
    if len(chip_id) != CHIP_ID_SIZE:
        raise UsageError(
            f"a chip id is {CHIP_ID_SIZE} bytes (GET_ID output for one socket), got {len(chip_id)}"
        )
    return chip_id.hex().upper()


def parse_chip_id(data: bytes) -> bytes:
    """A chip id from a file: GET_ID's raw bytes, hex text, or base64 (libvirt's ``cpu0-id``).

    The legacy ``SEV_GET_ID`` ioctl returns two 64-byte ids (socket 1, socket 2); the first is
    used.
    """
    if not _is_text(data):
        if len(data) in (CHIP_ID_SIZE, 2 * CHIP_ID_SIZE):
            return data[:CHIP_ID_SIZE]
    else:
        text = data.decode("ascii").strip()
        for decode in (bytes.fromhex, _b64):
            try:
                raw = decode(text)
            except (ValueError, binascii.Error):
                continue
            if len(raw) == CHIP_ID_SIZE:
                return raw
    raise UsageError(
        f"the chip id file holds {len(data)} bytes that are neither GET_ID's raw 64 (or 128) "
        f"bytes nor {2 * CHIP_ID_SIZE} hex digits nor base64 of 64 bytes"
    )


def _is_text(data: bytes) -> bool:
    """Printable ASCII: a random 64-byte id is all printable with odds of about 1e-28."""
    return bool(data) and all(0x20 <= b < 0x7F or b in b"\t\r\n" for b in data)


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- the cache and the client ---------------------------------------------------------------


def check_generation(gen: str) -> str:
    if gen not in GENERATIONS:
        raise UsageError(f"unknown generation {gen!r}: expected one of {', '.join(GENERATIONS)}")
    return gen


@dataclass(frozen=True)
class CachedCa:
    """An AMD CA file on disk, verified to AMD's pinned root of ``generation``."""

    generation: str
    path: Path
    data: bytes
    verified: VerifiedCa


@dataclass(frozen=True)
class CachedCek:
    """An AMD-signed CEK on disk (its ASK signature is checked when a chain is verified)."""

    chip_id: str
    path: Path
    data: bytes
    cek: SevCert


def verify_amd_ca(data: bytes, gen: str) -> VerifiedCa:
    """Parse and verify a CA file; it must end in AMD's pinned root of ``gen``.

    Only AMD's roots count here (never ``--trust-root`` extras): this guards what is cached.
    """
    verified = verify_ca(CaChain.from_bytes(data), TrustStore())
    if verified.root.name != gen:
        raise TrustStoreError(
            f"the file is AMD's {verified.root.name} CA, not the {gen} CA that was asked for"
        )
    return verified


def check_signed_cek(data: bytes) -> SevCert:
    """Parse a CEK from the key server: usage CEK with an ASK signature slot."""
    cek = SevCert.from_bytes(data)
    if cek.usage is not Usage.CEK:
        raise TrustStoreError(f"expected a CEK (usage 0x1004), found {cek.usage.name}")
    if all(sig.usage is not Usage.ASK for sig in cek.signatures):
        raise TrustStoreError("the CEK carries no ASK signature")
    return cek


@dataclass(frozen=True)
class CertCache:
    """The cache directory: ``ca/ask_ark_<gen>.cert`` and ``cek/<CHIP ID>.cert``."""

    root: Path

    @classmethod
    def default(cls) -> CertCache:
        return cls(default_cache_dir())

    def ca_path(self, gen: str) -> Path:
        return self.root / "ca" / f"ask_ark_{check_generation(gen)}.cert"

    def cek_path(self, chip_id: bytes) -> Path:
        return self.root / "cek" / f"{chip_id_hex(chip_id)}.cert"

    def load_ca(self, gen: str) -> CachedCa | None:
        """The cached CA of ``gen`` (verified again now), or None when none is cached."""
        path = self.ca_path(gen)
        data = read_cached(path)
        if data is None:
            return None
        try:
            return CachedCa(gen, path, data, verify_amd_ca(data, gen))
        except SevlaunchError as exc:
            raise TrustStoreError(
                f"the cached file {path} is not AMD's {gen} CA ({exc}); delete it and run "
                f"'sevlaunch owner fetch-ca --gen {gen}'"
            ) from exc

    def load_cek(self, chip_id: bytes) -> CachedCek | None:
        path = self.cek_path(chip_id)
        data = read_cached(path)
        if data is None:
            return None
        try:
            return CachedCek(chip_id_hex(chip_id), path, data, check_signed_cek(data))
        except SevlaunchError as exc:
            raise TrustStoreError(
                f"the cached file {path} is not an AMD-signed CEK ({exc}); delete it and fetch "
                "it again"
            ) from exc


class KdsClient:
    """Downloads AMD's certificates, checks them, and caches what passes."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        cache: CertCache | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        sources: KdsSources | None = None,
    ) -> None:
        """``sources`` (several CA URLs, as AMD's defaults have) wins over ``base_url``."""
        self.sources = sources if sources is not None else KdsSources.resolve(base_url)
        self.cache = cache if cache is not None else CertCache.default()
        self.timeout = timeout

    def ca_urls(self, gen: str) -> tuple[str, ...]:
        return tuple(t.format(gen=check_generation(gen)) for t in self.sources.ca)

    def cek_url(self, chip_id: bytes) -> str:
        return self.sources.cek.format(chip_id=chip_id_hex(chip_id))

    def fetch_ca(self, gen: str) -> CachedCa:
        """Download AMD's CA file of ``gen``, verify it to the pinned root, and cache it."""
        what, hint = f"AMD's {gen} CA file (ASK ‖ ARK)", _ca_hint(gen)
        failures: list[tuple[str, str, int | None]] = []
        for url in self.ca_urls(gen):
            data = self._get(url, what, hint, failures)
            if data is None:
                continue
            try:
                verified = verify_amd_ca(data, gen)
            except SevlaunchError as exc:
                failures.append((url, f"refused, not cached: {exc}", None))
                continue
            path = write_atomic(self.cache.ca_path(gen), data)
            return CachedCa(gen, path, data, verified)
        raise DownloadError(what, tuple(failures), hint)

    def fetch_cek(self, chip_id: bytes) -> CachedCek:
        """Download the AMD-signed CEK of ``chip_id`` and cache it."""
        url = self.cek_url(chip_id)
        what, hint = f"the AMD-signed CEK of chip {chip_id_hex(chip_id)[:16]}…", _cek_hint(url)
        failures: list[tuple[str, str, int | None]] = []
        data = self._get(url, what, hint, failures)
        if data is None:
            raise DownloadError(what, tuple(failures), hint)
        try:
            cek = check_signed_cek(data)
        except SevlaunchError as exc:
            raise DownloadError(what, ((url, f"refused, not cached: {exc}", None),), hint) from exc
        path = write_atomic(self.cache.cek_path(chip_id), data)
        return CachedCek(chip_id_hex(chip_id), path, data, cek)

    def _get(
        self, url: str, what: str, hint: str, failures: list[tuple[str, str, int | None]]
    ) -> bytes | None:
        try:
            return http_get(url, what=what, hint=hint, timeout=self.timeout)
        except DownloadError as exc:
            failures.extend(exc.failures)
            return None


# --- choosing the CA for a chain that does not carry one -------------------------------------


def candidate_generations(cek: SevCert) -> tuple[str, ...]:
    """The generations whose ASK could have signed ``cek``, from its ASK slot's algorithm."""
    gens: list[str] = []
    for sig in cek.signatures:
        if sig.usage is Usage.ASK:
            gens.extend(g for g in _ASK_GENERATIONS.get(sig.algorithm, ()) if g not in gens)
    return tuple(gens)


def ca_for_cek(
    cek: SevCert, cache: CertCache, *, fetch: Callable[[str], CachedCa] | None = None
) -> CachedCa:
    """The cached AMD CA whose ASK signed ``cek``; with ``fetch``, download missing ones.

    Raises :class:`MissingCekSignatureError` for an unsigned CEK, :class:`ChainError` when
    every candidate generation was tried and none signed it, and :class:`TrustStoreError`
    when some could not be tried (not cached, or the download failed).
    """
    gens = candidate_generations(cek)
    if not gens:
        raise MissingCekSignatureError("ASK -> CEK")
    untried: list[str] = []
    problems: list[str] = []
    for gen in gens:
        cached = cache.load_ca(gen)
        if cached is None and fetch is not None:
            try:
                cached = fetch(gen)
            except TrustStoreError as exc:
                problems.append(_problem(gen, exc))
        if cached is None:
            untried.append(gen)
        elif _signs(cached, cek):
            return cached
    if not untried:
        raise ChainError(
            "ASK -> CEK",
            f"the CEK's ASK signature verifies under none of AMD's {', '.join(gens)} ASKs: the "
            "CEK is not one AMD signed",
        )
    raise TrustStoreError(
        _not_found_message(gens, untried, cache, problems, fetched=fetch is not None)
    )


def _problem(gen: str, exc: TrustStoreError) -> str:
    if isinstance(exc, DownloadError):
        return f"{gen}: " + "; ".join(f"{url}: {reason}" for url, reason, _ in exc.failures)
    return f"{gen}: {exc}"


def _signs(cached: CachedCa, cek: SevCert) -> bool:
    try:
        verify_cek(cek, cached.verified.ask)
    except ChainError:
        return False
    return True


def _not_found_message(
    gens: tuple[str, ...],
    untried: list[str],
    cache: CertCache,
    problems: list[str],
    *,
    fetched: bool,
) -> str:
    where = cache.root / "ca"
    if fetched:
        return (
            f"the chain has no ASK and ARK, and AMD's CA file could not be downloaded for "
            f"{', '.join(untried)} ({'; '.join(problems)}); download ask_ark_<gen>.cert from "
            "AMD's SEV developer page on a machine with network access and pass it with --ca FILE"
        )
    tried = [g for g in gens if g not in untried]
    also = f" (the cached {', '.join(tried)} CA did not sign this CEK)" if tried else ""
    return (
        f"the chain has no ASK and ARK, and no AMD CA file for {' or '.join(untried)} is cached "
        f"in {where}{also}: run 'sevlaunch owner fetch-ca --gen GEN' with the platform's "
        f"generation ({', '.join(untried)}), pass AMD's CA file with --ca FILE, or add --fetch "
        "to download it"
    )
