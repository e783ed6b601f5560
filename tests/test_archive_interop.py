"""ocs 0.12.1's own FakeDataAgent, archived: no seq, no history, stored at least once, tags kept."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ocs_core.testing import running_router

from archive_helpers import op, record_data, wait_until
from clients.archive import history
from ci import need_module


@pytest.mark.interop
def test_an_ocs_agent_is_archived_without_seq_or_history(tmp_path):
    need_module("ocs")
    instances = [{"agent-class": "FeedArchiver", "instance-id": "archiver",
                  "arguments": ["--data-dir", str(tmp_path / "data")]},
                 {"agent-class": "FakeDataAgent", "instance-id": "ocs-faker", "arguments": []}]
    with running_router(tmp_path / "r", instances=instances) as rt:
        arch = rt.agent("archiver")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with open(tmp_path / "ocs-faker.out", "ab") as log:
            ocs = subprocess.Popen(
                [sys.executable, "-m", "ocs.agents.fake_data.agent", "--site-file", str(rt.site_file),
                 "--site-host", "localhost", "--instance-id", "ocs-faker", "--crossbar-timeout", "60"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        address = rt.address("ocs-faker")
        try:
            arch.wait_registered(20)
            wait_until(lambda: "error" not in rt.call(address, "get_agent_class", timeout=2), 30,
                       "ocs's agent registered")
            # ocs answers null to a query it does not know: the archiver reads that as "no history"
            assert rt.call(address, "ocs_core.feed_history", feed="false_temperatures")["args"] == [None]
            wait_until(lambda: record_data(rt.http_url, rt.address("archiver")), 20, "record")
            op(rt.http_url, address, "start", "acq")
            time.sleep(4)
            op(rt.http_url, address, "stop", "acq")
            time.sleep(1.5)
            data = record_data(rt.http_url, rt.address("archiver"))
        finally:
            ocs.terminate()
            try:
                ocs.wait(2)
            except subprocess.TimeoutExpired:
                ocs.kill()
                ocs.wait()
            arch.terminate()
    assert data["feeds"] == {} and data["open_gaps"] == [] and data["samples_written"] >= 20
    h = history(address, "false_temperatures", start=0, stop=4e9, archive=tmp_path / "data" / "archive.sqlite")
    assert sorted(h.fields) == ["channel_00", "channel_01"]
    t = h["channel_00"].t
    assert len(t) >= 10 and np.all(np.diff(t) > 0)  # no outage: each sample once
    assert "Traceback" not in arch.log_text()
