"""The InfluxDB backend against a real influxd: ocs 0.12.1's series, exactly once through faults."""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest

from ocs_core.testing import running_router

from agents.archive.events import parse_event
from agents.archive.influx_store import InfluxStore
from agents.archive.line_protocol import event_lines
from agents.archive.store import Batch
from archive_helpers import (FAKE_FEED, agent_history, caught_up, op, record_data,
                             samples_of_events, wait_until)
from clients.archive import history
from influx_helpers import Influxd

T0 = 1_750_000_000.0
FAKE_TAGS = {"channel_00": {"channel": 0, "_field": "temperature"},
             "channel_01": {"channel": 1, "_field": "temperature"}}


def _event(seq, block, agent_class="FakeDataAgent", address="observatory.fake-data1",
           feed=FAKE_FEED):
    return [{block["block_name"]: block},
            {"agent_address": address, "agg_params": {"frame_length": 60}, "feed_name": feed,
             "address": f"{address}.feeds.{feed}", "record": True, "session_id": "1.5",
             "agent_class": agent_class, "seq": seq}]


BLOCKS = [
    {"block_name": "temps", "timestamps": [T0 + 0.25, T0 + 1.5],
     "data": {"channel_00": [0.1036, 0.1038], "channel_01": [0.0987, -1e-05]}, "influxdb_tags": FAKE_TAGS},
    {"block_name": "misc", "timestamps": [T0, T0 + 1],
     "data": {"count": [3, 4], "on": [True, False], "label": ["idle", "run"], "x": [0.5, 2.0]},
     "influxdb_tags": None},
    {"block_name": "one", "timestamp": T0 + 7.125, "data": {"v": 1.25}},
]


@pytest.fixture
def influxd(tmp_path):
    server = Influxd(tmp_path / "influxd")
    server.start()
    yield server
    server.stop()


@pytest.mark.interop
@pytest.mark.parametrize("block", BLOCKS, ids=["tags", "no_tags", "single"])
def test_lines_are_ocs_publisher_lines(block):
    from ocs.common.influxdb_drivers import format_data  # the peer, in tests only

    raw = _event(1, copy.deepcopy(block))
    ours, skipped = event_lines(parse_event(raw))
    theirs = format_data(copy.deepcopy(raw[0]), raw[1], protocol="line")
    assert ours == theirs and skipped == 0


def test_values_influxdb_cannot_store_are_left_out():
    raw = _event(1, {"block_name": "b", "timestamps": [T0, T0 + 1],
                     "data": {"x": [float("nan"), 1.0], "y": [float("inf"), 2.0]}})
    lines, skipped = event_lines(parse_event(raw))
    assert skipped == 2 and lines == [f"observatory.fake-data1,feed={FAKE_FEED} x=1.0,y=2.0 {int((T0 + 1) * 1e9)}"]


def test_store_writes_ocs_series_and_reads_them_back(influxd, tmp_path):
    store = InfluxStore(influxd.url, "ocs_test", str(tmp_path / "state.sqlite"))
    events = [parse_event(_event(i + 1, copy.deepcopy(b))) for i, b in enumerate(BLOCKS)]
    store.write(Batch(events=events))
    store.write(Batch(events=events))  # re-sent points overwrite themselves
    measurements = influxd.query("SHOW MEASUREMENTS", "ocs_test")["results"][0]["series"][0]["values"]
    assert sorted(m[0] for m in measurements) == ["FakeDataAgent", "observatory.fake-data1"]
    keys = influxd.query('SHOW TAG KEYS FROM "FakeDataAgent"', "ocs_test")["results"][0]["series"][0]["values"]
    assert sorted(k[0] for k in keys) == ["address_root", "channel", "feed", "instance_id"]
    got = store.query("observatory.fake-data1", FAKE_FEED, None, T0 - 1, T0 + 10, None)
    assert np.allclose(got["channel_01"].t, [T0 + 0.25, T0 + 1.5], rtol=0, atol=1e-6)  # ns, as ocs
    assert got["channel_01"].value.tolist() == [0.0987, -1e-05]
    assert got["count"].value.tolist() == [3, 4] and got["label"].value.tolist() == ["idle", "run"]
    assert np.allclose(got["v"].t, [T0 + 7.125], rtol=0, atol=1e-6)
    down = store.query("observatory.fake-data1", FAKE_FEED, ["channel_00"], T0 - 1, T0 + 10, 1)["channel_00"]
    assert down.downsampled and down.min.tolist() == [0.1036] and down.max.tolist() == [0.1038]
    assert math.isclose(down.value[0], 0.1037)
    with pytest.raises(KeyError, match="has no field\\(s\\) \\['nope'\\]"):
        store.query("observatory.fake-data1", FAKE_FEED, ["nope"], T0, T0 + 1, None)
    store.close()
    again = InfluxStore(influxd.url, "ocs_test", str(tmp_path / "state.sqlite"))
    assert len(again.catalog()) == 7


