"""The server side of a QMP connection as a sans-IO state machine (h11 style).

Theory of operation: bytes from the peer go in with :meth:`ServerConnection.receive_data`;
:meth:`~ServerConnection.next_event` turns them into :class:`Command`, :class:`Rejected` or
:class:`Negotiated` until it answers NEED_DATA; whatever the application wants to say goes
through :meth:`~ServerConnection.send`, which returns the bytes to write. No sockets here.

Everything QMP itself decides lives here, so an application only ever sees commands it
registered: the request-object checks of ``qmp_dispatch_check_obj``, the capabilities
negotiation gate (QEMU's monitor starts with a command table holding only
``qmp_capabilities``) and the refusal of a second negotiation. Rules:

1. Before negotiation only ``qmp_capabilities`` is accepted; any other command is
   CommandNotFound with the text "Expecting capabilities negotiation with 'qmp_capabilities'"
   and no events are delivered.
2. After it, ``qmp_capabilities`` is CommandNotFound "Capabilities negotiation is already
   complete, command ignored".
3. ``exec-oob`` is a known member only once the client enabled the ``oob`` capability.
4. A response echoes the request's ``id`` verbatim; parse errors have no ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sevlaunch.errors import QmpCommandError, QmpParseError
from sevlaunch.qmp._json import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_SIZE,
    NEED_DATA,
    JSONValue,
    NeedData,
    StreamParser,
)
from sevlaunch.qmp._messages import (
    NO_ID,
    Command,
    ErrorClass,
    ErrorResponse,
    Event,
    Greeting,
    Negotiated,
    Outbound,
    Rejected,
    RequestId,
    VersionInfo,
    encode,
)
from sevlaunch.qmp._schema import check_type

KNOWN_CAPABILITIES = ("oob",)  # QEMU's QMPCapability enum
NEGOTIATE_FIRST = "Expecting capabilities negotiation with 'qmp_capabilities'"
ALREADY_NEGOTIATED = "Capabilities negotiation is already complete, command ignored"

InboundEvent = Command | Rejected | Negotiated


class ServerConnection:
    """One QMP client, seen from the server."""

    def __init__(
        self,
        version: VersionInfo,
        *,
        capabilities: Sequence[str] = (),
        max_message_size: int = DEFAULT_MAX_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        unknown = set(capabilities) - set(KNOWN_CAPABILITIES)
        if unknown:
            raise ValueError(
                f"unknown QMP capabilities {sorted(unknown)}; known: {KNOWN_CAPABILITIES}"
            )
        self.version = version
        self.offered = tuple(capabilities)
        self.enabled: frozenset[str] = frozenset()
        self.negotiated = False
        self._parser = StreamParser(max_size=max_message_size, max_depth=max_depth)

    def greeting(self) -> bytes:
        """The greeting QEMU sends as soon as a client connects."""
        return self.send(Greeting(self.version, self.offered))

    def receive_data(self, data: bytes) -> None:
        self._parser.feed(data)

    def next_event(self) -> InboundEvent | NeedData:
        try:
            request = self._parser.next()
        except QmpParseError as e:
            return Rejected(ErrorClass.GENERIC_ERROR, e.desc)
        if request is NEED_DATA:
            return NEED_DATA
        return self._dispatch(request)

    def send(self, message: Outbound) -> bytes:
        """The bytes for ``message``; events are withheld (b"") until negotiation."""
        if isinstance(message, Event) and not self.negotiated:
            return b""
        if (
            isinstance(message, ErrorResponse)
            and not self.negotiated
            and message.error_class == ErrorClass.COMMAND_NOT_FOUND
        ):
            message = ErrorResponse(message.error_class, NEGOTIATE_FIRST, message.id)
        return encode(message)

    # -- request checks -----------------------------------------------------------------

    def _dispatch(self, request: JSONValue) -> InboundEvent:
        if not isinstance(request, dict):
            return Rejected(ErrorClass.GENERIC_ERROR, "QMP input must be a JSON object")
        rid: RequestId = request.get("id", NO_ID)
        try:
            name, arguments, oob = self._check_obj(request)
            if name == "qmp_capabilities":
                return self._negotiate(arguments, rid)
        except QmpCommandError as e:
            return Rejected(e.error_class, e.desc, rid)
        if not self.negotiated:
            return Rejected(ErrorClass.COMMAND_NOT_FOUND, NEGOTIATE_FIRST, rid)
        return Command(name, arguments, rid, oob)

    def _negotiate(self, arguments: Mapping[str, JSONValue], rid: RequestId) -> InboundEvent:
        if self.negotiated:
            return Rejected(ErrorClass.COMMAND_NOT_FOUND, ALREADY_NEGOTIATED, rid)
        self.enabled = self._accept_capabilities(arguments)
        self.negotiated = True
        return Negotiated(tuple(sorted(self.enabled)), rid)

    def _check_obj(
        self, request: Mapping[str, JSONValue]
    ) -> tuple[str, dict[str, JSONValue], bool]:
        """qmp_dispatch_check_obj: members, their types, exactly one of execute/exec-oob."""
        exec_key: str | None = None
        for key, value in request.items():
            if key == "execute" or (key == "exec-oob" and "oob" in self.enabled):
                if not isinstance(value, str):
                    raise QmpCommandError(f"QMP input member '{key}' must be a string")
                if exec_key is not None:
                    raise QmpCommandError(f"QMP input member '{key}' clashes with '{exec_key}'")
                exec_key = key
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise QmpCommandError("QMP input member 'arguments' must be an object")
            elif key != "id":
                raise QmpCommandError(f"QMP input member '{key}' is unexpected")
        if exec_key is None:
            raise QmpCommandError("QMP input lacks member 'execute'")
        return request[exec_key], dict(request.get("arguments", {})), exec_key == "exec-oob"

    def _accept_capabilities(self, arguments: Mapping[str, JSONValue]) -> frozenset[str]:
        """``qmp_capabilities {"enable": [QMPCapability...]}`` (QEMU qmp_caps_accept)."""
        enable = check_type("enable", "array", arguments.get("enable", []))
        for name in arguments:
            if name != "enable":
                raise QmpCommandError(f"Parameter '{name}' is unexpected")
        for i, cap in enumerate(enable):
            check_type(f"enable[{i}]", "str", cap)
            if cap not in KNOWN_CAPABILITIES:
                raise QmpCommandError(f"Parameter 'enable[{i}]' does not accept value '{cap}'")
            if cap not in self.offered:
                raise QmpCommandError(f"Capability '{cap}' not available")
        return frozenset(enable)
