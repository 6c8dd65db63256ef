"""QMP messages, both directions, and their wire form (qmp-spec, "Protocol Specification").

Inbound, :class:`~sevlaunch.qmp.ServerConnection` yields :class:`Command` (a request the
application must answer), :class:`Rejected` (a request refused by the protocol layer, with
the error to send) and :class:`Negotiated` (capabilities negotiation succeeded). Outbound,
the application hands :class:`Greeting`, :class:`Return`, :class:`ErrorResponse` and
:class:`Event` to ``send``.

The wire form copies QEMU's: compact JSON with ``", "`` and ``": "`` separators, ASCII only
(``\\uXXXX`` in upper case, DEL escaped too), members in QEMU's order (``return`` before
``id``; ``id`` before ``error``; ``timestamp`` before ``event`` before ``data``), CRLF at
the end. Don't subclass these.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from sevlaunch.qmp._json import JSONValue


class NoId(enum.Enum):
    """The request carried no ``id`` member (distinct from ``"id": null``)."""

    NO_ID = "NO_ID"


NO_ID = NoId.NO_ID
RequestId: TypeAlias = JSONValue | NoId


class ErrorClass(enum.StrEnum):
    """QEMU's QapiErrorClass values; everything SEV-related is GenericError."""

    GENERIC_ERROR = "GenericError"
    COMMAND_NOT_FOUND = "CommandNotFound"
    DEVICE_NOT_ACTIVE = "DeviceNotActive"
    DEVICE_NOT_FOUND = "DeviceNotFound"
    KVM_MISSING_CAP = "KVMMissingCap"


@dataclass(frozen=True)
class VersionInfo:
    """``query-version``'s answer: QEMU's version triple and package string."""

    major: int
    minor: int
    micro: int
    package: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "qemu": {"micro": self.micro, "minor": self.minor, "major": self.major},
            "package": self.package,
        }


# -- inbound ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A well-formed request, after negotiation, for the application to execute."""

    name: str
    arguments: Mapping[str, JSONValue] = field(default_factory=dict)
    id: RequestId = NO_ID
    oob: bool = False


@dataclass(frozen=True)
class Rejected:
    """A request the protocol layer refused; send :meth:`response`."""

    error_class: str
    desc: str
    id: RequestId = NO_ID

    def response(self) -> ErrorResponse:
        return ErrorResponse(self.error_class, self.desc, self.id)


@dataclass(frozen=True)
class Negotiated:
    """``qmp_capabilities`` succeeded; the connection is now in command mode."""

    capabilities: tuple[str, ...]
    id: RequestId = NO_ID

    def response(self) -> Return:
        return Return({}, self.id)


# -- outbound -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Greeting:
    version: VersionInfo
    capabilities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"QMP": {"version": self.version.to_json(), "capabilities": list(self.capabilities)}}


@dataclass(frozen=True)
class Return:
    """A success response; ``value`` is any JSON-serialisable value (``{}`` for none)."""

    value: object
    id: RequestId = NO_ID

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"return": self.value}
        if self.id is not NO_ID:
            out["id"] = self.id
        return out


@dataclass(frozen=True)
class ErrorResponse:
    error_class: str
    desc: str
    id: RequestId = NO_ID

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.id is NO_ID else {"id": self.id}
        out["error"] = {"class": self.error_class, "desc": self.desc}
        return out


@dataclass(frozen=True)
class Event:
    """An asynchronous event; the time comes in as a parameter (QEMU: gettimeofday)."""

    name: str
    seconds: int
    microseconds: int
    data: Mapping[str, object] | None = None

    @classmethod
    def at(cls, name: str, when: float, data: Mapping[str, object] | None = None) -> Event:
        """An event stamped with ``when`` (seconds since the epoch, e.g. ``time.time()``)."""
        usec = round(when * 1_000_000)
        return cls(name, usec // 1_000_000, usec % 1_000_000, data)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "timestamp": {"seconds": self.seconds, "microseconds": self.microseconds},
            "event": self.name,
        }
        if self.data is not None:
            out["data"] = dict(self.data)
        return out


Outbound: TypeAlias = Greeting | Return | ErrorResponse | Event

_ESCAPES = re.compile(r"(\\\\)|\\u([0-9a-f]{4})|\x7f")


def _qemu_escape(m: re.Match[str]) -> str:
    if m.group(1):
        return m.group(1)
    if m.group(2):
        return "\\u" + m.group(2).upper()
    return "\\u007F"


def encode(message: Outbound) -> bytes:
    """One message as QEMU writes it: JSON, ASCII, CRLF-terminated."""
    text = json.dumps(message.to_json(), ensure_ascii=True, separators=(", ", ": "))
    return _ESCAPES.sub(_qemu_escape, text).encode("ascii") + b"\r\n"
