"""SQLite persistence for OBE runs: configurations, every measurement, posterior snapshots.

One database file per agent instance (standard-library :mod:`sqlite3`, WAL journal). Tables:

* ``runs(id, created, config JSON, status)`` -- ``status`` is ``'active'`` for the current run,
  ``'replaced'`` once a newer run starts, or whatever :meth:`RunStore.set_status` wrote;
* ``measurements(run_id, idx, settings JSON, y JSON, sigma JSON, time)`` -- ``idx`` counts from 0
  within a run;
* ``snapshots(run_id, n_measurements, created, names JSON, arrays BLOB, meta JSON)`` -- ``arrays``
  holds the named numpy arrays written one after another with ``np.save(allow_pickle=False)``
  and read back with ``np.load(allow_pickle=False)``: no pickle ever touches this file.

Durability: every write method commits before it returns. The default, ``durable=False``
(WAL with ``synchronous=NORMAL``: no fsync per commit), survives a killed process (kill -9 loses
no committed measurement: the WAL is in the operating system's page cache); a power cut or an OS
crash may lose the last commits. ``durable=True`` (``synchronous=FULL``, an fsync per commit)
also survives power loss; its cost per measurement is in docs/benchmarks.md.

Checkpoints: the writing connection's auto-checkpoint is off (``wal_autocheckpoint=0``), so a
commit never waits for the fsync of a checkpoint; a checkpoint thread with its own connection
runs ``wal_checkpoint(PASSIVE)`` (it never blocks a writer) once ``checkpoint_pages`` pages were
written since the last one, or every ``checkpoint_seconds`` when anything was. With
``synchronous=NORMAL`` a commit is then a write to the operating system's page cache: the OBE
service may commit a measurement from the reactor thread (see ``OBEService.inline_lock``).

Thread-safety: one connection opened with ``check_same_thread=False``; every public method holds
one ``threading.RLock`` (:attr:`RunStore.lock`) for its whole transaction, so a store may be
shared by the reactor thread and worker threads; a caller that must not wait takes
``lock.acquire(blocking=False)`` first.
"""
from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["RunStore", "Measurement", "Snapshot"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    settings TEXT NOT NULL,
    y TEXT NOT NULL,
    sigma TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    n_measurements INTEGER NOT NULL,
    created REAL NOT NULL,
    names TEXT NOT NULL,
    arrays BLOB NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (run_id, n_measurements)
);
"""


class Measurement(NamedTuple):
    """One stored measurement."""

    index: int
    settings: Any
    y: Any
    sigma: Any
    time: float


class Snapshot(NamedTuple):
    """A stored posterior: the measurement count it includes, its arrays and its metadata."""

    n_measurements: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def _to_json(value: Any) -> str:
    """JSON text for ``value``; numpy values go through ``tolist()``; NaN/inf are refused."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")

    return json.dumps(value, default=default, allow_nan=False)


def _pack_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    names = []
    for name, array in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be strings, got {name!r}")
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object; only plain numeric arrays are stored")
        np.save(buffer, array, allow_pickle=False)
        names.append(name)
    return json.dumps(names), buffer.getvalue()


def _unpack_arrays(names_json: str, blob: bytes) -> dict[str, np.ndarray]:
    buffer = io.BytesIO(blob)
    return {name: np.load(buffer, allow_pickle=False) for name in json.loads(names_json)}


