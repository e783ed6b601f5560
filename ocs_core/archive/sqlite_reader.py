"""Reading the feed archive's SQLite file: schema, series catalogue, raw and downsampled queries.

Tables: ``series`` (address, feed, field), ``chunks`` (one row per series per write: the
samples as float64 blobs, or JSON for strings, with their time span), ``rollups`` (count, min,
max, sum of finite values per bucket for each width of
:data:`~ocs_core.archive.downsample.ROLLUP_WIDTHS`), ``streams`` (exactly-once state per feed
run) and ``gaps`` (the ones declared lost). The archiver writes it (WAL mode); readers open it
read-only while it does.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ocs_core.archive import downsample as ds
from ocs_core.archive.series import Series, select_fields

__all__ = ["ArchiveReader", "ArchiveFileError", "check_archive", "SCHEMA", "SCHEMA_VERSION",
           "APPLICATION"]

SCHEMA_VERSION = "1"
APPLICATION = "ocs_core.archive"
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, address TEXT NOT NULL, feed TEXT NOT NULL,
    field TEXT NOT NULL, kind TEXT NOT NULL, agent_class TEXT, max_span REAL NOT NULL DEFAULT 0,
    UNIQUE (address, feed, field));
CREATE TABLE chunks (series_id INTEGER NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL,
    n INTEGER NOT NULL, ts BLOB NOT NULL, vals BLOB NOT NULL);
CREATE INDEX chunks_by_series ON chunks (series_id, t0);
CREATE INDEX chunks_by_end ON chunks (t1);
CREATE TABLE rollups (series_id INTEGER NOT NULL, width REAL NOT NULL, bucket REAL NOT NULL,
    n INTEGER NOT NULL, vmin REAL, vmax REAL, vsum REAL,
    PRIMARY KEY (series_id, width, bucket)) WITHOUT ROWID;
CREATE TABLE streams (address TEXT NOT NULL, feed TEXT NOT NULL, session_id TEXT NOT NULL,
    max_seq INTEGER NOT NULL, gaps TEXT NOT NULL, last_t REAL,
    PRIMARY KEY (address, feed, session_id));
CREATE TABLE gaps (address TEXT NOT NULL, feed TEXT NOT NULL, session_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, t_before REAL, t_after REAL,
    detected REAL NOT NULL, declared_lost REAL NOT NULL);
"""


class ArchiveFileError(RuntimeError):
    """The file is not an ocs-core archive (or is damaged); the text names it and says why."""


def check_archive(path: str | os.PathLike) -> None:
    """Raise ArchiveFileError unless ``path`` is an intact archive of this schema."""
    why = None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("application") != APPLICATION:
                why = "it is an SQLite file of another application"
            elif meta.get("schema") != SCHEMA_VERSION:
                why = f"its schema is {meta.get('schema')!r}, this version reads {SCHEMA_VERSION!r}"
            elif db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                why = "SQLite's quick_check finds it damaged"
        finally:
            db.close()
    except sqlite3.Error as exc:
        why = f"SQLite says: {exc}"
    if why:
        raise ArchiveFileError(f"{path} is not a usable ocs-core archive ({why})")


