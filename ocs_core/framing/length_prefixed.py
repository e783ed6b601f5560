"""Sans-IO parser and encoder for optbayesexpt's framing: a 10-digit byte count, then UTF-8 JSON.

Wire format (both directions)::

    dddddddddd<body>

``dddddddddd`` is the body length in bytes as exactly ten zero-padded ASCII decimal digits, and
``<body>`` is UTF-8 JSON. :func:`encode` writes bodies as ``json.dumps`` does by default
(separators ``", "`` and ``": "``, ``ensure_ascii``), so ``encode("OK") == b'0000000004"OK"'``,
and it never writes ``NaN`` or ``Infinity``: non-finite floats become ``null``.

:class:`FrameParser` is fed bytes in arbitrary fragments and yields events, in order:

* :class:`Message` -- one decoded JSON value;
* :class:`BadFrame` -- a protocol error with a human-readable ``reason``.

Resynchronisation rules:

* A bad **prefix** (any of the first ten bytes is not an ASCII digit; detected as soon as the
  offending byte arrives) or a declared length above ``max_body`` (refused as soon as the ten digits
  are in, before any of the body is read) is *fatal*: there is no way to find the next frame, so
  the event has ``fatal=True``, the parser discards everything after it, and the owner should reply
  with the error and close the connection.
* A bad **body** behind a valid prefix (invalid UTF-8, invalid JSON, ``NaN``/``Infinity`` tokens,
  numbers that overflow to infinity, nesting too deep) is *not* fatal: exactly the declared number
  of bytes is skipped, and the next frame is parsed normally.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "PREFIX_LENGTH", "DEFAULT_MAX_BODY", "MAX_ENCODABLE", "Message", "BadFrame", "Event",
    "FrameParser", "encode", "encode_body", "to_jsonable", "decode_body",
]

PREFIX_LENGTH = 10
"""Number of ASCII digits in the length prefix."""

DEFAULT_MAX_BODY = 1 << 20
"""Default largest body (bytes) a parser accepts: 1 MiB, ample for any request."""

MAX_ENCODABLE = 10**PREFIX_LENGTH - 1
"""Largest body length that ten digits can express."""


@dataclass(frozen=True)
class Message:
    """A complete frame whose body decoded to a JSON value."""

    value: Any


@dataclass(frozen=True)
class BadFrame:
    """A protocol error; ``fatal`` means the stream cannot be resynchronised."""

    reason: str
    fatal: bool = False


Event = Union[Message, BadFrame]


class _BodyError(ValueError):
    """Raised inside JSON decoding for tokens we refuse."""


def _refuse_constant(token: str) -> Any:
    raise _BodyError(f"non-finite number {token} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BodyError(f"number {text[:40]} overflows to infinity")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def decode_body(body: bytes) -> Any:
    """Decode one frame body as strict UTF-8 JSON without NaN or infinities.

    Args:
        body: the bytes after the prefix.

    Returns:
        The decoded JSON value.

    Raises:
        ValueError: with a message saying what was wrong.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return _DECODER.decode(text)
    except _BodyError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise ValueError("invalid JSON: nesting too deep") from None
    except ValueError as exc:  # e.g. integers with more digits than Python converts
        raise ValueError(f"invalid JSON: {exc}") from None


class FrameParser:
    """Incremental parser: feed bytes, take events.

    Args:
        max_body: the largest declared body length accepted; larger ones are a fatal error.

    Use :meth:`receive` to feed and drain in one call, or :meth:`feed` plus :meth:`next_event`
    to pull events one at a time (for back-pressure: unparsed bytes stay buffered).
    """

    def __init__(self, max_body: int = DEFAULT_MAX_BODY) -> None:
        if not 0 <= max_body <= MAX_ENCODABLE:
            raise ValueError(f"max_body must be in 0..{MAX_ENCODABLE}, got {max_body!r}")
        self.max_body = max_body
        self._buffer = bytearray()
        self._body_length: int | None = None  # None while reading a prefix
        self._broken = False

    @property
    def broken(self) -> bool:
        """True after a fatal error: further input is ignored."""
        return self._broken

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed by an event."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes (any fragment size); ignored once the parser is broken."""
        if not self._broken:
            self._buffer += data

    def next_event(self) -> Event | None:
        """Return the next event, or None when more bytes are needed (or the stream is broken)."""
        if self._broken:
            return None
        buf = self._buffer
        if self._body_length is None:
            head = bytes(buf[:PREFIX_LENGTH])
            if not head.isdigit() and head:
                return self._fail(f"bad length prefix {head!r}: expected {PREFIX_LENGTH} ASCII digits")
            if len(head) < PREFIX_LENGTH:
                return None
            length = int(head)
            if length > self.max_body:
                return self._fail(f"declared length {length} exceeds the limit of {self.max_body} bytes")
            del buf[:PREFIX_LENGTH]
            self._body_length = length
        length = self._body_length
        if len(buf) < length:
            return None
        body = bytes(buf[:length])
        del buf[:length]
        self._body_length = None
        try:
            return Message(decode_body(body))
        except ValueError as exc:
            return BadFrame(str(exc), fatal=False)

    def events(self) -> Iterator[Event]:
        """Yield every event that the bytes fed so far complete."""
        while (event := self.next_event()) is not None:
            yield event

    def receive(self, data: bytes) -> list[Event]:
        """Feed ``data`` and return every event it completes."""
        self.feed(data)
        return list(self.events())

    def _fail(self, reason: str) -> BadFrame:
        self._broken = True
        self._buffer.clear()
        self._body_length = None
        return BadFrame(reason, fatal=True)


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types: NaN/inf become None, numpy values become lists/numbers.

    Anything with a ``tolist()`` method (numpy arrays and scalars) is converted through it;
    tuples become lists; dict keys must be strings.

    Raises:
        TypeError: for objects JSON cannot represent.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
            out[key] = to_jsonable(value)
        return out
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        converted = tolist()
        if converted is obj:
            raise TypeError(f"cannot convert {type(obj).__name__} to JSON")
        if _plain_numeric(obj):  # fast path: no NaN/inf inside, tolist() gave plain numbers
            return converted
        return to_jsonable(converted)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _plain_numeric(obj: Any) -> bool:
    """True for a numpy array/scalar of bools, integers, or finite floats (no walk needed)."""
    kind = getattr(getattr(obj, "dtype", None), "kind", None)
    if kind in ("b", "i", "u"):
        return True
    if kind == "f" and type(obj).__module__ == "numpy":
        import numpy  # already loaded: obj is a numpy value

        return bool(numpy.isfinite(obj).all())
    return False


def encode_body(obj: Any) -> bytes:
    """Return the JSON body bytes for ``obj`` (sanitised by :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(obj), ensure_ascii=True, allow_nan=False).encode("ascii")


def encode(obj: Any) -> bytes:
    """Return one complete frame (prefix plus body) for ``obj``.

    Raises:
        TypeError: if ``obj`` cannot be represented in JSON.
        ValueError: if the body would be longer than ten digits can declare.
    """
    body = encode_body(obj)
    if len(body) > MAX_ENCODABLE:
        raise ValueError(f"body of {len(body)} bytes is too long for a {PREFIX_LENGTH}-digit prefix")
    return b"%010d" % len(body) + body