class RunStore:
    """Runs, measurements and posterior snapshots of one OBE agent instance in one SQLite file.

    Args:
        path: the database file (created if missing), or ``":memory:"`` for tests.
        durable: ``synchronous=FULL`` (survives power loss) if True, else ``NORMAL`` (default:
            survives a killed process, no fsync per measurement).
        keep_snapshots: newest snapshots kept per run (older ones are deleted); None keeps all.
        checkpoint_pages, checkpoint_seconds: when the checkpoint thread checkpoints the WAL.
    """

    def __init__(self, path: str | Path, *, durable: bool = False, keep_snapshots: int | None = 3,
                 checkpoint_pages: int = 1000, checkpoint_seconds: float = 2.0) -> None:
        if keep_snapshots is not None and keep_snapshots < 1:
            raise ValueError(f"keep_snapshots must be >= 1 or None, got {keep_snapshots!r}")
        self.path = str(path)
        self.durable = bool(durable)
        self.keep_snapshots = keep_snapshots
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._checkpointer: _Checkpointer | None = None
        if str(mode).lower() == "wal":
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, checkpoint_pages, checkpoint_seconds)
        with self._lock, self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: schema version {version} is newer than {_SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock every public method holds for its whole transaction (re-entrant)."""
        return self._lock

    def _transaction(self, pages: int = 1) -> "_Transaction":
        return _Transaction(self._db, self._checkpointer, pages)

    def _check_run(self, run_id: int) -> None:
        if self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise KeyError(f"no run with id {run_id!r}")

    def close(self) -> None:
        """Close the database (idempotent); the checkpoint thread checkpoints once more and ends."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            if not isinstance(self._db, _Closed):
                self._db.close()
                self._db = _Closed()  # type: ignore[assignment]

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------------------

    def new_run(self, config: Mapping[str, Any]) -> int:
        """Store a new run as the current one (earlier active runs become ``'replaced'``).

        Returns:
            The new run's id.
        """
        config_json = _to_json(dict(config))
        with self._lock, self._transaction():
            self._db.execute("UPDATE runs SET status = 'replaced' WHERE status = 'active'")
            cursor = self._db.execute("INSERT INTO runs (created, config, status) VALUES (?, ?, 'active')",
                                      (time.time(), config_json))
            return int(cursor.lastrowid)

    def set_status(self, run_id: int, status: str) -> None:
        """Set a run's status, e.g. ``'finished'``; only ``'active'`` runs are current."""
        with self._lock, self._transaction():
            self._check_run(run_id)
            self._db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def current_run(self) -> tuple[int, dict[str, Any]] | None:
        """The newest ``'active'`` run as ``(run_id, config)``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, config FROM runs WHERE status = 'active' ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def run(self, run_id: int) -> dict[str, Any]:
        """One run: id, created, config, status, n_measurements. Raises KeyError if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, created, config, status, "
                "(SELECT COUNT(*) FROM measurements WHERE run_id = runs.id) FROM runs WHERE id = ?",
                (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run with id {run_id!r}")
        return {"id": row[0], "created": row[1], "config": json.loads(row[2]), "status": row[3],
                "n_measurements": row[4]}

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first: id, created, status, n_measurements."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, status, (SELECT COUNT(*) FROM measurements WHERE run_id = runs.id) "
                "FROM runs ORDER BY id").fetchall()
        return [{"id": r[0], "created": r[1], "status": r[2], "n_measurements": r[3]} for r in rows]

    # -- measurements ------------------------------------------------------------------------------

    def append_measurements(self, run_id: int, records: Iterable[Sequence[Any]]) -> int:
        """Append measurements ``(settings, y, sigma)`` to a run, committed before returning.

        Returns:
            The index of the first appended record (the run's measurement count before the call).

        Raises:
            KeyError: unknown run. ValueError/TypeError: a value JSON cannot hold (NaN included).
        """
        now = time.time()
        rows = []
        for record in records:
            if len(record) != 3:
                raise ValueError(f"a measurement record is (settings, y, sigma), got {len(record)} items")
            rows.append(tuple(_to_json(item) for item in record))
        with self._lock, self._transaction():
            self._check_run(run_id)
            first = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM measurements WHERE run_id = ?",
                                     (run_id,)).fetchone()[0]
            self._db.executemany(
                "INSERT INTO measurements (run_id, idx, settings, y, sigma, time) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, first + i, *row, now) for i, row in enumerate(rows)])
        return int(first)

    def count_measurements(self, run_id: int) -> int:
        """How many measurements a run holds."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM measurements WHERE run_id = ?",
                                        (run_id,)).fetchone()[0])

    def measurements(self, run_id: int, since_index: int = 0, limit: int | None = None) -> list[Measurement]:
        """A run's measurements with ``index >= since_index``, in order (at most ``limit``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, settings, y, sigma, time FROM measurements WHERE run_id = ? AND idx >= ? "
                "ORDER BY idx LIMIT ?", (run_id, since_index, -1 if limit is None else limit)).fetchall()
        return [Measurement(r[0], json.loads(r[1]), json.loads(r[2]), json.loads(r[3]), r[4]) for r in rows]

    # -- snapshots ---------------------------------------------------------------------------------

    def save_snapshot(self, run_id: int, n_measurements: int, arrays: Mapping[str, np.ndarray],
                      meta: Mapping[str, Any]) -> None:
        """Store the posterior after ``n_measurements`` measurements (replacing one with that count).

        ``meta`` must be JSON-serialisable (e.g. ``{"rng": generator.bit_generator.state}``).
        """
        names, blob = _pack_arrays(arrays)
        meta_json = _to_json(dict(meta))
        with self._lock, self._transaction(pages=2 + len(blob) // 4096):
            self._check_run(run_id)
            self._db.execute(
                "INSERT OR REPLACE INTO snapshots (run_id, n_measurements, created, names, arrays, meta) "
                "VALUES (?, ?, ?, ?, ?, ?)", (run_id, n_measurements, time.time(), names, blob, meta_json))
            if self.keep_snapshots is not None:
                self._db.execute(
                    "DELETE FROM snapshots WHERE run_id = ? AND n_measurements NOT IN "
                    "(SELECT n_measurements FROM snapshots WHERE run_id = ? ORDER BY n_measurements DESC LIMIT ?)",
                    (run_id, run_id, self.keep_snapshots))

    def latest_snapshot(self, run_id: int) -> Snapshot | None:
        """The snapshot with the most measurements, as ``(n, arrays, meta)``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT n_measurements, names, arrays, meta FROM snapshots WHERE run_id = ? "
                "ORDER BY n_measurements DESC LIMIT 1", (run_id,)).fetchone()
        if row is None:
            return None
        return Snapshot(row[0], _unpack_arrays(row[1], row[2]), json.loads(row[3]))


class _Closed:
    """Stands in for the connection after :meth:`RunStore.close`."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the run store is closed")


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection;
    a commit tells the checkpointer about the (estimated) pages it wrote."""

    def __init__(self, db: sqlite3.Connection, checkpointer: "_Checkpointer | None", pages: int) -> None:
        self._db, self._checkpointer, self._pages = db, checkpointer, pages

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        if not exc_type and self._checkpointer is not None:
            self._checkpointer.wrote(self._pages)


class _Checkpointer:
    """Checkpoints the WAL (``PASSIVE``: writers never wait) from its own thread and connection."""

    def __init__(self, path: str, pages: int, seconds: float) -> None:
        if pages < 1 or not seconds > 0:
            raise ValueError(f"checkpoint_pages must be >= 1 and checkpoint_seconds > 0, got {pages}, {seconds}")
        self.path, self.pages, self.seconds = path, pages, seconds
        self.pending = 0  # pages written since the last checkpoint (an estimate)
        self.checkpoints = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="obe-store-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self, pages: int) -> None:
        """Called after each commit (with the store's lock held)."""
        self.pending += pages
        if self.pending >= self.pages:
            self._wake.set()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            while True:
                self._wake.wait(self.seconds)
                self._wake.clear()
                if self.pending:
                    self.pending = 0
                    try:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        self.checkpoints += 1
                    except sqlite3.Error:  # e.g. the file went away; the next commit retries
                        self.pending = 1
                if self._stopping:
                    return
        finally:
            db.close()

    def close(self) -> None:
        """One last checkpoint of what is pending, then end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(30)
