"""The embedded archive: one SQLite file (WAL) of block rows and rollups (blocking; one thread).

Tables: ``series`` (address, feed, field), ``chunks`` (one row per series per write: the
samples as float64 blobs, or JSON for strings, with their time span), ``rollups`` (count, min,
max, sum per bucket for each width of :data:`~agents.archive.downsample.ROLLUP_WIDTHS`, updated
in the same transaction), ``streams`` (exactly-once state per feed run) and ``gaps`` (the ones
declared lost). A write is one transaction: samples, rollups and stream state together.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from agents.archive import downsample as ds
from agents.archive.store import Batch, Series, StoreCorrupt, StoreError
from agents.archive.tracker import Stream

__all__ = ["SQLiteStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1"
_APP = "ocs_core.archive"
_CHUNK_SAMPLES = 8192
_SCHEMA = """
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
_UPSERT_ROLLUP = (
    "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, width, bucket) "
    "DO UPDATE SET n = n + excluded.n, vmin = min(vmin, excluded.vmin), "
    "vmax = max(vmax, excluded.vmax), vsum = vsum + excluded.vsum")


class SQLiteStore:
    """The archive in ``path`` (created if missing; an existing non-archive file is refused).

    Args:
        path: the SQLite file.
        max_pages: optional hard cap on the file in pages (``PRAGMA max_page_count``).

    Raises:
        StoreCorrupt: the file exists and is not an ocs-core archive (it is left untouched).
        StoreError: the file or its directory cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike, max_pages: int | None = None) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if fresh:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the archive directory {self.path.parent}: "
                                 f"{exc.strerror}") from None
        else:
            self._check_existing()
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if max_pages:
                self.db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            if fresh:
                self.db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES "
                                      f"('application', '{_APP}'), ('schema', '{SCHEMA_VERSION}'); COMMIT;")
            self._load_series()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the archive {self.path}: {exc}") from None

    def _load_series(self) -> None:
        self._series: dict[tuple[str, str, str], tuple[int, str, float]] = {
            (a, f, k): (i, kind, span) for i, a, f, k, kind, span in
            self.db.execute("SELECT id, address, feed, field, kind, max_span FROM series")}

    def _check_existing(self) -> None:
        why = None
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta"))
                if meta.get("application") != _APP:
                    why = "it is an SQLite file of another application"
                elif meta.get("schema") != SCHEMA_VERSION:
                    why = f"its schema is {meta.get('schema')!r}, this archiver writes {SCHEMA_VERSION!r}"
                elif db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    why = "SQLite's quick_check finds it damaged"
            finally:
                db.close()
        except sqlite3.Error as exc:
            why = f"SQLite says: {exc}"
        if why:
            raise StoreCorrupt(f"{self.path} is not a usable ocs-core archive ({why}); refusing "
                               "to overwrite it: move it away or choose another --data-dir")

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind, exc, tb):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _transaction(self) -> "_Tx":
        return self._Tx(self.db)

    # -- writing -----------------------------------------------------------------------------
    def load_streams(self) -> list[Stream]:
        rows = self.db.execute("SELECT address, feed, session_id, max_seq, gaps, last_t FROM streams")
        return [Stream.from_row({"address": a, "feed": f, "session_id": s, "max_seq": m,
                                 "gaps": json.loads(g), "last_t": t}) for a, f, s, m, g, t in rows]

    def write(self, batch: Batch) -> None:
        grouped: dict[tuple[str, str, str], list] = defaultdict(list)
        classes: dict[tuple[str, str, str], str | None] = {}
        for event in batch.events:
            for block in event.blocks:
                for name, values in block.fields.items():
                    key = (event.address, event.feed, name)
                    grouped[key].append((block.timestamps, values))
                    classes[key] = event.agent_class
        try:
            with self._transaction():
                for key, parts in grouped.items():
                    self._write_series(key, parts, classes[key])
                self.db.executemany(
                    "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?, ?)",
                    [(r["address"], r["feed"], r["session_id"], r["max_seq"], json.dumps(r["gaps"]),
                      r["last_t"]) for r in batch.streams.values()])
                self.db.executemany(
                    "INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?, strftime('%s', 'now'))",
                    [(s.address, s.feed, s.session_id, g.first, g.last, g.t_before, g.t_after,
                      g.detected) for s, g in batch.lost])
        except sqlite3.Error as exc:
            self._load_series()  # forget the series ids of the rolled-back transaction
            raise StoreError(f"writing {self.path} failed: {exc}") from None

    def _write_series(self, key, parts, agent_class) -> None:
        numeric = all(isinstance(v, np.ndarray) for _, v in parts)
        kind = "f8" if numeric else "json"
        ts = np.concatenate([t for t, _ in parts])
        if numeric:
            vals = np.concatenate([v for _, v in parts])
        else:
            vals = np.asarray([x for _, v in parts for x in (v.tolist() if isinstance(v, np.ndarray) else v)],
                              dtype=object)
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        sid, known_kind, span = self._series_id(key, kind, agent_class)
        if known_kind != kind:  # a field that changed type: store as JSON from now on
            kind = "json"
            vals = vals.astype(object)
        rows = []
        for i in range(0, len(ts), _CHUNK_SAMPLES):
            t, v = ts[i:i + _CHUNK_SAMPLES], vals[i:i + _CHUNK_SAMPLES]
            blob = v.tobytes() if kind == "f8" else json.dumps(v.tolist()).encode()
            rows.append((sid, float(t[0]), float(t[-1]), len(t), t.tobytes(), blob))
            span = max(span, float(t[-1] - t[0]))
        self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.db.execute("UPDATE series SET max_span = ? WHERE id = ?", (span, sid))
        self._series[key] = (sid, known_kind, span)
        if kind == "f8":
            for width in ds.ROLLUP_WIDTHS:
                b, n, lo, hi, total = ds.rollup(ts, vals, width)
                self.db.executemany(_UPSERT_ROLLUP, zip([sid] * len(b), [width] * len(b), b.tolist(),
                                                        n.tolist(), lo.tolist(), hi.tolist(), total.tolist()))

    def _series_id(self, key, kind, agent_class) -> tuple[int, str, float]:
        known = self._series.get(key)
        if known is not None:
            return known
        cur = self.db.execute("INSERT INTO series (address, feed, field, kind, agent_class) "
                              "VALUES (?, ?, ?, ?, ?)", (*key, kind, agent_class))
        self._series[key] = (cur.lastrowid, kind, 0.0)
        return self._series[key]

    # -- reading -----------------------------------------------------------------------------
    def catalog(self) -> list[dict[str, Any]]:
        return [{"address": a, "feed": f, "field": k} for a, f, k in self.db.execute(
            "SELECT address, feed, field FROM series ORDER BY address, feed, field")]

    def query(self, address, feed, fields, start, stop, max_points) -> dict[str, Series]:
        known = {k: v for (a, f, k), v in self._series.items() if a == address and f == feed}
        if not known:
            raise KeyError(f"nothing archived for {address} feed {feed!r}; archived: "
                           f"{sorted({(a + '.' + f) for a, f, _ in self._series})}")
        wanted = sorted(known) if fields is None else list(fields)
        unknown = [f for f in wanted if f not in known]
        if unknown:
            raise KeyError(f"{address}.{feed} has no field(s) {unknown}; it has {sorted(known)}")
        return {f: self._query_one(*known[f], start, stop, max_points) for f in wanted}

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

    def gaps(self, address=None, feed=None) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT address, feed, session_id, first_seq, last_seq, t_before, t_after, detected "
            "FROM gaps WHERE (? IS NULL OR address = ?) AND (? IS NULL OR feed = ?) ORDER BY detected",
            (address, address, feed, feed))
        keys = ("address", "feed", "session_id", "first_seq", "last_seq", "t_before", "t_after",
                "detected")
        return [dict(zip(keys, r)) for r in rows]

    def size_bytes(self) -> int:
        pages, free, size = (self.db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    # -- retention ---------------------------------------------------------------------------
    def apply_retention(self, now, max_age, max_bytes) -> str | None:
        cutoff = now - max_age if max_age else None
        if max_bytes and self.size_bytes() > max_bytes:
            (count,) = self.db.execute("SELECT count(*) FROM chunks").fetchone()
            row = self.db.execute("SELECT t1 FROM chunks ORDER BY t1 LIMIT 1 OFFSET ?",
                                  (max(1, count // 10),)).fetchone()
            if row is not None:
                cutoff = row[0] if cutoff is None else max(cutoff, row[0])
        if cutoff is None:
            return None
        try:
            with self._transaction():
                dropped = self.db.execute("DELETE FROM chunks WHERE t1 < ?", (cutoff,)).rowcount
                self.db.execute("DELETE FROM rollups WHERE bucket + width <= ?", (cutoff,))
        except sqlite3.Error as exc:
            raise StoreError(f"retention on {self.path} failed: {exc}") from None
        if not dropped:
            return None
        return f"retention: dropped {dropped} block rows older than t={cutoff:.3f}"

    def close(self) -> None:
        self.db.close()