def test_kill_9_router_restart_and_influxd_down_10s_lose_nothing(influxd, tmp_path):
    args = ["--backend", "influxdb", "--influx-url", influxd.url, "--influx-db", "faults",
            "--data-dir", str(tmp_path / "data")]
    instances = [{"agent-class": "FeedArchiver", "instance-id": "archiver", "arguments": args}] + [
        {"agent-class": "FakeDataAgent", "instance-id": f"ipub{i}",
         "arguments": ["--sample-rate", "20", "--num-channels", "3", "--buffer-time", "0", "--seed", str(i)]}
        for i in range(2)]
    with running_router(tmp_path / "r", instances=instances) as rt:
        arch = rt.agent("archiver")
        pubs = [rt.agent(f"ipub{i}") for i in range(2)]
        archiver = rt.address("archiver")
        addresses = [rt.address(f"ipub{i}") for i in range(2)]
        try:
            for p in [arch] + pubs:
                p.wait_registered(20)
            wait_until(lambda: record_data(rt.http_url, archiver), 20, "record running")
            for a in addresses:
                op(rt.http_url, a, "start", "acq")
            for _ in range(2):
                time.sleep(2)
                arch.kill()
                time.sleep(2)
                arch.start()
                arch.wait_registered(20)
            rt.stop()
            rt.start()
            for p in [arch] + pubs:
                p.wait_registered(30)
            influxd.stop()
            down = wait_until(lambda: (lambda d: d if d.get("store_error") else None)(
                record_data(rt.http_url, archiver)), 20, "the archiver to notice influxd is down")
            assert "InfluxDB at " in down["store_error"] and "unreachable" in down["store_error"]
            time.sleep(10)
            influxd.start()
            time.sleep(2)
            for a in addresses:
                op(rt.http_url, a, "stop", "acq")
                op(rt.http_url, a, "wait", "acq", None, 10)
            histories = {a: agent_history(rt.http_url, a, FAKE_FEED) for a in addresses}
            last = {f"{a}.{FAKE_FEED}": page["last_seq"] for a, (_, page) in histories.items()}
            data = wait_until(lambda: caught_up(rt.http_url, archiver, last), 60, "caught up",
                              describe=lambda: caught_up.last)
            assert data["store_error"] is None and data["gaps_lost"] == 0
            for a, (events, page) in histories.items():
                assert page["oldest_seq"] == 1
                expected = samples_of_events(events)
                h = history(a, FAKE_FEED, start=0, stop=4e9, archiver="archiver", site_file=str(rt.site_file))
                for (address, name), samples in expected.items():
                    s = h[name]
                    got = list(zip(s.t.tolist(), s.value.tolist()))
                    assert len(got) == len(samples) and len(samples) > 100
                    assert np.allclose([g[0] for g in got], [x[0] for x in samples], rtol=0, atol=1e-6)
                    assert [g[1] for g in got] == [x[1] for x in samples]
            series = influxd.query('SHOW SERIES FROM "FakeDataAgent"', "faults")["results"][0]["series"][0]
            assert len(series["values"]) == 6  # 2 agents x 3 channels, as ocs's publisher writes them
        finally:
            for p in [arch] + pubs:
                p.terminate()
    log = arch.log_text()
    assert "Traceback" not in log and "the store is writable again" in log
