"""Rig message shapes and their JSON datagram framing (sans-IO, pure).

A rig message is a JSON array whose first element is the event's integer value and whose other
elements depend on the event (protocol 1.0.0, the shapes iblutil's rigs send):

==============  =====================================
event           array
==============  =====================================
EXPINIT         ``[1, data]``
EXPSTART        ``[2, exp_ref, data]``
EXPEND          ``[4, data]``
EXPCLEANUP      ``[8, data]``
EXPINTERRUPT    ``[16, data]``
EXPSTATUS       ``[32, status]``
EXPINFO         ``[64, status, data]``
ALYX            ``[128, base_url, token]``
error report    ``[0, "ExcType: message", event]``
==============  =====================================
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from agents.rig.events import ExpMessage, ExpStatus, validate_exp_ref, validate_status
from ocs_core.runtime.text import brief

__all__ = [
    "MAX_DATAGRAM",
    "MessageError",
    "RigMessage",
    "RemoteError",
    "encode",
    "decode",
    "make_message",
]

#: Largest UDP payload over IPv4 (65535 - 8 byte UDP header - 20 byte IP header).
MAX_DATAGRAM = 65507

# event -> names of the elements after the event value
_SHAPES: dict[ExpMessage, tuple[str, ...]] = {
    ExpMessage.EXPINIT: ("data",),
    ExpMessage.EXPSTART: ("exp_ref", "data"),
    ExpMessage.EXPEND: ("data",),
    ExpMessage.EXPCLEANUP: ("data",),
    ExpMessage.EXPINTERRUPT: ("data",),
    ExpMessage.EXPSTATUS: ("status",),
    ExpMessage.EXPINFO: ("status", "data"),
    ExpMessage.ALYX: ("base_url", "token"),
}


class MessageError(ValueError):
    """A datagram or message that is not a valid protocol 1.0.0 rig message."""


@dataclass(frozen=True)
class RigMessage:
    """One rig event as it travels: the event and the elements that follow it on the wire.

    Attributes:
        event: A single ExpMessage.
        args: The elements after the event value, e.g. ``('2022-01-01_1_mouse', None)``
            for EXPSTART.
        source: Where it came from (``(host, port)`` for UDP, an agent address for WAMP), or
            None for a message made locally.
    """

    event: ExpMessage
    args: tuple = ()
    source: Any = field(default=None, compare=False)

    @property
    def data(self) -> Any:
        """The optional extra data (None for events that carry none)."""
        return self._field("data")

    @property
    def exp_ref(self) -> str | None:
        """The experiment reference of an EXPSTART, else None."""
        return self._field("exp_ref")

    @property
    def status(self) -> ExpStatus | None:
        """The status of an EXPSTATUS or EXPINFO, else None."""
        value = self._field("status")
        return None if value is None else ExpStatus(value)

    def _field(self, name: str) -> Any:
        names = _SHAPES[self.event]
        return self.args[names.index(name)] if name in names else None

    def to_list(self) -> list:
        """Return the wire array ``[event, *args]``."""
        return [int(self.event), *self.args]

    def as_dict(self) -> dict:
        """Return a JSON-ready summary, e.g. for publishing on a feed."""
        out = {"event": self.event.name, "value": int(self.event), "args": list(self.args)}
        for name in _SHAPES[self.event]:
            out[name] = self.status.name if name == "status" else self._field(name)
        if self.source is not None:
            out["source"] = list(self.source) if isinstance(self.source, tuple) else self.source
        return out


@dataclass(frozen=True)
class RemoteError:
    """An error report ``[0, "ExcType: message", event]``: a remote callback failed."""

    error: str
    event: int
    source: Any = field(default=None, compare=False)

    def to_list(self) -> list:
        """Return the wire array."""
        return [0, self.error, self.event]


def make_message(event: ExpMessage | int | str, *args: Any, source: Any = None) -> RigMessage:
    """Build a RigMessage, checking the event, the number of elements, exp_ref and status.

    Raises:
        MessageError: the event is unknown or compound, the element count is wrong for the
            event, the exp_ref is not ``yyyy-mm-dd_n_subject`` or the status is unknown.
    """
    try:
        event = ExpMessage.validate(event, allow_bitwise=False)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"unknown event: {exc}") from None
    names = _SHAPES[event]
    if len(args) != len(names):
        raise MessageError(
            f"{event.name} takes {len(names)} element(s) after the event {list(names)}, got "
            f"{len(args)} (not a protocol 1.0.0 message)"
        )
    args = list(args)
    for i, name in enumerate(names):
        try:
            if name == "exp_ref":
                args[i] = validate_exp_ref(args[i])
            elif name == "status":
                args[i] = int(validate_status(args[i]))
        except (TypeError, ValueError) as exc:
            raise MessageError(f"bad {name} in {event.name}: {exc}") from None
    if event is ExpMessage.ALYX and not (
        (args[0] is None or isinstance(args[0], str)) and isinstance(args[1], (dict, type(None)))
    ):
        raise MessageError("ALYX takes [base_url (str or null), token (object or null)]")
    return RigMessage(event, tuple(args), source)


def encode(message: RigMessage | RemoteError, max_size: int = MAX_DATAGRAM) -> bytes:
    """Serialise a message to its JSON datagram.

    Raises:
        MessageError: the data is not JSON-serialisable or the datagram exceeds ``max_size``.
    """
    try:
        raw = json.dumps(message.to_list(), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MessageError(f"data is not JSON-serialisable: {exc}") from None
    if len(raw) > max_size:
        raise MessageError(f"message of {len(raw)} bytes exceeds the {max_size} byte limit")
    return raw


class _NonFinite(ValueError):
    pass


def decode(datagram: bytes, source: Any = None, max_size: int = MAX_DATAGRAM,
           non_finite: list[str] | None = None) -> RigMessage | RemoteError:
    """Parse and check one datagram.

    ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON, but Python's ``json`` (and so iblutil)
    writes and reads them. By default they are refused; with a ``non_finite`` list, each one
    (and each number too large for a float) becomes ``None`` in the message and its token is
    appended to the list, so that the caller can say so.

    Raises:
        MessageError: the datagram is too large, not UTF-8 JSON, not an array with an integer
            event first, names an unknown event, has the wrong shape for protocol 1.0.0, or
            carries a bad exp_ref or status (or a non-finite number, without ``non_finite``).
    """
    if len(datagram) > max_size:
        raise MessageError(f"datagram of {len(datagram)} bytes exceeds the {max_size} byte limit")

    def constant(token: str) -> None:
        if non_finite is None:
            raise _NonFinite(token)
        non_finite.append(token)
        return None

    def number(text: str) -> float | None:
        value = float(text)
        return value if math.isfinite(value) else constant(text if len(text) <= 40 else text[:40] + "...")

    try:
        value = json.loads(datagram.decode("utf-8"), parse_constant=constant, parse_float=number)
    except _NonFinite as exc:
        raise MessageError(f"non-finite number {exc} is not JSON") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MessageError(f"not JSON: {bytes(datagram[:40])!r}") from None
    if not isinstance(value, list) or not value:
        raise MessageError(f"expected a JSON array [event, ...], got {type(value).__name__}")
    head, *args = value
    if isinstance(head, bool) or not isinstance(head, int):
        raise MessageError(f"expected an integer event first, got {brief(head)}")
    if head == 0:
        if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
            raise MessageError("error report must be [0, \"ExcType: message\", event]")
        return RemoteError(args[0], args[1], source)
    return make_message(head, *args, source=source)
