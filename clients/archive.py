"""Recorded data back from the feed archive: numpy arrays per field, CSV, and plots.

    >>> from clients.archive import history
    >>> h = history("observatory.fake-data1", "false_temperatures", since=600,
    ...             archive="data/archive.sqlite", max_points=2000)
    >>> h["channel_00"].t, h["channel_00"].value        # float seconds, values (bucket means)
    >>> h.to_csv("temps.csv")

Two sources: the archive's SQLite file, read directly (``archive=PATH``), or the archiver
agent's ``query`` Task over the router (``archiver=INSTANCE_ID``; for remote users and for the
InfluxDB backend).
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ocs_core.archive.series import Series
from ocs_core.archive.sqlite_reader import ArchiveFileError, ArchiveReader

__all__ = ["History", "HistoryError", "Series", "history"]


class HistoryError(ValueError):
    """The history cannot be read: no such archive, feed or field; the text says which exist."""


@dataclass
class History:
    """One feed's fields over ``[start, stop]``, with the gaps that could not be filled."""

    address: str
    feed: str
    start: float
    stop: float
    series: dict[str, Series]
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, name: str) -> Series:
        return self.series[name]

    @property
    def fields(self) -> list[str]:
        return list(self.series)

    def gaps_in_range(self) -> list[dict[str, Any]]:
        """The lost gaps whose time span meets ``[start, stop]`` (unknown bounds count as meeting)."""
        out = []
        for g in self.gaps:
            lo = g.get("t_before") if g.get("t_before") is not None else -float("inf")
            hi = g.get("t_after") if g.get("t_after") is not None else float("inf")
            if lo <= self.stop and hi >= self.start:
                out.append(g)
        return out

    def to_csv(self, path: str | os.PathLike) -> int:
        """Write ``field,timestamp,time_utc,value[,min,max]`` rows; return the row count."""
        rows = 0
        with open(path, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            bucketed = any(s.downsampled for s in self.series.values())
            out.writerow(["field", "timestamp", "time_utc", "value"] + (["min", "max"] if bucketed else []))
            for name, s in self.series.items():
                for i, t in enumerate(s.t):
                    row = [name, repr(float(t)), utc(t), _cell(s.value[i])]
                    if bucketed:
                        row += [_cell(s.min[i]), _cell(s.max[i])] if s.downsampled else ["", ""]
                    out.writerow(row)
                    rows += 1
        return rows

    def plot(self, path: str | os.PathLike) -> None:
        """One panel per field against UTC time (min-max band when downsampled); needs matplotlib."""
        from clients.archive_plot import plot_history
        plot_history(self, path)


def utc(t: float) -> str:
    """ISO 8601 UTC with microseconds."""
    return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cell(v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v)


def history(address: str, feed: str, fields: list[str] | None = None, start: float | None = None,
            stop: float | None = None, max_points: int | None = None, *, since: float | None = None,
            archive: str | os.PathLike | None = None, archiver: str | None = None,
            site_file: str | None = None, site_host: str | None = None,
            timeout: float = 60.0) -> History:
    """One feed's archived fields as numpy arrays.

    Args:
        address: the agent's address (``observatory.fake-data1``) or its instance-id.
        feed: the feed name.
        fields: the fields wanted (default: all of the feed's).
        start, stop: unix seconds (default: the hour before ``stop``; ``stop`` defaults to now).
        max_points: at most this many points per field: beyond it, per bucket mean, min and max.
        since: seconds before now (instead of ``start``/``stop``).
        archive: the archive's SQLite file (read directly).
        archiver: else the archiver agent's instance-id (its ``query`` Task, over the router).
        site_file, site_host: the site (for ``archiver``, and to resolve an instance-id).

    Raises:
        HistoryError: no such archive file, feed or field (the text lists what there is).
    """
    stop = time.time() if stop is None else float(stop)
    if since is not None:
        start = stop - float(since)
    start = stop - 3600.0 if start is None else float(start)
    if not start < stop:
        raise HistoryError(f"start ({start}) must be before stop ({stop})")
    if archive is not None:
        return _from_file(archive, address, feed, fields, start, stop, max_points)
    if archiver is None:
        raise HistoryError("give archive=PATH (the SQLite file) or archiver=INSTANCE_ID")
    return _from_agent(archiver, address, feed, fields, start, stop, max_points, site_file,
                       site_host, timeout)


def _resolve(address: str, known: list[str]) -> str:
    if address in known or "." in address:
        return address
    matches = sorted({a for a in known if a.rsplit(".", 1)[-1] == address})
    return matches[0] if len(matches) == 1 else address


def _from_file(path, address, feed, fields, start, stop, max_points) -> History:
    try:
        reader = ArchiveReader(path)
    except ArchiveFileError as exc:
        raise HistoryError(str(exc)) from None
    try:
        address = _resolve(address, [c["address"] for c in reader.catalog()])
        try:
            series = reader.query(address, feed, fields, start, stop, max_points)
        except KeyError as exc:
            raise HistoryError(exc.args[0]) from None
        return History(address, feed, start, stop, series, reader.gaps(address, feed))
    finally:
        reader.close()


def _from_agent(archiver, address, feed, fields, start, stop, max_points, site_file, site_host,
                timeout) -> History:
    from clients.ocs_client import OCSClient  # only this source needs HTTP

    client = OCSClient(archiver, site_file=site_file, site_host=site_host, timeout=timeout)
    try:
        if "." not in address:
            address = f"{client.agent_address.rsplit('.', 1)[0]}.{address}"
        params = {"address": address, "feed": feed, "fields": fields, "start": start, "stop": stop,
                  "max_points": max_points or 50_000}
        reply = client.query(**{k: v for k, v in params.items() if v is not None})
    finally:
        client.close()
    session = reply.session or {}
    if not session.get("success"):
        messages = session.get("messages") or [[0, reply.msg]]
        raise HistoryError(f"{archiver} query: {messages[-1][1]}")
    data = session["data"]
    series = {name: Series.from_json(doc) for name, doc in data["series"].items()}
    return History(address, feed, data["start"], data["stop"], series, data.get("gaps", []))
