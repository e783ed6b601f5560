"""Tests for the SQLite run store: API, numpy snapshots without pickle, threads, kill -9."""
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agents.obe.run_store import Measurement, RunStore, Snapshot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "obe.sqlite")
    yield s
    s.close()


def test_runs_lifecycle(store):
    assert store.current_run() is None and store.list_runs() == []
    first = store.new_run({"model": "lorentzian", "n_particles": 1000})
    assert store.current_run() == (first, {"model": "lorentzian", "n_particles": 1000})
    store.append_measurements(first, [([1.0], 2.0, 0.5)])
    second = store.new_run({"model": "line"})
    assert second > first
    assert store.current_run() == (second, {"model": "line"})
    runs = store.list_runs()
    assert [(r["id"], r["status"], r["n_measurements"]) for r in runs] == [(first, "replaced", 1), (second, "active", 0)]
    assert all(isinstance(r["created"], float) for r in runs)
    info = store.run(first)
    assert info["config"] == {"model": "lorentzian", "n_particles": 1000} and info["n_measurements"] == 1
    store.set_status(second, "finished")
    assert store.current_run() is None
    with pytest.raises(KeyError):
        store.run(999)
    with pytest.raises(KeyError):
        store.set_status(999, "finished")


def test_measurements_indices_and_since(store):
    run = store.new_run({})
    assert store.append_measurements(run, [([1.0], 2.0, 0.5), ([np.float64(1.5)], np.array([1.0, 2.0]), [0.1, 0.2])]) == 0
    assert store.append_measurements(run, [([3, 4], 5, np.float32(0.25))]) == 2
    assert store.append_measurements(run, []) == 3
    ms = store.measurements(run)
    assert [m.index for m in ms] == [0, 1, 2]
    assert ms[1] == Measurement(1, [1.5], [1.0, 2.0], [0.1, 0.2], ms[1].time)
    assert ms[2].settings == [3, 4] and ms[2].sigma == 0.25
    assert [m.index for m in store.measurements(run, since_index=2)] == [2]
    assert [m.index for m in store.measurements(run, since_index=1, limit=1)] == [1]
    assert store.count_measurements(run) == 3
    other = store.new_run({})
    assert store.append_measurements(other, [([0.0], 0.0, 1.0)]) == 0
    assert store.count_measurements(run) == 3


def test_bad_measurements_are_refused_and_nothing_written(store):
    run = store.new_run({})
    with pytest.raises(KeyError):
        store.append_measurements(run + 1, [([1.0], 2.0, 0.5)])
    with pytest.raises(ValueError):
        store.append_measurements(run, [([1.0], float("nan"), 0.5)])
    with pytest.raises(ValueError):
        store.append_measurements(run, [([1.0], 2.0)])
    with pytest.raises(TypeError):
        store.append_measurements(run, [([object()], 2.0, 0.5)])
    assert store.measurements(run) == []
    with pytest.raises(ValueError):
        store.new_run({"bad": float("inf")})
    assert len(store.list_runs()) == 1


def test_snapshots_roundtrip_and_retention(tmp_path):
    store = RunStore(tmp_path / "s.sqlite", keep_snapshots=2)
    run = store.new_run({})
    assert store.latest_snapshot(run) is None
    rng = np.random.default_rng(7)
    arrays = {"particles": rng.normal(size=(3, 100)), "weights": np.full(100, 0.01),
              "int_settings": np.arange(5, dtype=np.int64), "flag": np.array(True)}
    for n in (10, 20, 30):
        store.save_snapshot(run, n, {**arrays, "n": np.array(n)}, {"rng": rng.bit_generator.state, "n": n})
    snap = store.latest_snapshot(run)
    assert isinstance(snap, Snapshot) and snap.n_measurements == 30
    for name, array in arrays.items():
        np.testing.assert_array_equal(snap.arrays[name], array)
        assert snap.arrays[name].dtype == array.dtype and snap.arrays[name].shape == array.shape
    assert snap.meta["rng"] == rng.bit_generator.state
    restored = np.random.default_rng()
    restored.bit_generator.state = snap.meta["rng"]
    assert restored.random() == rng.random()
    count = store._db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
    assert count == 2
    store.close()


