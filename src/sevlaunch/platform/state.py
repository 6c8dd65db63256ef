"""The platform's state directory: one persistent-state file, written atomically, and a lock.

The file holds what survives a reboot of a real part (chip identity, OCA/PEK/PDH keys, owner):
the firmware's own persistent-state bytes, wrapped in an envelope naming the profile and
carrying a SHA-256 so a damaged file is refused instead of silently replaced. Writes go to a
temporary file in the same directory, are fsynced, renamed over the old file and the directory
is fsynced, so a kill -9 at any point leaves either the old or the new state. A lock file
(``flock``) keeps a second service off the same directory; the kernel drops it when the
owner dies, however it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.errors import PlatformError

STATE_FILE = "platform.state"
LOCK_FILE = "lock"
_MAGIC = b"SEVLAUNCH-PLATFORM-STATE\n"
_VERSION = 1
_TMP_PREFIX, _TMP_SUFFIX = f".{STATE_FILE}.", ".tmp"  # what _files.write_atomic leaves on a kill -9


@dataclass(frozen=True)
class StoredState:
    profile: str
    firmware: bytes

    def to_bytes(self) -> bytes:
        name = self.profile.encode()
        body = (
            _MAGIC
            + bytes([_VERSION, len(name)])
            + name
            + len(self.firmware).to_bytes(4, "little")
            + self.firmware
        )
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes, *, path: Path) -> StoredState:
        def bad(reason: str) -> PlatformError:
            return PlatformError(
                f"state file {path} is damaged ({reason}); restore it from a backup or move "
                "it away to start a new platform identity"
            )

        body, digest = data[:-32], data[-32:]
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 2 + 4 + 32:
            raise bad("not a sevlaunch platform state file")
        if hashlib.sha256(body).digest() != digest:
            raise bad("checksum mismatch")
        pos = len(_MAGIC)
        if body[pos] != _VERSION:
            raise bad(f"version {body[pos]}, expected {_VERSION}")
        name_len = body[pos + 1]
        name = body[pos + 2 : pos + 2 + name_len].decode("ascii", "replace")
        pos += 2 + name_len
        size = int.from_bytes(body[pos : pos + 4], "little")
        firmware = body[pos + 4 :]
        if len(firmware) != size:
            raise bad(f"firmware state of {len(firmware)} bytes, header says {size}")
        return cls(name, firmware)


class StateDir:
    """A locked state directory (mode 0700) holding one state file (mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    def lock(self) -> None:
        """Take the directory for this process, or raise if another service holds it."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise PlatformError(
                f"state directory {self.path} is in use by another platform service; stop "
                "it first or give this one another --state directory"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        for leftover in self.path.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)  # a save cut short by a kill; the old state holds

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> StoredState | None:
        try:
            data = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        return StoredState.from_bytes(data, path=self.state_file)

    def save(self, state: StoredState) -> None:
        """Replace the state file atomically and durably, mode 0600."""
        write_atomic(self.state_file, state.to_bytes(), sync_dir=True)
