"""Rig events as WAMP feed payloads: topics, encoding and checked decoding (pure, no Twisted).

A rig publishes its events on its agent's feed ``rig_events`` (topic
``<root>.<instance-id>.feeds.rig_events``) in the ocs feed format: one event argument
``[payload, feed_info]``. The payload is a JSON object::

    {"event": "EXPSTART", "value": 2, "args": ["2026-11-23_1_mouse", null],
     "exp_ref": "2026-11-23_1_mouse", "data": null,
     "protocol": "1.0.0", "rig": "observatory.rig-1"}

``value`` and ``args`` are the UDP wire array (``[value, *args]``), so every rig message
round-trips exactly; the named fields (``exp_ref``, ``data``, ``status``) are for readers.
``rig`` is the publishing agent's address. Events a rig agent relays from UDP rigs also carry
``source`` (``"udp://10.0.0.2:11001"``). Error reports have ``"event": "ERROR"``, ``"value": 0``,
``"args": ["ExcType: message", event]`` and ``"to"``: the rig they answer.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

from agents.rig.events import PROTOCOL_VERSION
from agents.rig.messages import MessageError, RemoteError, RigMessage, make_message
from ocs_core.runtime.params import non_finite
from ocs_core.runtime.text import brief

__all__ = [
    "FEED_NAME",
    "REMOTE_FEED_NAME",
    "rig_topic",
    "rig_topics",
    "encode_payload",
    "decode_event",
    "publisher_of",
    "addressed_to",
]

#: Feed on which a rig publishes its own events.
FEED_NAME = "rig_events"
#: Feed on which a rig agent republishes events it received from UDP (iblutil) rigs.
REMOTE_FEED_NAME = "rig_events_remote"

_MAX_ARGS = 3  # no protocol 1.0.0 message has more elements after the event


def _check_part(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or "." in value or any(c.isspace() for c in value):
        raise ValueError(f"{name} must be a non-empty URI component without '.' or spaces, got {brief(value)}")


def rig_topic(address_root: str, instance_id: Optional[str] = None, feed: str = FEED_NAME) -> str:
    """The feed topic of one rig, or with ``instance_id`` None or ``'*'`` the wildcard for every rig.

    ``rig_topic('observatory', 'rig-1')`` is ``'observatory.rig-1.feeds.rig_events'``;
    ``rig_topic('observatory')`` is ``'observatory..feeds.rig_events'`` (subscribe with
    ``match='wildcard'``).

    Raises:
        ValueError: an empty root, or an instance-id or feed with a dot or a space.
    """
    if not isinstance(address_root, str) or not address_root or address_root.startswith(".") \
            or address_root.endswith(".") or ".." in address_root:
        raise ValueError(f"address_root must be a dotted URI prefix like 'observatory', got {address_root!r}")
    _check_part("feed", feed)
    if instance_id is None or instance_id == "*":
        return f"{address_root}..feeds.{feed}"
    _check_part("instance_id", instance_id)
    return f"{address_root}.{instance_id}.feeds.{feed}"


def rig_topics(address_root: str, rigs: Union[str, Iterable[str]] = "*",
               feeds: Iterable[str] = (FEED_NAME,)) -> list[tuple[str, str]]:
    """``(topic, match)`` pairs to follow ``rigs`` (instance-ids, or ``'*'`` for all) on ``feeds``.

    ``match`` is ``'exact'`` for one rig and ``'wildcard'`` for ``'*'``.
    """
    rigs = [rigs] if isinstance(rigs, str) else list(rigs)
    out = []
    for feed in feeds:
        for rig in rigs:
            wildcard = rig in ("*", None)
            out.append((rig_topic(address_root, None if wildcard else rig, feed),
                        "wildcard" if wildcard else "exact"))
    return out


def encode_payload(message: Union[RigMessage, RemoteError], rig: str, source: Any = None,
                   to: Any = None) -> dict:
    """The feed payload for ``message`` published by the agent at address ``rig``.

    Args:
        message: The event (or an error report).
        rig: The publishing agent's address, e.g. ``'observatory.rig-1'``.
        source: Where a relayed event came from (e.g. ``'udp://10.0.0.2:11001'``); None for
            the rig's own events.
        to: For an error report, the rig it answers.
    """
    if isinstance(message, RemoteError):
        payload = {"event": "ERROR", "value": 0, "args": message.to_list()[1:], "error": message.error}
        if to is not None:
            payload["to"] = _jsonable_source(to)
    else:
        payload = message.as_dict()
        payload.pop("source", None)
    payload["protocol"] = PROTOCOL_VERSION
    payload["rig"] = rig
    if source is not None:
        payload["source"] = _jsonable_source(source)
    return payload


def _jsonable_source(source: Any) -> Any:
    if isinstance(source, tuple) and len(source) == 2:
        host, port = source
        return f"udp://[{host}]:{port}" if ":" in str(host) else f"udp://{host}:{port}"
    return source


def decode_event(event: Any) -> Union[RigMessage, RemoteError]:
    """Check one feed event ``[payload, feed_info]`` and return the message it carries.

    The message's ``source`` is the payload's ``source`` (a relayed event) or else the
    publishing agent's address (``feed_info['agent_address']``, else the payload's ``rig``).
    An error report's ``source`` is the publisher; its ``to`` is not part of the result (see
    :func:`addressed_to`).

    Raises:
        MessageError: not a ``[payload, feed_info]`` pair, a payload without an integer
            ``value`` and an ``args`` list, or a message that is not valid protocol 1.0.0
            (unknown event, wrong shape, bad exp_ref or status).
    """
    payload, info = _split(event)
    value, args = payload.get("value"), payload.get("args")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"payload 'value' must be the integer event, got {brief(value, 60)}")
    if not isinstance(args, list) or len(args) > _MAX_ARGS:
        raise MessageError(f"payload 'args' must be a list of at most {_MAX_ARGS} elements, got {brief(args, 80)}")
    where = non_finite(args, "args")
    if where is not None:
        raise MessageError(f"payload {where} is not a finite number (NaN and infinities are not JSON)")
    publisher = info.get("agent_address") or payload.get("rig")
    if value == 0:
        if len(args) != 2 or not isinstance(args[0], str) or isinstance(args[1], bool) \
                or not isinstance(args[1], int):
            raise MessageError('error report args must be ["ExcType: message", event]')
        return RemoteError(args[0], args[1], publisher)
    source = payload.get("source") or publisher
    return make_message(value, *args, source=source)


def publisher_of(event: Any) -> Optional[str]:
    """The address of the agent that published ``event`` (None if it does not say)."""
    try:
        payload, info = _split(event)
    except MessageError:
        return None
    rig = info.get("agent_address") or payload.get("rig")
    return rig if isinstance(rig, str) else None


def addressed_to(event: Any) -> Any:
    """The ``to`` of an error report event (None for other events or if absent)."""
    try:
        payload, _ = _split(event)
    except MessageError:
        return None
    return payload.get("to")


def _split(event: Any) -> tuple[Mapping, Mapping]:
    if not isinstance(event, (list, tuple)) or len(event) != 2:
        raise MessageError(f"expected a feed event [payload, feed_info], got {type(event).__name__}")
    payload, info = event
    if not isinstance(payload, Mapping):
        raise MessageError(f"feed payload must be an object, got {type(payload).__name__}")
    if not isinstance(info, Mapping):
        info = {}
    return payload, info
