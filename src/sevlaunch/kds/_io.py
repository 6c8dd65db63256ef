"""The IO shared by the SEV and SNP sides of :mod:`sevlaunch.kds`: bounded HTTP GETs (with
HTTP 429 honoured where a caller asks for retries), the cache directory and atomic writes."""

from __future__ import annotations

import email.utils
import http.client
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from sevlaunch import __version__, _files
from sevlaunch.errors import DownloadError, TrustStoreError

KDS_URL_ENV = "SEVLAUNCH_KDS_URL"
CACHE_DIR_ENV = "SEVLAUNCH_CACHE_DIR"
MAX_SIZE = 64 * 1024
DEFAULT_TIMEOUT = 10.0
CERT_MODE = 0o644
MAX_RETRY_WAIT = 60.0


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SEVLAUNCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/sevlaunch``, else ``~/.cache/sevlaunch``."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_DIR_ENV):
        return Path(env[CACHE_DIR_ENV])
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "sevlaunch"
    return Path.home() / ".cache" / "sevlaunch"


def write_atomic(path: Path, data: bytes, mode: int = CERT_MODE) -> Path:
    """Write ``data`` so that readers see the old file or the whole new one, never a part."""
    try:
        return _files.write_atomic(path, data, mode)
    except OSError as exc:
        raise TrustStoreError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable place "
            f"(for the cache, set {CACHE_DIR_ENV})"
        ) from exc


def read_cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustStoreError(f"cannot read the cached file {path}: {exc.strerror}") from exc


# --- HTTP ----------------------------------------------------------------------------------


def http_get(
    url: str,
    *,
    what: str,
    hint: str,
    timeout: float,
    max_size: int = MAX_SIZE,
    retries: int = 0,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_RETRY_WAIT,
) -> bytes:
    """GET ``url``; each attempt (name lookup included) must end within ``timeout``.

    A daemon thread carries the request because socket timeouts bound each read, not the
    total, and do not bound the name lookup at all. With ``retries``, an HTTP 429 (AMD's KDS
    throttles) is retried after its Retry-After (seconds or a date, capped at ``max_wait``)
    or, without one, after 1, 2, 4… seconds; every attempt is listed in the error.
    """
    failures: list[tuple[str, str, int | None]] = []
    for attempt in range(retries + 1):
        result = _attempt(url, timeout, max_size)
        if isinstance(result, bytes):
            return result
        failures.append((url, result.reason, result.status))
        if result.status != 429 or attempt == retries:
            break
        sleep(retry_delay(result.retry_after, attempt, max_wait))
    raise DownloadError(what, tuple(failures), hint)


def retry_delay(retry_after: str | None, attempt: int, max_wait: float) -> float:
    """Seconds to wait before retrying a 429: the server's Retry-After, else backoff."""
    delay = float(2**attempt)
    if retry_after:
        text = retry_after.strip()
        if text.isdigit():
            delay = float(text)
        else:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                pass
            else:
                delay = max(0.0, when.timestamp() - time.time())
    return min(delay, max_wait)


def _attempt(url: str, timeout: float, max_size: int) -> bytes | _GetFailedError:
    box: list[bytes | _GetFailedError] = []

    def run() -> None:
        try:
            box.append(_get(url, timeout, max_size))
        except _GetFailedError as exc:
            box.append(exc)

    worker = threading.Thread(target=run, name=f"sevlaunch-get {url}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return _GetFailedError(f"no complete answer within {timeout:g} s")
    return box[0]


class _GetFailedError(TrustStoreError):
    """One failed GET: its reason, HTTP status and Retry-After (stays inside this module;
    callers see the DownloadError that lists every attempt)."""

    def __init__(
        self, reason: str, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def _get(url: str, timeout: float, max_size: int) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise _GetFailedError("only http:// and https:// URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": f"sevlaunch/{__version__}"})  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_size:
                raise _GetFailedError(
                    f"the answer is {length} bytes, more than the {max_size} bytes allowed"
                )
            return _read_limited(response, max_size)
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        exc.close()
        raise _GetFailedError(_status_reason(exc.code, exc.reason), exc.code, retry_after) from exc
    except urllib.error.URLError as exc:
        raise _GetFailedError(f"cannot connect: {_os_reason(exc.reason)} (offline?)") from exc
    except TimeoutError as exc:
        raise _GetFailedError(f"no answer within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _GetFailedError(f"transfer failed: {_os_reason(exc)}") from exc


def _read_limited(response: http.client.HTTPResponse, max_size: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(max_size + 1 - total):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_size:
            raise _GetFailedError(f"the answer is larger than the {max_size} bytes allowed")
    return b"".join(chunks)


def _status_reason(code: int, reason: object) -> str:
    text = f"HTTP {code} {reason}".rstrip()
    if code == 404:
        return text + " (no such file: check the generation or chip id)"
    if code == 429:
        return text + " (AMD's key server limits request rates: wait a minute and retry)"
    return text


def _os_reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
