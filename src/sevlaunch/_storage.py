"""Storage faults, named: a full or read-only disk is the operator's to fix, not a crash.

:func:`fault` recognises one in any exception chain (``OSError``, sqlite3's and psycopg's
errors, SQLAlchemy's wrappers of them); the services answer it with a JSON 503 naming the
cause and stay up. :func:`require_writable` is each service's start-time check, so a
read-only state directory gives one line naming the path, not a traceback.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sevlaunch.errors import StorageError

FULL = "storage-full"
READ_ONLY = "storage-read-only"
IO_ERROR = "storage-io-error"
_ERRNO = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EROFS: READ_ONLY, errno.EIO: IO_ERROR}
_SQLSTATE = {"53100": FULL, "25006": READ_ONLY}  # PostgreSQL disk_full, read_only_sql_transaction


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        todo += [
            item.__cause__,
            item.__context__,
            orig if isinstance(orig, BaseException) else None,
        ]
    return seen


def _one(exc: BaseException) -> str | None:
    if isinstance(exc, StorageError):
        return exc.reason
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    name = getattr(exc, "sqlite_errorname", None)  # sqlite3.Error, Python >= 3.11
    if isinstance(name, str):
        if name.startswith("SQLITE_FULL"):
            return FULL
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            return READ_ONLY
        if name.startswith("SQLITE_IOERR"):
            return IO_ERROR
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg.Error
    return _SQLSTATE.get(sqlstate) if isinstance(sqlstate, str) else None


def fault(exc: BaseException) -> str | None:
    """``storage-full``, ``storage-read-only`` or ``storage-io-error`` if ``exc`` is one."""
    for item in _chain(exc):
        found = _one(item)
        if found is not None:
            return found
    return None


def describe(reason: str) -> str:
    """What the operator reads in the 503's detail."""
    cause = {
        FULL: "the file system holding the service's state is full",
        READ_ONLY: "the file system holding the service's state is read-only",
        IO_ERROR: "the service's state could not be written (I/O error)",
    }[reason]
    return f"{cause}; reads still work and writes resume once it is fixed"


def require_writable(directory: str | Path, what: str) -> Path:
    """Create ``directory`` (0700) if needed and prove a file can be made in it; otherwise a
    :class:`StorageError` whose message names the path and why."""
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".writable.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = _ERRNO.get(exc.errno or 0, READ_ONLY)
        named = exc.filename if isinstance(exc.filename, str) else ""
        where = str(path) if not named or Path(named).parent == path else named
        raise StorageError(
            reason, f"the {what} {where} is not writable: {exc.strerror or exc}", path=where
        ) from exc
    return path
