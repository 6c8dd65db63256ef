"""A push parser that cuts a byte stream into JSON texts, within limits.

Strategy: the qemu.qmp client sends compact JSON with no separator between messages, and a
socket may split or join them anywhere, so messages are found by scanning: outside strings the
scanner tracks bracket depth, inside strings it only looks for the closing quote or a
backslash. A regex jumps to the next byte that matters, so long strings cost little. Once a
top-level value is complete its bytes go to :func:`json.loads` (after turning QEMU's
single-quoted strings into JSON ones).

Limits, as QEMU's json-streamer has them: a message may hold at most ``max_size`` bytes and
``max_depth`` nested containers. A message over a limit is reported once and then skipped
without being stored (the scanner keeps counting brackets until they balance), so hostile
input costs time linear in its length and memory bounded by ``max_size`` plus one chunk.
Errors carry QEMU's texts ("JSON parse error, ...").
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any, TypeAlias

from sevlaunch.errors import QmpParseError

JSONValue: TypeAlias = (
    Any  # None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]
)

DEFAULT_MAX_SIZE = 1 << 20
DEFAULT_MAX_DEPTH = 64  # QEMU allows 1024; json.loads recursion is safer well below that


class NeedData(enum.Enum):
    """The parser needs more bytes before it can yield anything."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


class _Opened(enum.Enum):
    OPENED = "OPENED"


_OPENED = _Opened.OPENED

_WS = re.compile(rb"[ \t\r\n]*")
_STRUCTURAL = re.compile(rb"[\"'{}\[\]]")
_IN_STRING = {ord('"'): re.compile(rb'[\\"]'), ord("'"): re.compile(rb"[\\']")}
_SCALAR = re.compile(rb"[A-Za-z0-9+\-.]*")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_KEYWORD = re.compile(r"[a-z]+")
_SQ_PIECES = re.compile(r"\\.|\"|[^\\\"]+", re.DOTALL)
_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", re.DOTALL)
_OPEN, _CLOSE = b"{[", b"}]"

_PY_TO_QEMU = {
    "Expecting value": "expecting value",
    "Expecting property name enclosed in double quotes": "key is not a string in object",
    "Expecting ':' delimiter": "missing : in object pair",
    "Expecting ',' delimiter": "expected separator",
    "Invalid \\escape": "invalid escape sequence in string",
    "Invalid \\uXXXX escape": "invalid hex escape sequence in string",
}


def _fail(message: str) -> QmpParseError:
    return QmpParseError(f"JSON parse error, {message}")


