"""Recorded-feed events as the archiver stores them: checked, one array per field (pure).

An event is ocs's ``[payload, feed_info]``: ``payload`` maps block names to blocks
``{"block_name", "timestamps", "data", "influxdb_tags"}`` (or one ``"timestamp"`` and scalar
values), ``feed_info`` names the agent, the feed and its run (``session_id``), and for ocs-core
agents the sequence number ``seq``. A block that cannot be stored is rejected with a reason; the
other blocks of its event are kept.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ArchiveBlock", "ArchiveEvent", "EventError", "parse_event", "MAX_BLOCK_VALUES"]

#: Values (timestamps x fields) in one block past which it is refused.
MAX_BLOCK_VALUES = 1_000_000
_FIELD_NAME = re.compile(r"^_*[A-Za-z][A-Za-z0-9_]{0,254}$")
_NUMBERS = (int, float)


class EventError(ValueError):
    """An event that is not a recorded-feed event at all (nothing of it is stored)."""


@dataclass
class ArchiveBlock:
    """One block: timestamps and, per field, a float64 array (numbers) or a list (strings)."""

    name: str
    timestamps: np.ndarray
    fields: dict[str, Any]
    tags: dict[str, dict] | None = None
    raw: dict[str, list] = field(default_factory=dict)  #: the values as published (ints stay ints)
    raw_timestamps: list = field(default_factory=list)

    @property
    def samples(self) -> int:
        """(timestamp, field) values in the block."""
        return len(self.timestamps) * len(self.fields)


@dataclass
class ArchiveEvent:
    """A recorded-feed event, its blocks checked."""

    address: str
    feed: str
    session_id: str
    seq: int | None
    agent_class: str | None
    agg_params: dict = field(default_factory=dict)
    blocks: list[ArchiveBlock] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    received: float = 0.0  #: when the archiver got it (time.time())

    @property
    def samples(self) -> int:
        return sum(b.samples for b in self.blocks)

    @property
    def stream(self) -> tuple[str, str, str]:
        """(agent address, feed, session_id): the run whose seq numbers this event counts in."""
        return (self.address, self.feed, self.session_id)


def parse_event(event: Any) -> ArchiveEvent | None:
    """Check one feed event; None for an unrecorded feed's event.

    Raises:
        EventError: not ``[payload, feed_info]`` with the keys the archiver needs.
    """
    if not isinstance(event, (list, tuple)) or len(event) != 2 or not isinstance(event[1], dict):
        raise EventError(f"a feed event is [payload, feed_info]; got {event!r:.120}")
    payload, info = event
    if not info.get("record"):
        return None
    address, feed, session_id = info.get("agent_address"), info.get("feed_name"), info.get("session_id")
    if not all(isinstance(v, str) and v for v in (address, feed)) or session_id is None:
        raise EventError(f"feed_info lacks agent_address, feed_name or session_id: {info!r:.200}")
    seq = info.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise EventError(f"{address}.{feed}: seq {seq!r} is not a positive integer")
    agg = info.get("agg_params") if isinstance(info.get("agg_params"), dict) else {}
    out = ArchiveEvent(address, feed, str(session_id), seq, info.get("agent_class"), agg)
    if not isinstance(payload, dict):
        out.rejected.append(f"payload is {type(payload).__name__}, not a dict of blocks")
        return out
    for key, block in payload.items():
        try:
            out.blocks.append(_parse_block(key, block))
        except ValueError as exc:
            out.rejected.append(f"block {key!r}: {exc}")
    return out


def _parse_block(key: str, block: Any) -> ArchiveBlock:
    if not isinstance(block, dict) or not isinstance(block.get("data"), dict):
        raise ValueError("not a block {block_name, timestamps, data}")
    data = block["data"]
    if not data:
        raise ValueError("no fields")
    if "timestamps" in block:
        raw_ts, single = block["timestamps"], False
    elif "timestamp" in block:
        raw_ts, single = [block["timestamp"]], True
    else:
        raise ValueError("no timestamps")
    if not isinstance(raw_ts, list) or not all(isinstance(t, _NUMBERS) and not isinstance(t, bool)
                                               for t in raw_ts):
        raise ValueError("timestamps must be a list of numbers")
    if len(raw_ts) * len(data) > MAX_BLOCK_VALUES:
        raise ValueError(f"{len(raw_ts)} timestamps x {len(data)} fields is more than "
                         f"{MAX_BLOCK_VALUES} values")
    timestamps = np.asarray(raw_ts, dtype=np.float64)
    if not np.isfinite(timestamps).all():
        raise ValueError("timestamps must be finite")
    fields: dict[str, Any] = {}
    raw: dict[str, list] = {}
    for name, values in data.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise ValueError(f"invalid field name {name!r}")
        values = [values] if single else values
        if not isinstance(values, list) or len(values) != len(timestamps):
            n = len(values) if isinstance(values, list) else type(values).__name__
            raise ValueError(f"field {name!r} has {n} values for {len(timestamps)} timestamps")
        fields[name] = _column(name, values)
        raw[name] = values
    tags = block.get("influxdb_tags")
    if tags is not None and (not isinstance(tags, dict) or set(tags) != set(fields)
                             or not all(isinstance(t, dict) and "_field" in t for t in tags.values())):
        raise ValueError("influxdb_tags must hold one {'_field': ..., tag: value} per field")
    return ArchiveBlock(str(block.get("block_name", key)), timestamps, fields, tags, raw, raw_ts)


def _column(name: str, values: list) -> Any:
    if all(isinstance(v, _NUMBERS) for v in values):  # bool is an int
        return np.asarray(values, dtype=np.float64)
    if all(isinstance(v, str) for v in values):
        return list(values)
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(f"field {name!r} mixes value types {kinds}; use numbers or strings")


def finite_or_none(x: float) -> float | None:
    """``x``, or None when it is NaN or infinite (for JSON replies)."""
    return x if math.isfinite(x) else None
