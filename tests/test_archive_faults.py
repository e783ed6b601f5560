"""Faults: kill -9 of the archiver and a router restart while agents publish; bad input; a bad file.

After the faults every sample the agents published (their own feed history is the reference)
is in the archive exactly once: the archiver dropped the duplicates of redelivery and back-fill
and filled every gap from the agents' history.
"""
from __future__ import annotations

import time

from ocs_core.testing import running_router

from archive_helpers import (FAKE_FEED, agent_history, caught_up, op, record_data,
                             samples_in_archive, samples_of_events, wait_until)


def _publishers(n):
    return [{"agent-class": "FakeDataAgent", "instance-id": f"pub{i}",
             "arguments": ["--sample-rate", "20", "--num-channels", "4", "--buffer-time", "0",
                           "--seed", str(i)]} for i in range(n)]


def test_kill_9_twice_and_a_router_restart_lose_and_duplicate_nothing(tmp_path):
    data_dir = tmp_path / "data"
    instances = [{"agent-class": "FeedArchiver", "instance-id": "archiver",
                  "arguments": ["--data-dir", str(data_dir)]}] + _publishers(2)
    with running_router(tmp_path / "r", instances=instances) as rt:
        archiver_proc = rt.agent("archiver")
        pubs = [rt.agent(f"pub{i}") for i in range(2)]
        archiver = rt.address("archiver")
        addresses = [rt.address(f"pub{i}") for i in range(2)]
        try:
            for p in [archiver_proc] + pubs:
                p.wait_registered(20)
            wait_until(lambda: record_data(rt.http_url, archiver), 20, "record running")
            for a in addresses:
                assert op(rt.http_url, a, "start", "acq")[0] == 0
            for _ in range(2):  # kill -9, stay away 2 s, start again
                time.sleep(3)
                archiver_proc.kill()
                time.sleep(2)
                archiver_proc.start()
                archiver_proc.wait_registered(20)
            time.sleep(2)
            rt.stop()
            time.sleep(1)
            rt.start()
            for p in [archiver_proc] + pubs:
                p.wait_registered(30)
            time.sleep(3)
            for a in addresses:
                op(rt.http_url, a, "stop", "acq")
                op(rt.http_url, a, "wait", "acq", None, 10)
            histories = {a: agent_history(rt.http_url, a, FAKE_FEED) for a in addresses}
            last = {f"{a}.{FAKE_FEED}": page["last_seq"] for a, (_, page) in histories.items()}
            data = wait_until(lambda: caught_up(rt.http_url, archiver, last), 60,
                              "the archive caught up with both agents",
                              describe=lambda: caught_up.last)
        finally:
            for p in [archiver_proc] + pubs:
                p.terminate()
        path = data_dir / "archive.sqlite"
        for a, (events, page) in histories.items():
            assert page["oldest_seq"] == 1  # the reference is complete
            expected = samples_of_events(events)
            got = samples_in_archive(path, a, FAKE_FEED)
            assert sorted(got) == sorted(expected)
            for key in expected:
                missing = len(set(expected[key]) - set(got[key]))
                duplicated = len(got[key]) - len(set(got[key]))
                assert (missing, duplicated) == (0, 0), key
                assert got[key] == expected[key]
            assert len(expected[(a, "channel_00")]) > 200
        assert data["gaps_lost"] == 0 and data["open_gaps"] == []
        assert data["gaps_found"] >= 1 and data["gaps_filled"] >= 1  # the last restart's gap, filled
        log = archiver_proc.log_text()
        assert log.count("archiving to ") == 3 and "Traceback" not in log


def test_a_corrupt_archive_file_is_refused_and_the_agent_stays_up(router, start_agent, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    bad = data_dir / "archive.sqlite"
    bad.write_bytes(b"\x00garbage, not SQLite\n" * 64)
    agent = start_agent("corrupt-arch", "FeedArchiver", ["--data-dir", str(data_dir)])
    address = router.address("corrupt-arch")
    session = wait_until(lambda: (lambda s: s if s.get("status") == "done" else None)(
        op(router.http_url, address, "status", "record")[2]), 20, "record to end")
    assert session["success"] is False
    text = " | ".join(m[1] for m in session["messages"])
    assert str(bad) in text and "is not a usable ocs-core archive" in text and "refusing to overwrite" in text
    assert bad.read_bytes() == b"\x00garbage, not SQLite\n" * 64
    assert router.call(address, "get_agent_class")["args"] == ["FeedArchiver"]
    assert op(router.http_url, address, "start", "query", {"address": "x", "feed": "y"})[0] == 0
    q = op(router.http_url, address, "wait", "query", None, 10)[2]
    assert q["success"] is False and "record Process is not running" in str(q["messages"])
    assert f"record cannot start: {bad}" in agent.log_text() and "Traceback" not in agent.log_text()
