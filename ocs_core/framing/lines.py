"""The tab-separated line protocol of instrument servers, sans-IO: bytes in, events out.

Wire format (UTF-8, one message per line, ``\\n`` ends a line, a ``\\r`` before it is dropped)::

    request:  CMD \\t ARG1 \\t ARG2 ... \\n
    reply:    1 \\t DATA \\n          (success; DATA may be empty: ``1\\t\\n``)
              0 \\t ERROR MESSAGE \\n (failure)

Requests are not escaped: an argument cannot contain a tab, CR or LF, and
:func:`encode_request` refuses one (``ValueError``). Reply data is a list of fields joined by
tabs; inside a field a backslash, tab, LF or CR is escaped as ``\\\\``, ``\\t``, ``\\n``, ``\\r``
(:func:`escape`), so a reply is always one line and a raw client reading a plain number or word
sees it unchanged. :class:`ReplyParser` undoes the escapes per field.

Every line is bounded: a line longer than ``max_line`` bytes (not counting its line ending) yields
one :class:`FramingError` as soon as the limit is passed, the rest of that line is discarded
without being buffered, and parsing resumes after its newline. Each input line yields exactly one
event, so a server that answers every event keeps its replies in step with the requests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

DEFAULT_MAX_REQUEST = 4096
"""Default longest request line in bytes."""
DEFAULT_MAX_REPLY = 65536
"""Default longest reply line in bytes."""

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_FORBIDDEN_IN_ARGS = ("\t", "\n", "\r")


@dataclass(frozen=True)
class Request:
    """One request line: a command name and its string arguments."""

    command: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """One reply line: success flag and its (unescaped) data fields."""

    ok: bool
    fields: tuple[str, ...] = ()

    @property
    def data(self) -> str:
        """The fields joined by tabs: the whole data of a one-field reply."""
        return "\t".join(self.fields)


@dataclass(frozen=True)
class FramingError:
    """A line that could not be read (too long, not UTF-8, empty, malformed)."""

    message: str


RequestEvent = Union[Request, FramingError]
ReplyEvent = Union[Reply, FramingError]


def escape(field: str) -> str:
    """Escape backslash, tab, LF and CR so that ``field`` fits in one reply field."""
    if not any(ch in field for ch in _ESCAPES):
        return field
    return "".join(_ESCAPES.get(ch, ch) for ch in field)


def unescape(field: str) -> str:
    """Undo :func:`escape`; an unknown or trailing backslash sequence is kept as it is."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field) and field[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[field[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def encode_request(command: str, *args: object) -> bytes:
    """Encode one request line.

    Args:
        command: the command name (non-empty, no whitespace control characters).
        *args: arguments; each is converted with ``str()``.

    Raises:
        ValueError: the command is empty, or the command or an argument holds a tab, CR or LF.
    """
    if not command:
        raise ValueError("command name is empty")
    parts = [command, *(str(a) for a in args)]
    for i, part in enumerate(parts):
        for ch in _FORBIDDEN_IN_ARGS:
            if ch in part:
                what = "command name" if i == 0 else f"argument {i}"
                raise ValueError(f"{what} {part!r} contains {ch!r}; requests cannot carry tabs or line breaks")
    return ("\t".join(parts) + "\n").encode("utf-8")


def encode_reply(ok: bool, *fields: object) -> bytes:
    """Encode one reply line: ``1`` or ``0``, then the escaped fields joined by tabs.

    ``None`` becomes an empty field; other values are converted with ``str()``.
    """
    text = "\t".join(escape("" if f is None else str(f)) for f in fields)
    return (("1\t" if ok else "0\t") + text + "\n").encode("utf-8")


def encode_ok(*fields: object) -> bytes:
    """Encode a success reply (``1\\t...``)."""
    return encode_reply(True, *fields)


def encode_error(message: str) -> bytes:
    """Encode a failure reply (``0\\t<message>``)."""
    return encode_reply(False, message)


class LineSplitter:
    """Split a byte stream into bounded lines.

    :meth:`feed` returns, in order, each complete line as ``bytes`` (line ending removed) or a
    :class:`FramingError` for a line that passed ``max_line``. At most ``max_line`` bytes are
    ever buffered.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_REQUEST) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be positive, got {max_line}")
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line: drop bytes up to its newline

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        """Consume ``data`` and return the lines (or errors) it completes."""
        out: list[bytes | FramingError] = []
        start, n = 0, len(data)
        while start < n:
            nl = data.find(b"\n", start)
            end = n if nl < 0 else nl
            if self._skipping:
                if nl < 0:
                    break
                self._skipping = False
                start = nl + 1
                continue
            # one byte of slack: a CR that may belong to a CRLF ending
            if len(self._buffer) + (end - start) > self.max_line + 1:
                out.append(self._overlong())
                self._buffer.clear()
                self._skipping = nl < 0
                start = end if nl < 0 else nl + 1
                continue
            self._buffer += data[start:end]
            if nl < 0:
                break
            line = bytes(self._buffer)
            self._buffer.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            out.append(line if len(line) <= self.max_line else self._overlong())
            start = nl + 1
        return out

    def _overlong(self) -> FramingError:
        return FramingError(f"line longer than {self.max_line} bytes; discarded")


class RequestParser:
    """Parse request lines: :meth:`feed` returns :class:`Request` or :class:`FramingError` events."""

    def __init__(self, max_line: int = DEFAULT_MAX_REQUEST) -> None:
        self._lines = LineSplitter(max_line)

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line."""
        return self._lines.buffered

    def feed(self, data: bytes) -> list[RequestEvent]:
        """Consume ``data`` and return one event per line it completes."""
        return [parse_request_line(item) if isinstance(item, bytes) else item
                for item in self._lines.feed(data)]


class ReplyParser:
    """Parse reply lines: :meth:`feed` returns :class:`Reply` or :class:`FramingError` events."""

    def __init__(self, max_line: int = DEFAULT_MAX_REPLY) -> None:
        self._lines = LineSplitter(max_line)

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line."""
        return self._lines.buffered

    def feed(self, data: bytes) -> list[ReplyEvent]:
        """Consume ``data`` and return one event per line it completes."""
        return [parse_reply_line(item) if isinstance(item, bytes) else item
                for item in self._lines.feed(data)]


def _decode(line: bytes) -> str | FramingError:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FramingError(f"line is not valid UTF-8 (byte {exc.start})")


def parse_request_line(line: bytes) -> RequestEvent:
    """Parse one request line (without its line ending)."""
    text = _decode(line)
    if isinstance(text, FramingError):
        return text
    if not text.strip():
        return FramingError("empty request line; expected a command name, then tab-separated arguments")
    command, *args = text.split("\t")
    command = command.strip()
    if not command:
        shown = text if len(text) <= 60 else text[:60] + "..."
        return FramingError(f"request {shown!r} has no command name before its first tab")
    return Request(command, tuple(args))


def parse_reply_line(line: bytes) -> ReplyEvent:
    """Parse one reply line (without its line ending); a bare ``1`` or ``0`` is accepted."""
    text = _decode(line)
    if isinstance(text, FramingError):
        return text
    status, sep, rest = text.partition("\t")
    if status not in ("0", "1"):
        shown = text if len(text) <= 60 else text[:60] + "..."
        return FramingError(f"reply {shown!r} does not start with 1 or 0 and a tab")
    fields = tuple(unescape(f) for f in rest.split("\t")) if sep and rest else ()
    return Reply(status == "1", fields)

