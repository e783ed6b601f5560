"""InfluxDB 1.x line protocol for recorded-feed events, as ocs 0.12.1's InfluxDB publisher writes it (pure).

The same series as ocs's publisher for the same event, so that existing ocs Grafana dashboards
keep working:

* a block without ``influxdb_tags``: measurement = the agent address, tag ``feed``, one line
  per timestamp with every field of the block (``channel_00=0.1,channel_01=0.2``);
* a block with ``influxdb_tags``: measurement = the agent class, tags ``feed``,
  ``address_root``, ``instance_id`` and the field's own tags, one line per timestamp and field,
  the field named by the tags' ``_field``.

Values: ints with the suffix ``i``, booleans ``True``/``False``, strings double-quoted, floats
as Python prints them; time in integer nanoseconds. Where ocs would write a line InfluxDB
refuses (NaN or infinite values, which fail ocs's whole batch), this module leaves the value out
and counts it; string values are escaped (ocs does not escape them).
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from agents.archive.events import ArchiveBlock, ArchiveEvent

__all__ = ["SeriesKey", "event_lines", "block_series", "format_value"]

#: (measurement, ((tag, value), ...), influx field name) of one archived (address, feed, field).
SeriesKey = tuple[str, tuple[tuple[str, str], ...], str]


def format_value(value: Any) -> str | None:
    """A field value in line protocol (None when InfluxDB cannot store it)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None


def block_series(event: ArchiveEvent, block: ArchiveBlock) -> dict[str, SeriesKey]:
    """Each field's InfluxDB series (measurement, tags in write order, field name)."""
    shared = [("feed", event.feed)]
    if not block.tags:
        return {f: (event.address, tuple(shared), f) for f in block.raw}
    root, _, instance = event.address.partition(".")
    shared += [("address_root", root), ("instance_id", instance)]
    out = {}
    for f in block.raw:
        entry = block.tags[f]
        tags = shared + [(k, str(v)) for k, v in entry.items() if k != "_field"]
        out[f] = (str(event.agent_class), tuple(tags), str(entry["_field"]))
    return out


def event_lines(event: ArchiveEvent) -> tuple[list[str], int]:
    """The event's lines, and how many values were left out (non-finite, unstorable)."""
    lines: list[str] = []
    skipped = 0
    for block in event.blocks:
        series = block_series(event, block)
        for text, n in _block_lines(block, series):
            if text is not None:
                lines.append(text)
            skipped += n
    return lines, skipped


def _block_lines(block: ArchiveBlock, series: dict[str, SeriesKey]) -> Iterator[tuple[str | None, int]]:
    ns = [int(t * 1e9) for t in block.raw_timestamps]
    if not block.tags:
        measurement, tags, _ = next(iter(series.values()))
        head = measurement + "," + ",".join(f"{k}={v}" for k, v in tags)
        for i, t in enumerate(ns):
            parts, skipped = [], 0
            for f, values in block.raw.items():
                v = format_value(values[i])
                if v is None:
                    skipped += 1
                else:
                    parts.append(f"{f}={v}")
            yield (f"{head} {','.join(parts)} {t}" if parts else None), skipped
        return
    heads = {f: (m + "," + ",".join(f"{k}={v}" for k, v in tags), name)
             for f, (m, tags, name) in series.items()}
    for i, t in enumerate(ns):
        for f, values in block.raw.items():
            v = format_value(values[i])
            head, name = heads[f]
            yield (None, 1) if v is None else (f"{head} {name}={v} {t}", 0)