def test_snapshot_refuses_object_arrays_and_blob_has_no_pickle(store):
    run = store.new_run({})
    with pytest.raises(TypeError):
        store.save_snapshot(run, 1, {"bad": np.array([{"a": 1}], dtype=object)}, {})
    with pytest.raises(KeyError):
        store.save_snapshot(run + 5, 1, {"w": np.ones(2)}, {})
    store.save_snapshot(run, 1, {"w": np.ones(2)}, {})
    blob = store._db.execute("SELECT arrays FROM snapshots").fetchone()[0]
    assert np.load(io.BytesIO(blob), allow_pickle=False).tolist() == [1.0, 1.0]


def test_reopen_after_dropping_without_close(tmp_path):
    path = tmp_path / "drop.sqlite"
    s = RunStore(path)
    run = s.new_run({"a": 1})
    s.append_measurements(run, [([1.0], 1.0, 1.0)] * 5)
    s.save_snapshot(run, 5, {"w": np.arange(3.0)}, {"k": "v"})
    del s  # never closed
    reopened = RunStore(path)
    assert reopened.current_run() == (run, {"a": 1})
    assert reopened.count_measurements(run) == 5
    assert reopened.latest_snapshot(run).meta == {"k": "v"}
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()
    reopened.close()
    with pytest.raises(RuntimeError, match="closed"):
        reopened.list_runs()
    with pytest.raises(RuntimeError, match="closed"):
        reopened.new_run({})


def test_threads_share_one_store(store):
    run = store.new_run({})
    errors = []

    def writer(k):
        try:
            for i in range(50):
                store.append_measurements(run, [([float(k)], float(i), 1.0)])
                store.measurements(run, since_index=0, limit=5)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert errors == []
    ms = store.measurements(run)
    assert [m.index for m in ms] == list(range(200))
    for k in range(4):
        assert [m.y for m in ms if m.settings == [float(k)]] == [float(i) for i in range(50)]


CHILD = r"""
import sys, numpy as np
from agents.obe.run_store import RunStore
store = RunStore(sys.argv[1])
run = store.new_run({"model": "crash-test"})
print("run", run, flush=True)
i = 0
while True:
    first = store.append_measurements(run, [([float(i)], float(i) * 2, 0.5)])
    if i % 10 == 9:
        store.save_snapshot(run, i + 1, {"w": np.full(4, float(i))}, {"i": i})
    print("ack", first, flush=True)
    i += 1
"""


def test_kill_9_loses_nothing_committed(tmp_path):
    path = tmp_path / "crash.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run = int(child.stdout.readline().split()[1])
        acked = []
        deadline = time.monotonic() + 60
        while len(acked) < 60 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line.startswith("ack"), line
            acked.append(int(line.split()[1]))
        assert acked == list(range(60))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    store = RunStore(path)
    try:
        assert store.current_run() == (run, {"model": "crash-test"})
        ms = store.measurements(run)
        assert len(ms) >= 60
        assert [m.index for m in ms] == list(range(len(ms)))
        assert all(m.y == 2.0 * m.settings[0] == 2.0 * m.index for m in ms)
        snap = store.latest_snapshot(run)
        assert snap.n_measurements >= 60 and snap.meta["i"] == snap.n_measurements - 1
        np.testing.assert_array_equal(snap.arrays["w"], np.full(4, float(snap.n_measurements - 1)))
        assert store.append_measurements(run, [([0.0], 0.0, 1.0)]) == len(ms)
    finally:
        store.close()


def test_wal_and_synchronous_normal_by_default_full_as_an_option(tmp_path):
    with RunStore(tmp_path / "a.sqlite") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with RunStore(tmp_path / "b.sqlite", durable=True) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_commits_never_checkpoint_the_checkpoint_thread_does(tmp_path):
    import time

    path = tmp_path / "runs.sqlite3"
    store = RunStore(path, checkpoint_pages=5, checkpoint_seconds=30)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert store.lock.acquire(blocking=False) and store.lock.acquire(blocking=False)  # re-entrant
    store.lock.release()
    store.lock.release()
    run = store.new_run({"model": "x"})
    store.append_measurements(run, [([1.0], 2.0, 0.1)] * 2)  # one commit (a page): no checkpoint yet
    checkpointer = store._checkpointer
    assert checkpointer.checkpoints == 0 and checkpointer.pending == 3  # with the schema
    for i in range(4):  # the 2nd reaches 5 pages
        store.append_measurements(run, [([float(i)], 2.0, 0.1)])
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpoints == 1
    store.append_measurements(run, [([9.0], 2.0, 0.1)])
    store.close()  # one last checkpoint of what is pending
    assert checkpointer.checkpoints == 2 and not checkpointer._thread.is_alive()
    with RunStore(path) as again:
        assert again.count_measurements(run) == 7