class ArchiveReader:
    """Queries on an archive file (read-only), or on a writer's own connection ``db``.

    Raises:
        ArchiveFileError: ``path`` is missing or not an archive.
    """

    def __init__(self, path: str | os.PathLike, db: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        if db is None:
            if not self.path.exists():
                raise ArchiveFileError(f"{self.path}: no such archive file")
            check_archive(self.path)
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self.db = db
        self._load_series()

    def _load_series(self) -> None:
        self._series: dict[tuple[str, str, str], tuple[int, str, float]] = {
            (a, f, k): (i, kind, span) for i, a, f, k, kind, span in
            self.db.execute("SELECT id, address, feed, field, kind, max_span FROM series")}

    def stream_rows(self) -> list[dict[str, Any]]:
        """The exactly-once state of every feed run (address, feed, session_id, max_seq, gaps, last_t)."""
        rows = self.db.execute("SELECT address, feed, session_id, max_seq, gaps, last_t FROM streams")
        return [{"address": a, "feed": f, "session_id": s, "max_seq": m, "gaps": json.loads(g),
                 "last_t": t} for a, f, s, m, g, t in rows]

    def catalog(self) -> list[dict[str, Any]]:
        """Every archived series: address, feed, field."""
        self._load_series()
        return [{"address": a, "feed": f, "field": k} for a, f, k in self.db.execute(
            "SELECT address, feed, field FROM series ORDER BY address, feed, field")]

    def query(self, address: str, feed: str, fields: list[str] | None, start: float, stop: float,
              max_points: int | None) -> dict[str, Series]:
        """Each field's samples in ``[start, stop]``; more than ``max_points`` are bucketed.

        Raises:
            KeyError: nothing archived for the feed, or an unknown field (the text lists what is).
        """
        self._load_series()
        chosen = select_fields(self._series, address, feed, fields)
        return {f: self._query_one(*handle, start, stop, max_points) for f, handle in chosen.items()}

    def _query_one(self, sid, kind, span, start, stop, max_points) -> Series:
        if max_points and kind == "f8":
            width = ds.bucket_width(start, stop, max_points)
            base = ds.rollup_width(width)
            if base is not None and self._count(sid, start, stop) > max_points:
                out = ds.output_width(width, base)
                rows = np.asarray(self.db.execute(
                    "SELECT bucket, n, vmin, vmax, vsum FROM rollups WHERE series_id = ? AND width = ? "
                    "AND bucket >= ? AND bucket <= ? ORDER BY bucket",
                    (sid, base, start - base + 1e-9, stop)).fetchall(), dtype=np.float64).reshape(-1, 5)
                t, mean, lo, hi = ds.combine_rollups(*rows.T, start, out, base)
                return Series(t, mean, lo, hi)
        ts, vals = self._raw(sid, kind, span, start, stop)
        if max_points and len(ts) > max_points:
            if kind == "f8":
                t, mean, lo, hi = ds.bucket_raw(ts, vals, start, ds.bucket_width(start, stop, max_points))
                return Series(t, mean, lo, hi)
            ts, vals = ds.thin(ts, vals, max_points)
        return Series(ts, vals)

    def _count(self, sid, start, stop) -> int:
        (n,) = self.db.execute("SELECT coalesce(sum(n), 0) FROM rollups WHERE series_id = ? AND "
                               "width = 600.0 AND bucket >= ? AND bucket <= ?",
                               (sid, start - 600.0, stop)).fetchone()
        return n

    def _raw(self, sid, kind, span, start, stop):
        rows = self.db.execute("SELECT ts, vals FROM chunks WHERE series_id = ? AND t0 >= ? AND t0 <= ? "
                               "AND t1 >= ? ORDER BY t0", (sid, start - span, stop, start)).fetchall()
        if not rows:
            return np.empty(0), (np.empty(0) if kind == "f8" else np.empty(0, dtype=object))
        ts = np.concatenate([np.frombuffer(t, dtype=np.float64) for t, _ in rows])
        if kind == "f8":
            vals = np.concatenate([np.frombuffer(v, dtype=np.float64) for _, v in rows])
        else:
            vals = np.asarray([x for _, v in rows for x in json.loads(v)], dtype=object)
        if len(ts) > 1 and (np.diff(ts) < 0).any():
            order = np.argsort(ts, kind="stable")
            ts, vals = ts[order], vals[order]
        keep = (ts >= start) & (ts <= stop)
        return ts[keep], vals[keep]

    def gaps(self, address: str | None = None, feed: str | None = None) -> list[dict[str, Any]]:
        """The gaps declared lost, oldest first."""
        rows = self.db.execute(
            "SELECT address, feed, session_id, first_seq, last_seq, t_before, t_after, detected "
            "FROM gaps WHERE (? IS NULL OR address = ?) AND (? IS NULL OR feed = ?) ORDER BY detected",
            (address, address, feed, feed))
        keys = ("address", "feed", "session_id", "first_seq", "last_seq", "t_before", "t_after",
                "detected")
        return [dict(zip(keys, r)) for r in rows]

    def size_bytes(self) -> int:
        """Bytes of the pages in use."""
        pages, free, size = (self.db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