class StreamParser:
    """Feed bytes with :meth:`feed`; take values with :meth:`next` until it says NEED_DATA.

    :meth:`next` raises :class:`QmpParseError` for a message it refuses; the parser has
    then skipped that message and can be asked again.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH):
        if max_size < 2 or not 1 <= max_depth <= 512:
            raise ValueError(f"bad limits: max_size={max_size}, max_depth={max_depth}")
        self.max_size = max_size
        self.max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0  # next byte to scan; the current message starts at 0
        self._depth = 0
        self._quote: int | None = None
        self._escape = False
        self._single = False  # the message has a single-quoted string
        self._skipping = False  # the message broke a limit: drop it until brackets balance

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held, for tests of the memory bound."""
        return len(self._buf)

    def next(self) -> JSONValue | NeedData:
        """The next complete top-level value, or NEED_DATA."""
        while True:
            if self._depth == 0 and self._quote is None:
                self._skipping = False
                step = self._start_message()
                if step is not _OPENED:
                    return step
            if self._scan() is NEED_DATA:
                return NEED_DATA
            if self._skipping:
                continue
            if self._pos > self.max_size:
                self._drop(self._pos)
                raise QmpParseError("JSON token size limit exceeded")
            return self._take()

    # -- between messages ------------------------------------------------------------------

    def _start_message(self) -> JSONValue | NeedData | _Opened:
        """Skip whitespace and open a message; a top-level scalar is returned whole."""
        self._pos = _WS.match(self._buf, self._pos).end()  # type: ignore[union-attr]
        self._drop(self._pos)
        if not self._buf:
            return NEED_DATA
        c = self._buf[0]
        if c in _OPEN:
            self._depth, self._pos, self._single = 1, 1, False
            return _OPENED
        if c in b"\"'":
            self._quote, self._pos, self._single = c, 1, c == ord("'")
            return _OPENED
        return self._scalar()

    def _scalar(self) -> JSONValue | NeedData:
        end = _SCALAR.match(self._buf, 0).end()  # type: ignore[union-attr]
        if end == 0:  # a byte that starts no token: QEMU's lexer calls it stray
            text = self._buf[:1].decode("latin-1")
            self._drop(1)
            raise _fail("expecting value" if text in "}],:" else f"stray '{text}'")
        if end == len(self._buf) and end <= self.max_size:
            return NEED_DATA  # the token may continue in the next chunk
        token = self._buf[: min(end, 64)].decode("ascii")
        self._drop(end)
        if end > self.max_size:
            raise QmpParseError("JSON token size limit exceeded")
        if _NUMBER.fullmatch(token):
            return json.loads(token)
        if token in ("true", "false", "null"):
            return json.loads(token)
        if _KEYWORD.fullmatch(token):
            raise _fail(f"invalid keyword '{token}'")
        raise _fail(f"stray '{token}'")

    # -- inside a message ------------------------------------------------------------------

    def _scan(self) -> NeedData | None:
        """Advance to the end of the current message; None once it is complete."""
        while True:
            quote = self._quote
            step = self._scan_string(quote) if quote is not None else self._scan_structure()
            if step is not _OPENED:
                return step

    def _scan_string(self, quote: int) -> NeedData | _Opened | None:
        """Inside a string opened by ``quote``: find its end, stepping over escapes (even
        across chunks)."""
        buf = self._buf
        if self._escape:
            if self._pos >= len(buf):
                return self._need()
            self._escape, self._pos = False, self._pos + 1
        m = _IN_STRING[quote].search(buf, self._pos)
        if m is None:
            return self._need(len(buf))
        self._pos = m.end()
        if buf[m.start()] == ord("\\"):
            self._escape = True
        else:
            self._quote = None
            if self._depth == 0:
                return None
        return _OPENED

    def _scan_structure(self) -> NeedData | _Opened | None:
        """Outside strings: count brackets and enforce the limits."""
        m = _STRUCTURAL.search(self._buf, self._pos)
        if m is None:
            return self._need(len(self._buf))
        c, self._pos = self._buf[m.start()], m.end()
        if c in _OPEN:
            self._depth += 1
            if self._depth > self.max_depth and not self._skipping:
                self._skip()
                raise QmpParseError("JSON nesting depth limit exceeded")
        elif c in _CLOSE:
            self._depth -= 1
            if self._depth == 0:
                return None
        else:
            self._quote = c
            self._single = self._single or c == ord("'")
        if self._pos > self.max_size and not self._skipping:
            self._skip()
            raise QmpParseError("JSON token size limit exceeded")
        return _OPENED

    def _need(self, pos: int | None = None) -> NeedData:
        if pos is not None:
            self._pos = pos
        if self._skipping:
            self._drop(self._pos)
        elif self._pos > self.max_size:
            self._skip()
            raise QmpParseError("JSON token size limit exceeded")
        return NEED_DATA

    def _skip(self) -> None:
        self._skipping = True
        self._drop(self._pos)

    def _drop(self, n: int) -> None:
        if n:
            del self._buf[:n]
            self._pos -= n

    def _take(self) -> JSONValue:
        raw = bytes(self._buf[: self._pos])
        self._drop(self._pos)
        return _loads(raw, self._single)


def _loads(raw: bytes, single_quoted: bool) -> JSONValue:
    """Parse one complete message; every refusal is a QmpParseError with QEMU's wording."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(f"invalid UTF-8 sequence at offset {e.start}") from e
    if single_quoted:
        text = _STRINGS.sub(_requote, text)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise _fail(_PY_TO_QEMU.get(e.msg, e.msg[:1].lower() + e.msg[1:])) from e
    except RecursionError as exc:
        raise QmpParseError("JSON nesting depth limit exceeded") from exc
    except ValueError as e:  # e.g. an integer literal past Python's digit limit
        raise _fail(f"invalid number: {str(e)[:80]}") from e


def _requote(m: re.Match[str]) -> str:
    """Turn a QEMU single-quoted string into a JSON double-quoted one."""
    s = m.group(0)
    if s[0] == '"':
        return s
    out = []
    for piece in _SQ_PIECES.findall(s[1:-1]):
        out.append("'" if piece == "\\'" else '\\"' if piece == '"' else piece)
    return '"' + "".join(out) + '"'


def _no_constant(name: str) -> None:
    raise _fail(f"invalid keyword '{name}'")
