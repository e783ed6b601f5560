"""Bad input to the archiver (malformed blocks, bad queries) and a full store: clear errors, it stays up."""
from __future__ import annotations

import math
import re

import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import threads

from archive_helpers import (FAKE_FEED, agent_history, caught_up, op, record_data,
                             samples_in_archive, samples_of_events, wait_until)
from clients.archive import history
from wamp_helpers import connect

T0 = 1_750_000_000.0


def _info(seq, feed="raw"):
    return {"agent_address": "observatory.badpub", "feed_name": feed, "session_id": "7.0",
            "record": True, "seq": seq, "agent_class": "Raw", "agg_params": {},
            "address": f"observatory.badpub.feeds.{feed}"}


@pytest_twisted.ensureDeferred
async def test_bad_blocks_are_refused_by_name_good_ones_kept(router, start_agent, tmp_path):
    data_dir = tmp_path / "data"
    agent = await threads.deferToThread(start_agent, "input-arch", "FeedArchiver",
                                        ["--data-dir", str(data_dir), "--flush-interval", "0.1"])
    archiver = router.address("input-arch")
    await threads.deferToThread(wait_until, lambda: record_data(router.http_url, archiver), 20, "record")
    session = await connect(router.ws_url)
    good = {"block_name": "good", "timestamps": [T0, T0 + 1, T0 + 2],
            "data": {"x": [1.0, float("nan"), float("inf")], "label": ["a", "b", "c"]}}
    blocks = {
        "no_times": {"block_name": "no_times", "data": {"x": [1.0]}},
        "lengths": {"block_name": "lengths", "timestamps": [T0, T0 + 1], "data": {"x": [1.0]}},
        "huge": {"block_name": "huge", "timestamps": list(range(500_001)),
                 "data": {"x": [0] * 500_001, "y": [0] * 500_001}},
        "bad_time": {"block_name": "bad_time", "timestamps": [float("nan")], "data": {"x": [1.0]}},
    }
    try:
        await session.publish("observatory.badpub.feeds.raw", [{"good": good, **blocks}, _info(1)],
                              options=PublishOptions(acknowledge=True))
        await session.publish("observatory.badpub.feeds.raw", ["not a dict", _info(2)],
                              options=PublishOptions(acknowledge=True))
        await session.publish("observatory.badpub.feeds.raw", "not an event",
                              options=PublishOptions(acknowledge=True))
    finally:
        session.leave()
    data = await threads.deferToThread(wait_until, lambda: (lambda d: d if d.get("rejected_blocks", 0) >= 6
                                                            and d.get("backlog_samples") == 0 else None)(
        record_data(router.http_url, archiver)), 20, "the rejections counted")
    assert data["feeds"]["observatory.badpub.raw"]["last_seq"] == 2
    h = await threads.deferToThread(history, "observatory.badpub", "raw", start=T0 - 1, stop=T0 + 10,
                                    archive=data_dir / "archive.sqlite")
    x = h["x"].value
    assert h["x"].t.tolist() == [T0, T0 + 1, T0 + 2] and x[0] == 1.0 and math.isnan(x[1]) and x[2] == math.inf
    assert h["label"].value.tolist() == ["a", "b", "c"]
    log = agent.log_text()
    for why in ("block 'no_times': no timestamps", "block 'lengths': field 'x' has 1 values for 2",
                "block 'huge': 500001 timestamps x 2 fields is more than 1000000 values",
                "block 'bad_time': timestamps must be finite", "payload is str, not a dict",
                "a feed event is [payload, feed_info]"):
        assert why in log, why
    assert "Traceback" not in log

    # bad queries: a clear error each, the agent stays up
    for params, text in [({"address": "observatory.nobody", "feed": "f"}, "nothing archived for observatory.nobody"),
                         ({"address": "observatory.badpub", "feed": "raw", "fields": ["zz"]},
                          "has no field(s) ['zz']; it has ['label', 'x']"),
                         ({"address": "observatory.badpub"}, "query needs feed="),
                         ({"address": "observatory.badpub", "feed": "raw", "start": 10.0, "stop": 5.0},
                          "start (10.0) must be before stop (5.0)")]:
        await threads.deferToThread(op, router.http_url, archiver, "start", "query", params)
        reply = await threads.deferToThread(op, router.http_url, archiver, "wait", "query", None, 10)
        assert reply[2]["success"] is False and text in str(reply[2]["messages"]), (params, reply)
    started = await threads.deferToThread(op, router.http_url, archiver, "start", "query", {"max_points": 0})
    assert started[0] == -1 and "max_points" in started[1]
    await threads.deferToThread(op, router.http_url, archiver, "start", "query", {})
    reply = await threads.deferToThread(op, router.http_url, archiver, "wait", "query", None, 10)
    assert {"address": "observatory.badpub", "feed": "raw", "field": "x"} in reply[2]["data"]["catalog"]
    assert record_data(router.http_url, archiver)["store_error"] is None

    # record stopped and started again: the exactly-once state comes back from the store
    await threads.deferToThread(op, router.http_url, archiver, "stop", "record")
    await threads.deferToThread(op, router.http_url, archiver, "wait", "record", None, 10)
    assert (await threads.deferToThread(op, router.http_url, archiver, "start", "record"))[0] == 0
    again = await threads.deferToThread(wait_until, lambda: record_data(router.http_url, archiver).get(
        "feeds"), 20, "record running again")
    assert again["observatory.badpub.raw"] == {"session_id": "7.0", "last_seq": 2, "missing": 0}


