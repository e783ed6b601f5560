"""The embedded archive: one SQLite file (WAL) of block rows and rollups (blocking; one thread).

The file format and the queries are :mod:`ocs_core.archive.sqlite_reader`'s (clients read the
file with it too); this module creates the file and writes it. A write is one transaction:
samples, rollups written at ingest, stream state (seqs received, open gaps) and lost gaps together.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from ocs_core.archive import downsample as ds
from ocs_core.archive.sqlite_reader import (APPLICATION, SCHEMA, SCHEMA_VERSION, ArchiveFileError,
                                            ArchiveReader, check_archive)

from agents.archive.store import Batch, StoreCorrupt, StoreError
from agents.archive.tracker import Stream

__all__ = ["SQLiteStore"]

_CHUNK_SAMPLES = 8192
_UPSERT_ROLLUP = (
    "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, width, bucket) "
    "DO UPDATE SET n = n + excluded.n, vmin = min(vmin, excluded.vmin), "
    "vmax = max(vmax, excluded.vmax), vsum = vsum + excluded.vsum")


class SQLiteStore(ArchiveReader):
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
            try:
                check_archive(self.path)
            except ArchiveFileError as exc:
                raise StoreCorrupt(f"{exc}; refusing to overwrite it: move it away or choose "
                                   "another --data-dir") from None
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if max_pages:
                self.db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            if fresh:
                self.db.executescript(f"BEGIN; {SCHEMA} INSERT INTO meta VALUES "
                                      f"('application', '{APPLICATION}'), ('schema', "
                                      f"'{SCHEMA_VERSION}'); COMMIT;")
            self._load_series()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the archive {self.path}: {exc}") from None

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind, exc, tb):
            if kind is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # SQLite rolls back by itself on a full disk
                self.db.execute("ROLLBACK")

    def _transaction(self) -> "_Tx":
        return self._Tx(self.db)

    # -- writing -----------------------------------------------------------------------------
    def load_streams(self) -> list[Stream]:
        return [Stream.from_row(row) for row in self.stream_rows()]

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
                numeric = [self._write_series(key, parts, classes[key]) for key, parts in grouped.items()]
                self._write_rollups([n for n in numeric if n is not None])
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

    def _write_series(self, key, parts, agent_class):
        """Insert one series' block rows; return (series id, ts, values) when numeric."""
        numeric = all(isinstance(v, np.ndarray) for _, v in parts)
        kind = "f8" if numeric else "json"
        ts = np.concatenate([t for t, _ in parts]) if len(parts) > 1 else parts[0][0]
        if numeric:
            vals = np.concatenate([v for _, v in parts]) if len(parts) > 1 else parts[0][1]
        else:
            vals = np.asarray([x for _, v in parts for x in (v.tolist() if isinstance(v, np.ndarray) else v)],
                              dtype=object)
        if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
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
        if span > self._series[key][2]:
            self.db.execute("UPDATE series SET max_span = ? WHERE id = ?", (span, sid))
        self._series[key] = (sid, known_kind, span)
        return (sid, ts, vals) if kind == "f8" else None

    def _write_rollups(self, numeric: list) -> None:
        """The rollups of every numeric series of the write, all series at once per width."""
        if not numeric:
            return
        ts = np.concatenate([t for _, t, _ in numeric])
        vals = np.concatenate([v for _, _, v in numeric])
        group = np.repeat(np.asarray([sid for sid, _, _ in numeric], dtype=np.int64),
                          [len(t) for _, t, _ in numeric])
        for width in ds.ROLLUP_WIDTHS:
            sid, b, n, lo, hi, total = ds.rollup_many(ts, vals, group, width)
            self.db.executemany(_UPSERT_ROLLUP, zip(sid.tolist(), [width] * len(b), b.tolist(),
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
    # -- retention ---------------------------------------------------------------------------
    def apply_retention(self, now, max_age, max_bytes) -> str | None:
        cutoff = now - max_age if max_age else None
        size = self.size_bytes()
        if max_bytes and size > max_bytes:
            # drop the oldest block rows holding what must go to get to 80 % of the limit (at
            # most half of them per pass: the newest data always stays)
            count, data = self.db.execute(
                "SELECT count(*), coalesce(sum(length(ts) + length(vals)), 0) FROM chunks").fetchone()
            share = min(0.5, max(0.1, (size - 0.8 * max_bytes) / max(data, 1)))  # per pass
            row = self.db.execute("SELECT t1 FROM chunks ORDER BY t1 LIMIT 1 OFFSET ?",
                                  (min(count - 1, max(1, int(count * share))),)).fetchone()
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
