"""The InfluxDB 1.x backend: samples as ocs 0.12.1's publisher writes them, seq bookkeeping beside.

Points go to InfluxDB's HTTP API (``/write``, line protocol, nanoseconds) in batches with
retries; the exactly-once state (streams, lost gaps) and the catalogue of series go to a small
SQLite file next to the archiver, written after InfluxDB accepted the points. A crash between
the two re-sends those points later: InfluxDB keeps one point per series and timestamp, so they
overwrite themselves. Retention is InfluxDB's own (its retention policies); blocking, one thread.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import requests
from twisted.logger import Logger

from ocs_core.archive import downsample as ds
from ocs_core.archive.series import Series, select_fields

from agents.archive.line_protocol import SeriesKey, block_series, event_lines
from agents.archive.sqlite_store import SQLiteStore
from agents.archive.store import Batch, StoreError
from agents.archive.tracker import Stream

__all__ = ["InfluxStore"]

log = Logger(namespace="agents.archive.influx_store")

LINES_PER_POST = 5000
RETRIES = (0.2, 0.5, 1.0)
_SERIES_TABLE = ("CREATE TABLE IF NOT EXISTS influx_series (address TEXT NOT NULL, feed TEXT NOT NULL, "
                 "field TEXT NOT NULL, measurement TEXT NOT NULL, tags TEXT NOT NULL, "
                 "influx_field TEXT NOT NULL, PRIMARY KEY (address, feed, field))")


class InfluxStore:
    """Write to database ``db`` of the InfluxDB at ``url``; bookkeeping in ``state_path``.

    Raises:
        StoreError: InfluxDB is unreachable or refuses to create the database.
        StoreCorrupt: ``state_path`` exists and is not an archive file.
    """

    def __init__(self, url: str, db: str, state_path: str) -> None:
        self.url, self.db = url.rstrip("/"), db
        self.location = f"{self.url} database {db}"
        self.http = requests.Session()
        self.http.trust_env = False  # never through a proxy
        self.state = SQLiteStore(state_path)
        self.state.db.execute(_SERIES_TABLE)
        self.skipped_values = 0
        self.refused_writes = 0
        self._series: dict[tuple[str, str, str], SeriesKey] = {
            (a, f, k): (m, tuple(tuple(t) for t in json.loads(tags)), name)
            for a, f, k, m, tags, name in self.state.db.execute("SELECT * FROM influx_series")}
        self._db_ready = False  # created at the first write: InfluxDB may be down at start-up

    # -- HTTP -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        last = None
        for delay in RETRIES + (None,):
            try:
                reply = self.http.request(method, self.url + path, timeout=10, **kwargs)
            except requests.RequestException as exc:
                last = f"InfluxDB at {self.url} unreachable: {type(exc).__name__}"
            else:
                if reply.status_code < 500:
                    return reply
                last = f"InfluxDB at {self.url} answered {reply.status_code}: {reply.text[:200]}"
            if delay is not None:
                time.sleep(delay)
        raise StoreError(last)

    def _query(self, q: str, post: bool = False) -> list[dict]:
        reply = self._request("POST" if post else "GET", "/query",
                              params={"q": q, "db": self.db, "epoch": "ns"})
        doc = reply.json() if reply.content else {}
        if reply.status_code >= 400 or "error" in doc:
            raise StoreError(f"InfluxDB refused {q[:80]!r}: {doc.get('error', reply.text[:200])}")
        for result in doc.get("results", []):
            if "error" in result:
                raise StoreError(f"InfluxDB refused {q[:80]!r}: {result['error']}")
        return doc.get("results", [])

    # -- writing ----------------------------------------------------------------------------
    def load_streams(self) -> list[Stream]:
        return self.state.load_streams()

    def write(self, batch: Batch) -> None:
        if not self._db_ready:
            self._query(f'CREATE DATABASE "{_ident(self.db)}"', post=True)
            self._db_ready = True
        lines: list[str] = []
        new_series = {}
        for event in batch.events:
            if event.agg_params.get("exclude_influx"):
                continue
            more, skipped = event_lines(event)
            lines += more
            self.skipped_values += skipped
            for block in event.blocks:
                for f, key in block_series(event, block).items():
                    if self._series.get((event.address, event.feed, f)) != key:
                        new_series[(event.address, event.feed, f)] = key
        for i in range(0, len(lines), LINES_PER_POST):
            body = "\n".join(lines[i:i + LINES_PER_POST]).encode()
            reply = self._request("POST", "/write", params={"db": self.db, "precision": "ns"}, data=body)
            if reply.status_code == 400:  # InfluxDB wrote what it could (e.g. a field type conflict)
                self.refused_writes += 1
                log.warn("InfluxDB refused some points (kept the others): {why}", why=reply.text[:300])
            elif reply.status_code >= 300:
                raise StoreError(f"InfluxDB refused a write: {reply.status_code} {reply.text[:200]}")
        if new_series:
            self.state.db.executemany(
                "INSERT OR REPLACE INTO influx_series VALUES (?, ?, ?, ?, ?, ?)",
                [(*k, m, json.dumps(list(tags)), name) for k, (m, tags, name) in new_series.items()])
            self._series.update(new_series)
        self.state.write(Batch(streams=batch.streams, lost=batch.lost))

    # -- reading ----------------------------------------------------------------------------
    def catalog(self) -> list[dict[str, Any]]:
        return [{"address": a, "feed": f, "field": k} for a, f, k in sorted(self._series)]

    def gaps(self, address=None, feed=None) -> list[dict[str, Any]]:
        return self.state.gaps(address, feed)

    def query(self, address, feed, fields, start, stop, max_points) -> dict[str, Series]:
        chosen = select_fields(self._series, address, feed, fields)
        return {f: self._query_one(key, start, stop, max_points) for f, key in chosen.items()}

    def _query_one(self, key: SeriesKey, start, stop, max_points) -> Series:
        measurement, tags, name = key
        where = " AND ".join([f'"{k}"=\'{_quote(v)}\'' for k, v in tags] +
                             [f"time >= {int(start * 1e9)}", f"time <= {int(stop * 1e9)}"])
        source = f'FROM "{_ident(measurement)}" WHERE {where}'
        if max_points:
            count = self._values(f'SELECT count("{_ident(name)}") {source}')
            if count and count[0][1] > max_points:
                width = ds.bucket_width(start, stop, max_points)
                step = max(1, math.ceil(width * 1e9))
                rows = self._values(f'SELECT mean("{_ident(name)}"), min("{_ident(name)}"), '
                                    f'max("{_ident(name)}") {source} GROUP BY time({step}ns) fill(none)')
                t = np.asarray([r[0] for r in rows], dtype=np.float64) / 1e9 + step / 2e9
                cols = [np.asarray([np.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)
                        for i in (1, 2, 3)]
                return Series(t, *cols)
        rows = self._values(f'SELECT "{_ident(name)}" {source}')
        t = np.asarray([r[0] for r in rows], dtype=np.float64) / 1e9
        values = [r[1] for r in rows]
        if any(isinstance(v, str) for v in values):
            return Series(t, np.asarray(values, dtype=object))
        return Series(t, np.asarray([np.nan if v is None else v for v in values], dtype=np.float64))

    def _values(self, q: str) -> list[list]:
        out = []
        for result in self._query(q):
            for series in result.get("series", []):
                out += series.get("values", [])
        return out

    def size_bytes(self) -> int | None:
        return None

    def apply_retention(self, now, max_age, max_bytes) -> str | None:
        return None

    def close(self) -> None:
        self.state.close()
        self.http.close()


def _ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
