"""Hostile WAMP messages: an agent bounds what it decodes, and answers what it cannot decode.

autobahn drops the whole connection when one incoming message fails to decode: a call whose
arguments were nested 400 deep (cbor2's own limit) knocked its target agent off the router
and cancelled its other in-flight calls. An agent's session uses the serializers here instead:

* CBOR (offered first) decodes at most :data:`MAX_DEPTH` levels of nesting, envelope included;
  JSON (the fallback) is bounded by Python's recursion limit (autobahn's decoder recurses in
  Python, two frames a level: a few hundred levels);
* a message that does not decode is not a protocol error when its header still reads: the
  first elements of a WAMP message are its type and request ids, plain integers before any
  payload. Such a message becomes an :class:`Undecodable`, which :class:`GuardedSession`
  answers: an INVOCATION gets an ERROR reply (``wamp.error.invalid_argument``), a RESULT or
  ERROR fails the call it answers, an EVENT is dropped, each with one log line. Anything else
  still ends the connection, as before (those messages come from the router, not from peers).

See docs/security.md, "Hostile messages".
"""
from __future__ import annotations

import re
from typing import Any

import txaio

txaio.use_twisted()  # before autobahn.wamp: its serializers bind txaio's helpers at import time
from autobahn.wamp import message  # noqa: E402
from autobahn.wamp.exception import ApplicationError, ProtocolError  # noqa: E402
from autobahn.wamp.serializer import CBORObjectSerializer, CBORSerializer, JsonSerializer  # noqa: E402
from twisted.logger import Logger  # noqa: E402

from ocs_core.runtime.text import brief

__all__ = ["MAX_DEPTH", "Undecodable", "GuardedSession", "BoundedCBORSerializer",
           "GuardedJsonSerializer", "agent_serializers", "read_header"]

log = Logger(namespace="ocs_core.runtime.wire")

#: Deepest nesting an agent decodes in one WAMP message (the envelope's own two levels included).
MAX_DEPTH = 100

_INVOCATION, _EVENT, _RESULT, _ERROR = (message.Invocation.MESSAGE_TYPE, message.Event.MESSAGE_TYPE,
                                        message.Result.MESSAGE_TYPE, message.Error.MESSAGE_TYPE)
#: How many leading integers identify each message type we can answer without its payload.
_HEADER_INTS = {_INVOCATION: 3, _EVENT: 3, _RESULT: 2, _ERROR: 3}


class Undecodable:
    """A WAMP message whose payload did not decode but whose header did.

    Attributes:
        message_type: the WAMP message type (68 INVOCATION, 36 EVENT, 50 RESULT, 8 ERROR).
        ids: the integers after the type (request and registration, subscription and
            publication, request, or request type and request).
        reason: why the payload did not decode (bounded text).
        size: the message's size in bytes.
    """

    def __init__(self, message_type: int, ids: tuple[int, ...], reason: str, size: int) -> None:
        self.message_type, self.ids, self.reason, self.size = message_type, ids, reason, size

    def __str__(self) -> str:
        return f"Undecodable(type={self.message_type}, ids={self.ids}, {self.size} bytes: {self.reason})"

    __repr__ = __str__


# -- reading a header without the payload ---------------------------------------------------
def _cbor_uint(data: bytes, pos: int) -> tuple[int, int] | None:
    """The CBOR unsigned integer (or an array head's count) at ``pos``: ``(value, next pos)``."""
    if pos >= len(data):
        return None
    initial = data[pos]
    info = initial & 0x1F
    if info < 24:
        return info, pos + 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None or pos + 1 + size > len(data):
        return None
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


def _cbor_header(data: bytes) -> list[int] | None:
    if not data or data[0] >> 5 != 4:  # not an array
        return None
    pos = 1 if data[0] == 0x9F else None  # indefinite-length array
    if pos is None:
        head = _cbor_uint(data, 0)
        if head is None:
            return None
        pos = head[1]
    out: list[int] = []
    while len(out) < 3 and pos < len(data) and data[pos] >> 5 == 0:  # unsigned integers
        item = _cbor_uint(data, pos)
        if item is None:
            break
        out.append(item[0])
        pos = item[1]
    return out


_JSON_HEAD = re.compile(rb"\s*\[\s*(\d{1,17})\s*(?:,\s*(\d{1,17})\s*)?(?:,\s*(\d{1,17})\s*)?")


def _json_header(data: bytes) -> list[int] | None:
    match = _JSON_HEAD.match(data[:200])
    if match is None:
        return None
    return [int(g) for g in match.groups() if g is not None]


