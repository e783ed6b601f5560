"""The archiver on a real router with real agents: every published sample stored exactly once.

Ground truth is what the publishers published: a subscriber's log (clean run), or the agents'
own feed history (fault runs, where the subscriber itself would miss events).
"""
from __future__ import annotations

import csv

import pytest_twisted
from twisted.internet import threads

from ocs_core.testing import free_port, running_router, wait_listening

from archive_helpers import (FAKE_FEED, caught_up, op, record_data,
                             samples_in_archive, samples_of_events, wait_until)
from clients.archive import history
from ocs_core.cli.main import main as ocs_core_main
from wamp_helpers import Subscriber
from ocs_core.runtime.timing import dsleep


@pytest_twisted.ensureDeferred
async def test_every_sample_once_fake_data_100hz_8ch_and_the_instrument(tmp_path, capsys):
    port = free_port()
    data_dir = tmp_path / "data"
    instances = [
        {"agent-class": "FeedArchiver", "instance-id": "archiver", "arguments": ["--data-dir", str(data_dir)]},
        {"agent-class": "FakeDataAgent", "instance-id": "fast",
         "arguments": ["--sample-rate", "100", "--num-channels", "8", "--buffer-time", "0"]},
        {"agent-class": "SimulatedInstrument", "instance-id": "sim", "arguments": ["--port", port, "--seed", "3"]},
        {"agent-class": "InstrumentAgent", "instance-id": "inst",
         "arguments": ["--port", port, "--poll-interval", "0.05"]},
    ]
    with running_router(tmp_path / "r", instances=instances) as rt:
        procs = {i["instance-id"]: rt.agent(i["instance-id"]) for i in instances}
        subscriber = Subscriber(rt.ws_url, "observatory..feeds.", options={"match": "wildcard"})
        try:
            await threads.deferToThread(wait_listening, int(port), alive=procs["sim"])
            for name in ("archiver", "fast", "inst"):
                await threads.deferToThread(procs[name].wait_registered, 20)
            await subscriber.start()
            archiver, fast, inst = (rt.address(n) for n in ("archiver", "fast", "inst"))
            await threads.deferToThread(wait_until, lambda: record_data(rt.http_url, archiver),
                                        20, "the record Process running")
            for address in (fast, inst):
                assert (await threads.deferToThread(op, rt.http_url, address, "start", "acq"))[0] == 0
            await dsleep(20)
            for address in (fast, inst):
                await threads.deferToThread(op, rt.http_url, address, "stop", "acq")
                await threads.deferToThread(op, rt.http_url, address, "wait", "acq", None, 10)
            await dsleep(0.5)
            events = [e for e in subscriber.events if e[1].get("record")]
            last = {}
            for _, info in events:
                key = f"{info['agent_address']}.{info['feed_name']}"
                last[key] = max(last.get(key, 0), info["seq"])
            assert set(last) == {f"{fast}.{FAKE_FEED}", f"{inst}.instrument"}
            data = await threads.deferToThread(wait_until, lambda: caught_up(rt.http_url, archiver, last),
                                               30, "the archive caught up")
            # ocs-core history's default source: the site file's FeedArchiver, its query Task
            task_csv = tmp_path / "task.csv"
            assert await threads.deferToThread(ocs_core_main, [
                "history", "inst.instrument", "--site-file", str(rt.site_file), "--start", "0",
                "--stop", "4e9", "--csv", str(task_csv)]) == 0
        finally:
            await subscriber.stop()
            for p in procs.values():
                await threads.deferToThread(p.terminate)
        path = data_dir / "archive.sqlite"
        expected = samples_of_events(events)
        got = {**samples_in_archive(path, fast, FAKE_FEED), **samples_in_archive(path, inst, "instrument")}
        assert sorted(got) == sorted(expected)
        for key in expected:
            assert got[key] == expected[key], key  # every sample, once, same value
        n = sum(len(v) for v in expected.values())
        assert n >= 8 * 100 * 15 and len(expected[(fast, "channel_00")]) >= 1500
        assert data["duplicates"] == 0 and data["gaps_lost"] == 0 and data["rejected_blocks"] == 0
        assert data["store"] == str(path)
        log = procs["archiver"].log_text()
        assert log.count(f"archiving {fast} feed {FAKE_FEED}") == 1 and "Traceback" not in log

        # ocs-core history: the CSV's numbers are the published ones
        csv_path = tmp_path / "inst.csv"
        png_path = tmp_path / "inst.png"
        assert ocs_core_main(["history", "inst.instrument", "--archive", str(path), "--start", "0",
                              "--stop", "4e9", "--csv", str(csv_path), "--png", str(png_path)]) == 0
        out = capsys.readouterr().out
        assert f"{inst} instrument" in out and "value" in out and "no lost gaps" in out
        with open(csv_path) as fh:
            rows = list(csv.DictReader(fh))
        assert [(float(r["timestamp"]), float(r["value"])) for r in rows] == expected[(inst, "value")]
        with open(task_csv) as fh:
            assert [(float(r["timestamp"]), float(r["value"])) for r in csv.DictReader(fh)] == \
                expected[(inst, "value")]
        assert png_path.stat().st_size > 5000
        h = history("fast", FAKE_FEED, ["channel_03"], start=0, stop=4e9, max_points=50, archive=path)
        s = h["channel_03"]
        values = [v for _, v in expected[(fast, "channel_03")]]
        assert s.downsampled and len(s.t) <= 50
        assert min(s.min) == min(values) and max(s.max) == max(values)
