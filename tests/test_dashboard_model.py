"""The dashboard's pure site model: heartbeats, lost agents, recorded-feed buffers; history checks."""
from __future__ import annotations

import pytest

from clients.dashboard.history import HistoryUnavailable, check_query
from clients.dashboard.model import FeedEventError, SiteModel, decode_feed_event


def info(address, feed="heartbeat", session_id="1.0", cls="FakeDataAgent", record=False):
    return {"agent_address": address, "feed_name": feed, "session_id": session_id,
            "agent_class": cls, "record": record}


def test_heartbeats_make_agents_and_report_changes():
    m = SiteModel("observatory")
    entry, changed, new_run = m.heartbeat({"acq": 1}, info("observatory.a"), now=100.0)
    assert (changed, new_run) == (True, True) and entry.agent_class == "FakeDataAgent"
    assert m.heartbeat({"acq": 1}, info("observatory.a"), now=101.0)[1:] == (False, False)
    assert m.heartbeat({"acq": 3}, info("observatory.a"), now=102.0)[1:] == (True, False)
    assert m.heartbeat({"acq": 3}, info("observatory.a", session_id="2.0"), now=103.0)[1:] == (True, True)
    assert m.heartbeat(0, info("observatory.old"), now=103.0)[0].op_codes == {"old_agent_no_opcodes": 7}
    summary = m.snapshot(104.0)[0]
    assert summary["instance_id"] == "a" and summary["age"] == 1.0 and summary["op_codes"] == {"acq": 3}


def test_agents_are_bounded_and_under_the_root():
    from clients.dashboard import model as model_module
    m = SiteModel("observatory")
    assert m.heartbeat({}, info("elsewhere.a"), now=0.0) == (None, False, False)
    for i in range(model_module.MAX_AGENTS):
        m.heartbeat({}, info(f"observatory.a{i}"), now=0.0)
    assert m.heartbeat({}, info("observatory.one-too-many"), now=0.0)[0] is None
    assert m.heartbeat({"x": 1}, info("observatory.a0"), now=1.0)[1] is True  # known ones go on


def test_agent_is_lost_after_5_s_and_back_on_its_next_beat():
    m = SiteModel("observatory")
    m.heartbeat({}, info("observatory.a"), now=0.0)
    assert m.expire(5.0) == []
    assert [e.address for e in m.expire(5.01)] == ["observatory.a"]
    assert m.expire(6.0) == []  # reported once
    entry, changed, _ = m.heartbeat({}, info("observatory.a"), now=7.0)
    assert changed and not entry.lost


def test_recorded_payloads_keep_numbers_per_field_bounded():
    m = SiteModel("observatory", keep=3)
    feed = info("observatory.a", "temps", record=True)
    new = m.recorded({"b": {"block_name": "b", "timestamps": [1.0, 2.0], "data": {"x": [0.5, 0.6], "s": ["a", "b"]}},
                      "bad": {"timestamps": [1.0], "data": {"y": [1.0, 2.0]}}}, feed)
    assert new == {"x": ([1.0, 2.0], [0.5, 0.6])}
    m.recorded({"b": {"timestamps": [3.0, 4.0], "data": {"x": [float("nan"), 0.8]}}}, feed)
    pts = m.feeds[("observatory.a", "temps")].points()["x"]
    assert pts == ([1.0, 2.0, 4.0], [0.5, 0.6, 0.8])
    m.recorded({"b": {"timestamps": [5.0], "data": {"x": [True]}}}, feed)
    assert m.feeds[("observatory.a", "temps")].points()["x"] == ([2.0, 4.0, 5.0], [0.6, 0.8, 1.0])
    assert m.recorded("not a payload", feed) == {}


def test_feed_events_must_be_payload_and_info():
    assert decode_feed_event(([{"a": 1}, {"agent_address": "observatory.a"}],))[0] == {"a": 1}
    for bad in ((), (1, 2), ([1],), ([1, {"no": "address"}],)):
        with pytest.raises(FeedEventError):
            decode_feed_event(bad)


def test_find_class_skips_lost_agents():
    m = SiteModel("observatory")
    m.heartbeat({}, info("observatory.arch", cls="FeedArchiver"), now=0.0)
    assert m.find_class("FeedArchiver").address == "observatory.arch"
    m.expire(10.0)
    assert m.find_class("FeedArchiver") is None


@pytest.mark.parametrize("args, message", [
    (("", "f", None, 0, 1, 10), "give address and feed"),
    (("a", "f", "x", 0, 1, 10), "fields must be a list"),
    (("a", "f", None, None, 1, 10), "start=None is not a unix time"),
    (("a", "f", None, 5, 1, 10), "must be positive"),
    (("a", "f", None, 0, 1e9, 10), "at most 2678400 s"),
    (("a", "f", None, 0, 1, 0), "max_points=0 must be an integer from 1 to 10000"),
])
def test_history_queries_are_checked(args, message):
    with pytest.raises(HistoryUnavailable, match=message):
        check_query(*args)
    assert check_query("a", "f", ["x"], 0, 60, 100)["max_points"] == 100


class _Transport:
    lost = False

    def abortConnection(self):  # noqa: N802
        self.lost = True


class _Request:
    def __init__(self):
        self.written, self.producer = [], None
        self.channel = type("Channel", (), {"transport": _Transport()})()

    def registerProducer(self, producer, streaming):  # noqa: N802
        self.producer = producer

    def write(self, data):
        self.written.append(data)


def test_event_stream_format_and_a_page_that_stops_reading_is_dropped():
    from clients.dashboard.web import MAX_BEHIND, SseStream
    request = _Request()
    stream = SseStream(request, "observatory.a")
    assert request.producer is stream
    stream.send("agent", {"x": float("nan"), "y": [1, 2]})
    assert request.written == [b'event: agent\ndata: {"x":null,"y":[1,2]}\n\n']
    stream.pauseProducing()  # the page's socket is full
    big = "v" * (MAX_BEHIND // 4)
    for _ in range(3):
        stream.send("points", big)
    assert not request.channel.transport.lost  # behind, but within the bound
    stream.send("points", big)
    stream.send("points", big)
    assert request.channel.transport.lost and stream.closed
    n = len(request.written)
    stream.send("points", "more")
    assert len(request.written) == n
