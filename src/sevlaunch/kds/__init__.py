"""AMD's key servers and the local certificate cache: the IO side of both trust stores.

:mod:`sevlaunch.kds.sev` fetches SEV's CA files and CEKs; :mod:`sevlaunch.kds.snp` fetches
SNP's VCEKs, ``cert_chain`` bundles and CRLs (VCEK and VLEK chains) from
``kdsintf.amd.com``. Nothing is cached before it verifies, and cached files verify again when
loaded. The SEV names are re-exported here, as before the package split.
"""

from sevlaunch.kds._io import (
    CACHE_DIR_ENV,
    CERT_MODE,
    DEFAULT_TIMEOUT,
    KDS_URL_ENV,
    MAX_SIZE,
    default_cache_dir,
    http_get,
    write_atomic,
)
from sevlaunch.kds.sev import (
    AMD_CA_URLS,
    AMD_CEK_URL,
    CHIP_ID_SIZE,
    CachedCa,
    CachedCek,
    CertCache,
    KdsClient,
    KdsSources,
    ca_for_cek,
    candidate_generations,
    check_generation,
    check_signed_cek,
    chip_id_hex,
    parse_chip_id,
    verify_amd_ca,
)

__all__ = [
    "AMD_CA_URLS",
    "AMD_CEK_URL",
    "CACHE_DIR_ENV",
    "CERT_MODE",
    "CHIP_ID_SIZE",
    "DEFAULT_TIMEOUT",
    "KDS_URL_ENV",
    "MAX_SIZE",
    "CachedCa",
    "CachedCek",
    "CertCache",
    "KdsClient",
    "KdsSources",
    "ca_for_cek",
    "candidate_generations",
    "check_generation",
    "check_signed_cek",
    "chip_id_hex",
    "default_cache_dir",
    "http_get",
    "parse_chip_id",
    "verify_amd_ca",
    "write_atomic",
]