def read_header(payload: bytes, serializer: str) -> tuple[int, tuple[int, ...]] | None:
    """The message type and ids of a WAMP message we can answer undecoded, else None."""
    ints = _cbor_header(payload) if serializer == "cbor" else _json_header(payload)
    if not ints:
        return None
    want = _HEADER_INTS.get(ints[0])
    if want is None or len(ints) < want:
        return None
    return ints[0], tuple(ints[1:want])


# -- serializers ----------------------------------------------------------------------------
class _BoundedCBORObjectSerializer(CBORObjectSerializer):
    """CBOR with a nesting bound (cbor2's own default is 400)."""

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        super().__init__(batched=False)
        self.max_depth = max_depth

    def unserialize(self, payload: bytes) -> list:
        return [self.CBOR_MODULE.loads(payload, max_depth=self.max_depth)]


class _Salvaging:
    """Mixin for autobahn serializers: a message that fails to decode may still be answered."""

    _header_format = "cbor"

    def unserialize(self, payload: bytes, isBinary: bool | None = None) -> list:  # noqa: N803
        try:
            return super().unserialize(payload, isBinary)  # type: ignore[misc]
        except ProtocolError as exc:
            header = read_header(payload, self._header_format)
            if header is None:
                raise
            return [Undecodable(header[0], header[1], _reason(exc), len(payload))]


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "nesting depth" in text or "recursion" in text.lower():
        return f"nested deeper than this agent decodes ({MAX_DEPTH} levels)"
    return brief(text.replace("invalid serialization of WAMP message: ", ""), 160, quote=False)


class BoundedCBORSerializer(_Salvaging, CBORSerializer):
    """CBOR for agents: at most :data:`MAX_DEPTH` levels; undecodable calls are answered."""

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        CBORSerializer.__init__(self)
        self._serializer = _BoundedCBORObjectSerializer(max_depth)


class GuardedJsonSerializer(_Salvaging, JsonSerializer):
    """JSON for agents (bounded by Python's recursion limit); undecodable calls are answered."""

    _header_format = "json"


def agent_serializers() -> list:
    """The serializers an agent offers the router, in order of preference."""
    return [BoundedCBORSerializer(), GuardedJsonSerializer()]


# -- the session side -----------------------------------------------------------------------
class GuardedSession:
    """Mixin for an ``ApplicationSession``: answer :class:`Undecodable` messages, stay connected.

    Put it before ``ApplicationSession`` in the bases. ``self.undecodable`` counts them. A call
    the agent refuses with an ``ApplicationError`` (bad arguments: the caller gets the error) is
    logged at debug level only, not as autobahn's warning per call, so that a flood of bad calls
    does not flood the log.
    """

    undecodable = 0

    def onUserError(self, fail: Any, msg: str) -> None:  # noqa: N802 (autobahn's name)
        if isinstance(getattr(fail, "value", None), ApplicationError):
            log.debug("refused a call: {why}", why=brief(fail.value.error_message(), 200, quote=False))
            return
        super().onUserError(fail, msg)  # type: ignore[misc]

    def onMessage(self, msg: Any) -> None:  # noqa: N802 (autobahn's name)
        if not isinstance(msg, Undecodable):
            return super().onMessage(msg)  # type: ignore[misc]
        self.undecodable += 1
        kind, ids = msg.message_type, msg.ids
        if kind == _INVOCATION:
            log.warn("refused a call ({n} bytes) it could not decode: {why}", n=msg.size, why=msg.reason)
            reply = message.Error(_INVOCATION, ids[0], ApplicationError.INVALID_ARGUMENT,
                                  args=[f"the call's arguments could not be decoded: {msg.reason}"])
            self._transport.send(reply)  # type: ignore[attr-defined]
        elif kind == _EVENT:
            log.warn("dropped an event ({n} bytes, subscription {s}) it could not decode: {why}",
                     n=msg.size, s=ids[0], why=msg.reason)
        elif kind == _RESULT:
            log.warn("a call's result ({n} bytes) could not be decoded: {why}", n=msg.size, why=msg.reason)
            super().onMessage(message.Error(message.Call.MESSAGE_TYPE, ids[0],  # type: ignore[misc]
                                            ApplicationError.INVALID_PAYLOAD,
                                            args=[f"the result could not be decoded: {msg.reason}"]))
        elif kind == _ERROR:
            log.warn("an error reply ({n} bytes) could not be decoded: {why}", n=msg.size, why=msg.reason)
            super().onMessage(message.Error(ids[0], ids[1], ApplicationError.INVALID_PAYLOAD,  # type: ignore[misc]
                                            args=[f"the error reply could not be decoded: {msg.reason}"]))

