"""A real FakeDataAgent answers ``ocs_core.feed_history`` through the router, tags included."""
import time

from ocs_core.testing import http_call


def _until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


def test_history_query_through_the_router(router, start_agent):
    agent = start_agent("hist-faker", arguments=["--sample-rate", "20", "--buffer-time", "0"])
    address = router.address("hist-faker")
    assert router.call(f"{address}.ops", "start", "acq", {})["args"][0][0] == 0

    def some():
        reply = router.call(address, "ocs_core.feed_history", feed="false_temperatures")
        assert "error" not in reply, reply
        return reply["args"][0] if len(reply["args"][0]["events"]) >= 5 else None

    reply = _until(some, what="5 events in the history")
    seqs = [e[1]["seq"] for e in reply["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and reply["oldest_seq"] == 1
    block = reply["events"][0][0]["temps"]
    assert block["influxdb_tags"] == {"channel_00": {"channel": 0, "_field": "temperature"},
                                      "channel_01": {"channel": 1, "_field": "temperature"}}
    after = router.call(address, "ocs_core.feed_history", feed="false_temperatures",
                        after_seq=seqs[-1])["args"][0]
    assert all(e[1]["seq"] > seqs[-1] for e in after["events"])

    # ocs 0.12.1's InfluxDB publisher writes our FakeData as it writes its own
    from ocs.common.influxdb_drivers import format_data
    payload, info = reply["events"][0]
    value = payload["temps"]["data"]["channel_01"][0]
    ns = int(payload["temps"]["timestamps"][0] * 1e9)
    lines = format_data(payload, info, protocol="line")  # one per channel and timestamp, any order
    assert (f"FakeDataAgent,feed=false_temperatures,address_root=observatory,instance_id=hist-faker,"
            f"channel=1 temperature={value} {ns}") in lines, lines[:4]

    bad = router.call(address, "ocs_core.feed_history", feed="nope")
    assert bad["error"] == "wamp.error.runtime_error"
    assert "no recorded feed 'nope'" in bad["args"][0] and "false_temperatures" in bad["args"][0]
    assert router.call(address, "ocs_core.no_such_query")["args"] == [None]
    assert http_call(router.http_url, address, "get_agent_class")["args"] == ["FakeDataAgent"]
    assert "Traceback" not in agent.log_text()
