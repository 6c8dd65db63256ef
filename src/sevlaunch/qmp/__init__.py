"""The QEMU Machine Protocol, server side: a sans-IO codec and an asyncio server.

Clients use PyPI ``qemu.qmp`` unchanged. This package knows nothing about SEV: the VMM
registers its commands (``query-sev`` ...) on a :class:`QMPServer`.
"""

from sevlaunch.qmp._connection import (
    ALREADY_NEGOTIATED,
    KNOWN_CAPABILITIES,
    NEGOTIATE_FIRST,
    InboundEvent,
    ServerConnection,
)
from sevlaunch.qmp._json import NEED_DATA, JSONValue, NeedData, StreamParser
from sevlaunch.qmp._messages import (
    NO_ID,
    Command,
    ErrorClass,
    ErrorResponse,
    Event,
    Greeting,
    Negotiated,
    NoId,
    Rejected,
    RequestId,
    Return,
    VersionInfo,
    encode,
)
from sevlaunch.qmp._schema import Arg, Schema, check_type, schema, validate
from sevlaunch.qmp.server import CommandSpec, Handler, QMPServer

__all__ = [
    "ALREADY_NEGOTIATED",
    "KNOWN_CAPABILITIES",
    "NEED_DATA",
    "NEGOTIATE_FIRST",
    "NO_ID",
    "Arg",
    "Command",
    "CommandSpec",
    "ErrorClass",
    "ErrorResponse",
    "Event",
    "Greeting",
    "Handler",
    "InboundEvent",
    "JSONValue",
    "NeedData",
    "Negotiated",
    "NoId",
    "QMPServer",
    "Rejected",
    "RequestId",
    "Return",
    "Schema",
    "ServerConnection",
    "StreamParser",
    "VersionInfo",
    "check_type",
    "encode",
    "schema",
    "validate",
]