def test_a_full_store_is_a_clear_error_then_resumes_and_back_fills(router, start_agent, tmp_path):
    data_dir = tmp_path / "data"
    arch = start_agent("full-arch", "FeedArchiver", [
        "--data-dir", str(data_dir), "--sqlite-max-pages", "100", "--retention-size", "200KB",
        "--retention-period", "8", "--max-backlog", "500"])
    archiver = router.address("full-arch")
    wait_until(lambda: record_data(router.http_url, archiver), 20, "record")
    start_agent("full-pub", arguments=["--sample-rate", "100", "--num-channels", "32",
                                             "--buffer-time", "0"])
    address = router.address("full-pub")
    op(router.http_url, address, "start", "acq")
    try:
        full = wait_until(lambda: (lambda d: d if d.get("store_error") else None)(
            record_data(router.http_url, archiver)), 60, "the store to fill up")
        assert "database or disk is full" in full["store_error"] and str(data_dir) in full["store_error"]
        status = op(router.http_url, archiver, "status", "record")[2]
        assert status["status"] == "running"
        assert router.call(archiver, "get_agent_class")["args"] == ["FeedArchiver"]
        wait_until(lambda: "retention: dropped" in arch.log_text() and
                   record_data(router.http_url, archiver).get("store_error") is None, 60,
                   "retention to free space and writes to resume",
                   describe=lambda: (record_data(router.http_url, archiver), arch.log_text()[-3000:]))
    finally:
        op(router.http_url, address, "stop", "acq")
        op(router.http_url, address, "wait", "acq", None, 10)
    events, page = agent_history(router.http_url, address, FAKE_FEED)
    data = wait_until(lambda: caught_up(router.http_url, archiver, {f"{address}.{FAKE_FEED}": page["last_seq"]}),
                      60, "the archive to catch up", describe=lambda: caught_up.last)
    assert data["refused_events"] > 0  # refused while full, back-filled since
    got = samples_in_archive(data_dir / "archive.sqlite", address, FAKE_FEED)
    cutoff = max(float(c) for c in re.findall(r"older than t=([0-9.]+)", arch.log_text()))
    expected = samples_of_events(events)
    compared = 0
    for key, samples in expected.items():
        kept = [s for s in samples if s[0] >= cutoff]
        assert [s for s in got[key] if s[0] >= cutoff] == kept, key
        compared += len(kept)
    assert compared > 100
    log = arch.log_text()
    assert "the store is writable again" in log and "Traceback" not in log
    assert len([ln for ln in log.splitlines() if "database or disk is full" in ln]) >= 1
