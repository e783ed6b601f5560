"""Feeds: recorded-block validation and buffering, per-feed sequence numbers, and the outage queue.

Pure logic (no Twisted). A ``Feed`` turns messages published by agent code into WAMP event
arguments ``[payload, feed_info]`` (ocs 0.12's format), numbers every event, and keeps events that
could not be delivered (router away) in a bounded queue until the agent is connected again.

The sequence number travels as ``feed_info["seq"]``: ocs consumers read named keys of feed_info
and ignore others, so they keep working, while our subscribers can detect gaps and duplicates.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any, Callable

from ocs_core.runtime.feed_history import (DEFAULT_HISTORY_EVENTS, DEFAULT_HISTORY_SECONDS,
                                           FeedHistory)

_FIELD_NAME = re.compile(r"^_*[A-Za-z][A-Za-z0-9_]*$")
_SCALARS = (float, int, str, bool)

#: Events kept per feed while the router is away (the oldest are dropped past this).
DEFAULT_OUTBOX = 10_000
#: Bounds on a block's ``influxdb_tags``: tags per field (besides ``_field``), characters of a
#: tag value, characters of the whole mapping as JSON.
MAX_TAGS_PER_FIELD = 16
MAX_TAG_VALUE = 255
MAX_TAGS_CHARS = 64 * 1024
# ocs's InfluxDB publisher writes tags unescaped into line protocol: these would break its lines.
_TAG_VALUE_FORBIDDEN = re.compile(r'[\s,="\\]')


class FeedError(ValueError):
    """A message that the feed cannot carry; the text says what is wrong with it."""


def check_field_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not _FIELD_NAME.match(name):
        raise FeedError(f"invalid field name {name!r}: use letters, digits and '_', starting "
                        "(after any leading '_') with a letter, at most 255 characters")


def _check_values(field: str, values: list) -> None:
    for v in values:
        if not isinstance(v, _SCALARS):
            raise TypeError(f"field {field!r} holds {v!r} ({type(v).__name__}); recorded feeds "
                            "take float, int, str or bool")


def check_influxdb_tags(block: str, tags: Any, fields: Any) -> dict[str, dict] | None:
    """Validate a block's ``influxdb_tags`` (ocs 0.12.1's structure); return a copy, or None.

    ``tags`` is None, or one entry per data field: ``{field: {"_field": name, tag: scalar,
    ...}}``. Tag names follow the field-name rule; values are int, float, bool or short strings
    without whitespace, ``,``, ``=``, ``"`` or ``\\``.

    Raises:
        FeedError: naming the block, the field and what is wrong.
    """
    if tags is None:
        return None
    where = f"block {block!r}: influxdb_tags"
    if not isinstance(tags, dict):
        raise FeedError(f"{where} must be a dict {{field: {{'_field': name, tag: value}}}}, "
                        f"got {type(tags).__name__}")
    if set(tags) != set(fields):
        raise FeedError(f"{where} needs exactly one entry per data field: fields "
                        f"{sorted(fields)}, tags for {sorted(map(str, tags))}")
    out: dict[str, dict] = {}
    for field, entry in tags.items():
        if not isinstance(entry, dict) or "_field" not in entry:
            raise FeedError(f"{where}[{field!r}] must be a dict holding '_field', got {entry!r:.100}")
        if len(entry) - 1 > MAX_TAGS_PER_FIELD:
            raise FeedError(f"{where}[{field!r}] has {len(entry) - 1} tags; at most "
                            f"{MAX_TAGS_PER_FIELD}")
        for name, value in entry.items():
            if name == "_field":
                check_field_name(value)
                continue
            check_field_name(name)
            if not isinstance(value, _SCALARS):
                raise FeedError(f"{where}[{field!r}][{name!r}] = {value!r:.100} "
                                f"({type(value).__name__}): use int, float, bool or str")
            if isinstance(value, str) and (not 1 <= len(value) <= MAX_TAG_VALUE
                                           or _TAG_VALUE_FORBIDDEN.search(value)):
                raise FeedError(f"{where}[{field!r}][{name!r}] = {value!r:.100}: a string tag "
                                f"has 1 to {MAX_TAG_VALUE} characters, none of them whitespace, "
                                "',', '=', '\"' or '\\'")
        out[field] = dict(entry)
    if len(repr(out)) > MAX_TAGS_CHARS:
        raise FeedError(f"{where} is larger than {MAX_TAGS_CHARS} characters")
    return out


class _Block:
    """Samples of one block buffered before publication."""

    def __init__(self, name: str, fields: set[str]) -> None:
        self.name = name
        self.fields = fields
        self.timestamps: list[float] = []
        self.data: dict[str, list] = {f: [] for f in fields}
        self.tags: dict[str, dict] | None = None

    def add(self, timestamps: list[float], data: dict[str, list],
            tags: dict[str, dict] | None = None) -> None:
        self.timestamps.extend(timestamps)
        for f, values in data.items():
            self.data[f].extend(values)
        if tags is not None:  # as in ocs: the latest tags given stay with the block
            self.tags = tags

    def encoded(self) -> dict[str, Any]:
        return {"block_name": self.name, "data": {f: list(v) for f, v in self.data.items()},
                "timestamps": list(self.timestamps), "influxdb_tags": self.tags}

    def clear(self) -> None:
        self.timestamps.clear()
        for values in self.data.values():
            values.clear()


class Feed:
    """One feed of an agent: its metadata, buffering, numbering and outage queue.

    Args:
        agent_address: e.g. ``observatory.faker1``.
        name: feed name (no ``.``).
        record: recorded feeds carry block-structured data for aggregation.
        agg_params: free dict passed to aggregators in ``feed_info``.
        buffer_time: seconds to gather recorded samples before an event (0: one event per message).
        agent_class: shown in ``feed_info``.
        session_id: the agent process's start time as a string (same for all feeds of a run).
        outbox_size: events kept while disconnected; ``0`` drops them (heartbeats).
        history_events, history_seconds: bounds of the recent events a recorded feed keeps
            for the ``ocs_core.feed_history`` query (unrecorded feeds keep none).
    """

    def __init__(self, agent_address: str, name: str, *, record: bool = False,
                 agg_params: dict | None = None, buffer_time: float = 0.0,
                 agent_class: str | None = None, session_id: str = "0",
                 outbox_size: int = DEFAULT_OUTBOX, clock: Callable[[], float] = time.time,
                 history_events: int = DEFAULT_HISTORY_EVENTS,
                 history_seconds: float = DEFAULT_HISTORY_SECONDS) -> None:
        if not name or "." in name:
            raise ValueError(f"feed name {name!r} must be non-empty and contain no '.'")
        self.agent_address = agent_address
        self.name = name
        self.record = record
        self.agg_params = dict(agg_params or {})
        self.buffer_time = float(buffer_time)
        self.agent_class = agent_class
        self.session_id = session_id
        self.address = f"{agent_address}.feeds.{name}"
        self._clock = clock
        self._lock = threading.Lock()
        self._blocks: dict[str, _Block] = {}
        self._buffer_start: float | None = None
        self._seq = 0
        self.outbox: deque[list] = deque(maxlen=max(0, outbox_size))
        self.inflight: dict[int, list] = {}
        self.dropped = 0
        self.history = FeedHistory(history_events, history_seconds, clock) if record else None

    def feed_info(self) -> dict[str, Any]:
        """The seven-key encoded feed of ocs 0.12 (as in ``get_api``)."""
        return {"agent_address": self.agent_address, "agg_params": self.agg_params,
                "feed_name": self.name, "address": self.address, "record": self.record,
                "session_id": self.session_id, "agent_class": self.agent_class}

    # -- from agent code to payloads --------------------------------------------------------
    def payloads(self, message: Any) -> list[Any]:
        """Validate ``message`` and return the payloads to publish now (maybe none, if buffering).

        Raises:
            FeedError, TypeError: the message does not fit the feed (nothing is buffered then).
        """
        if not self.record:
            return [message]
        name, timestamps, data = self._parse_block_message(message)
        tags = check_influxdb_tags(name, message.get("influxdb_tags"), data)
        with self._lock:
            block = self._blocks.get(name)
            if block is None:
                block = self._blocks[name] = _Block(name, set(data))
            elif block.fields != set(data):
                raise FeedError(f"Block structure does not match: block {name!r} has fields "
                                f"{sorted(block.fields)}, this message has {sorted(data)}")
            block.add(timestamps, data, tags)
            now = self._clock()
            if self._buffer_start is None:
                self._buffer_start = now
            if now - self._buffer_start >= self.buffer_time:
                return self._take()
            return []

    def flush(self) -> list[Any]:
        """Return the buffered samples as a payload now (an empty list if there are none)."""
        with self._lock:
            return self._take()

    def _take(self) -> list[Any]:
        payload = {n: b.encoded() for n, b in self._blocks.items() if b.timestamps}
        for block in self._blocks.values():
            block.clear()
        self._buffer_start = None
        return [payload] if payload else []

    @staticmethod
    def _parse_block_message(message: Any) -> tuple[str, list[float], dict[str, list]]:
        if not isinstance(message, dict) or "block_name" not in message or "data" not in message:
            raise FeedError("a recorded feed message is {'block_name': str, 'timestamp': float, "
                            "'data': {field: value}} (or 'timestamps' and lists); "
                            f"got {message!r:.200}")
        name = message["block_name"]
        data = message["data"]
        if not isinstance(data, dict) or not data:
            raise FeedError(f"block {name!r}: 'data' must be a non-empty dict of fields")
        if "timestamps" in message:
            timestamps = [float(t) for t in message["timestamps"]]
            out = {}
            for field, values in data.items():
                check_field_name(field)
                values = list(values)
                if len(values) != len(timestamps):
                    raise FeedError(f"block {name!r}: field {field!r} has {len(values)} values "
                                    f"for {len(timestamps)} timestamps")
                _check_values(field, values)
                out[field] = values
            return name, timestamps, out
        if "timestamp" not in message:
            raise FeedError(f"block {name!r}: give 'timestamp' (one sample) or 'timestamps'")
        out = {}
        for field, value in data.items():
            check_field_name(field)
            _check_values(field, [value])
            out[field] = [value]
        return name, [float(message["timestamp"])], out

    # -- numbering and the outage queue -----------------------------------------------------
    def make_event(self, payload: Any) -> list:
        """Number ``payload`` and return the event argument ``[payload, feed_info]``."""
        self._seq += 1
        info = self.feed_info()
        info["seq"] = self._seq
        event = [payload, info]
        if self.history is not None:
            self.history.add(event)
        return event

    def queue(self, event: list) -> None:
        """Keep an undelivered event for later (dropping the oldest when full)."""
        if self.outbox.maxlen == 0:
            return
        if len(self.outbox) == self.outbox.maxlen:
            self.dropped += 1
        self.outbox.append(event)

    def requeue_inflight(self) -> int:
        """Put events sent but never acknowledged back in the queue, in sequence order.

        Returns how many there were: each may reach subscribers twice (at-least-once delivery),
        when the router delivered it but its acknowledgement was lost with the link.
        """
        unacknowledged = len(self.inflight)
        if not unacknowledged:
            return 0
        events = sorted(list(self.inflight.values()) + list(self.outbox), key=lambda e: e[1]["seq"])
        self.inflight.clear()
        self.outbox.clear()
        for event in events:
            self.queue(event)
        return unacknowledged
