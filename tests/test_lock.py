"""TimeoutLock: timeouts, job names and first-come-first-served order (real threads)."""
import threading
import time

import pytest


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)

from ocs_core.runtime.lock import TimeoutLock


def test_timeout_and_job_name():
    lock = TimeoutLock()
    assert lock.acquire(job="acq") and lock.job == "acq" and lock.locked
    result = []
    t = threading.Thread(target=lambda: result.append(lock.acquire(timeout=0.05, job="other")))
    t.start()
    t.join(5)
    assert result == [False] and lock.job == "acq"
    lock.release()
    assert not lock.locked and lock.job is None
    with pytest.raises(RuntimeError, match="unheld"):
        lock.release()


def test_context_manager_releases_only_when_acquired():
    lock = TimeoutLock()
    with lock.acquire_timeout(1, job="a") as got:
        assert got and lock.job == "a"
        with lock.acquire_timeout(0) as again:
            assert again is False
        assert lock.locked
    assert not lock.locked


def test_waiters_are_served_in_order():
    lock = TimeoutLock()
    lock.acquire(job="main")
    order, started = [], []

    def waiter(name):
        started.append(name)
        with lock.acquire_timeout(10, job=name):
            order.append(name)

    threads = []
    for name in ("first", "second", "third"):
        t = threading.Thread(target=waiter, args=(name,))
        t.start()
        threads.append(t)
        wait_for(lambda: len(lock._queue) == len(threads))  # queued before the next starts
    lock.release()
    for t in threads:
        t.join(5)
    assert order == ["first", "second", "third"]


def test_release_and_acquire_lets_a_waiter_in():
    lock = TimeoutLock()
    lock.acquire(job="loop")
    got_in = threading.Event()

    def task():
        with lock.acquire_timeout(10, job="task"):
            got_in.set()

    t = threading.Thread(target=task)
    t.start()
    wait_for(lambda: len(lock._queue) == 1)
    assert lock.release_and_acquire(timeout=10)
    assert got_in.is_set() and lock.job == "loop"
    lock.release()
    t.join(5)
