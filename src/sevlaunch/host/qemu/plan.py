"""What a launch is: the argv (binary first), the files to write before it runs, and where the
domain's runtime files live; and the two small encoders every part of the argv uses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from sevlaunch.errors import DomainXMLError

BLOB_MODE = 0o600
SecretResolver = Callable[[uuid.UUID], bytes]


def unsupported(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("unsupported configuration", detail, field=field, value=value)


def esc(text: str) -> str:
    """QEMU's option syntax: a literal comma is written twice (virQEMUBuildBufferEscapeComma)."""
    return text.replace(",", ",,")


def compact_json(obj: Mapping[str, object]) -> str:
    """JSON as libvirt puts it on a command line: compact, keys in libvirt's order."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class LaunchPaths:
    """Where one domain's runtime files live (libvirt's ``priv->libDir`` and friends)."""

    lib_dir: str
    monitor_socket: str
    pidfile: str | None = None
    log_dir: str | None = None  # where pty ports and the implicit console are logged

    def __post_init__(self) -> None:
        for name in ("lib_dir", "monitor_socket", "pidfile", "log_dir"):
            value = getattr(self, name)
            if value is not None and not PurePosixPath(value).is_absolute():
                raise unsupported(
                    f"{name} must be an absolute path, got '{value}'", field=name, value=value
                )


@dataclass(frozen=True, kw_only=True)
class HostSevDefaults:
    """The host's ``cbitpos``/``reduced-phys-bits`` (query-sev-capabilities), used when the
    domain leaves them out, as libvirt's ``qemuProcessUpdateSEVInfo`` does."""

    cbitpos: int
    reduced_phys_bits: int


@dataclass(frozen=True)
class PlannedFile:
    """A file the caller writes (atomically, with ``mode``) before starting QEMU."""

    path: str
    content: bytes
    mode: int = BLOB_MODE


@dataclass(frozen=True, kw_only=True)
class LaunchPlan:
    """The argv to exec (binary first) and the files that must exist before it runs."""

    argv: tuple[str, ...]
    files: tuple[PlannedFile, ...]
    monitor_socket: str
    pidfile: str | None
