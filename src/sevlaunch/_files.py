"""Writing files that hold keys, secrets, launch blobs or state: one way, done right; and
reading key and token files only when they are private.

The data goes to a temporary file in the target's directory, created readable by its owner
only (``mkstemp``), is fsynced, given its final mode and renamed over the target; with
``sync_dir`` the directory entry is fsynced too. A file that dies with its run (a guest's
launch blobs, rewritten in a fresh directory at every start, as libvirt writes them) is
written with ``durable=False``: atomic and private, but not flushed to the disk, so a start
does not wait on the disk inside the host's event loop. A reader sees the old file or the whole new
one, a kill -9 at any point leaves one of them, and a secret is never readable by others,
not even for an instant.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sevlaunch.errors import UnprotectedFileError, UsageError

PRIVATE = 0o600


def write_atomic(
    path: Path, data: bytes, mode: int = PRIVATE, *, sync_dir: bool = False, durable: bool = True
) -> Path:
    """Replace ``path`` with ``data`` atomically; the file ends with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def read_private(path: str | Path, what: str) -> bytes:
    """The bytes of a key or token file that only its owner may read or write.

    A file open to group or others is refused, as ssh refuses such a private key: whoever
    else can read it holds the secret. The mode is checked on the open file (no race).
    """
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & 0o077:
                raise UnprotectedFileError(str(path), what, mode & 0o7777)
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def lock_directory(path: Path, what: str) -> int:
    """Take ``path`` for this process (an exclusive ``flock`` on ``path/lock``, which holds
    our pid) or refuse: two servers on one state would each think its guests are its own.
    The lock lasts as long as the returned descriptor (the process, for a server)."""
    import fcntl

    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise UsageError(
            f"state directory {path} is in use by another {what}"
            + (f" (pid {holder})" if holder.isdigit() else "")
            + "; stop it first or give this one another --state directory"
        ) from exc
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def default_run_dir() -> Path:
    """Where the services' default sockets live (RUNDIR): ``$XDG_RUNTIME_DIR/sevlaunch`` when
    set, else ``/run/sevlaunch`` for root, else ``/tmp/sevlaunch-UID`` (made 0700 and checked
    to be ours by the server that binds there). Servers, clients and the emulated hypervisor
    all look here, so one platform started with its defaults is found by all of them."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "sevlaunch"
    if os.geteuid() == 0:
        return Path("/run/sevlaunch")
    return Path(f"/tmp/sevlaunch-{os.geteuid()}")  # noqa: S108 (made 0700 and checked: serve)


def socket_directory(path: Path) -> None:
    """Make a socket's missing directory (such as the default RUNDIR), private to us."""
    if not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise UsageError(f"cannot make {path.parent} for unix:{path}: {exc.strerror}") from exc
