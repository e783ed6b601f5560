"""Feeds: recorded-block validation and buffering, numbering, and the outage queue (no network)."""
import pytest

from ocs_core.runtime.feeds import Feed, FeedError


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_feed_info_has_the_seven_ocs_keys():
    f = Feed("observatory.a", "temps", record=True, agg_params={"frame_length": 10},
             agent_class="X", session_id="12.5")
    assert f.feed_info() == {"agent_address": "observatory.a", "agg_params": {"frame_length": 10},
                             "feed_name": "temps", "address": "observatory.a.feeds.temps",
                             "record": True, "session_id": "12.5", "agent_class": "X"}


def test_unrecorded_passes_any_payload_and_numbers_events():
    f = Feed("r.a", "status")
    assert f.payloads({"anything": [1, "x"]}) == [{"anything": [1, "x"]}]
    e1, e2 = f.make_event("a"), f.make_event("b")
    assert e1[0] == "a" and e1[1]["seq"] == 1 and e2[1]["seq"] == 2
    assert "seq" not in f.feed_info()


def test_recorded_block_single_sample_and_multi():
    f = Feed("r.a", "t", record=True)
    [p] = f.payloads({"block_name": "b", "timestamp": 5, "data": {"x": 1.5, "y": 2}})
    assert p == {"b": {"block_name": "b", "data": {"x": [1.5], "y": [2]}, "timestamps": [5.0],
                       "influxdb_tags": None}}
    [p] = f.payloads({"block_name": "b", "timestamps": [6, 7], "data": {"x": [1, 2], "y": [3, 4]}})
    assert p["b"]["timestamps"] == [6.0, 7.0] and p["b"]["data"]["y"] == [3, 4]


@pytest.mark.parametrize("message, err, text", [
    ({"block_name": "b", "timestamp": 1, "data": {"1x": 1}}, FeedError, "invalid field name '1x'"),
    ({"block_name": "b", "timestamp": 1, "data": {"a b": 1}}, FeedError, "invalid field name"),
    ({"block_name": "b", "timestamp": 1, "data": {"x": None}}, TypeError, "field 'x' holds None"),
    ({"block_name": "b", "timestamps": [1, 2], "data": {"x": [1]}}, FeedError, "has 1 values for 2"),
    ({"block_name": "b", "data": {"x": 1}}, FeedError, "give 'timestamp'"),
    ({"data": {"x": 1}}, FeedError, "a recorded feed message is"),
])
def test_recorded_rejections(message, err, text):
    f = Feed("r.a", "t", record=True)
    with pytest.raises(err, match=text):
        f.payloads(message)


def test_block_structure_is_fixed():
    f = Feed("r.a", "t", record=True)
    f.payloads({"block_name": "b", "timestamp": 1, "data": {"x": 1}})
    with pytest.raises(FeedError, match="Block structure does not match"):
        f.payloads({"block_name": "b", "timestamp": 2, "data": {"y": 1}})


def test_buffer_time_gathers_until_due_and_flush():
    clock = Clock()
    f = Feed("r.a", "t", record=True, buffer_time=1.0, clock=clock)
    assert f.payloads({"block_name": "b", "timestamp": 1, "data": {"x": 1}}) == []
    clock.t += 0.5
    assert f.payloads({"block_name": "b", "timestamp": 2, "data": {"x": 2}}) == []
    clock.t += 0.6
    [p] = f.payloads({"block_name": "c", "timestamp": 3, "data": {"z": 3}})
    assert p["b"]["data"]["x"] == [1, 2] and p["c"]["timestamps"] == [3.0]
    assert f.flush() == []
    f.payloads({"block_name": "b", "timestamp": 4, "data": {"x": 4}})
    [p] = f.flush()
    assert list(p) == ["b"] and p["b"]["timestamps"] == [4.0]


def test_outbox_is_bounded_and_requeue_keeps_order():
    f = Feed("r.a", "t", outbox_size=3)
    events = [f.make_event(i) for i in range(5)]
    for e in events[:2]:
        f.inflight[e[1]["seq"]] = e
    for e in events[2:]:
        f.queue(e)
    assert f.requeue_inflight() == 2  # the two unacknowledged events, counted for the log line
    assert f.requeue_inflight() == 0
    assert [e[1]["seq"] for e in f.outbox] == [3, 4, 5] and f.dropped == 2
    assert not f.inflight


def test_heartbeat_style_feed_keeps_nothing():
    f = Feed("r.a", "heartbeat", outbox_size=0)
    f.queue(f.make_event({}))
    assert len(f.outbox) == 0


TAGS = {"x": {"channel": 0, "_field": "temperature"}, "y": {"channel": 1, "_field": "temperature"}}


def test_influxdb_tags_pass_through_per_block_latest_wins():
    f = Feed("r.a", "t", record=True, buffer_time=10, clock=Clock())
    assert f.payloads({"block_name": "b", "timestamp": 1, "data": {"x": 1.0, "y": 2.0},
                       "influxdb_tags": TAGS}) == []
    f.payloads({"block_name": "b", "timestamp": 2, "data": {"x": 1.0, "y": 2.0}})  # None keeps them
    f.payloads({"block_name": "c", "timestamp": 2, "data": {"z": 1.0}})
    [p] = f.flush()
    assert p["b"]["influxdb_tags"] == TAGS and p["c"]["influxdb_tags"] is None


@pytest.mark.parametrize("tags, text", [
    ([1], "must be a dict"),
    ({"x": {"_field": "t"}}, "exactly one entry per data field"),
    ({"x": {"channel": 0}, "y": {"_field": "t"}}, "must be a dict holding '_field'"),
    ({"x": {"_field": "1t"}, "y": {"_field": "t"}}, "invalid field name '1t'"),
    ({"x": {"_field": "t", "bad tag": 1}, "y": {"_field": "t"}}, "invalid field name 'bad tag'"),
    ({"x": {"_field": "t", "c": [1]}, "y": {"_field": "t"}}, "use int, float, bool or str"),
    ({"x": {"_field": "t", "c": "a,b"}, "y": {"_field": "t"}}, "a string tag has 1 to 255"),
    ({"x": {"_field": "t", "c": "x" * 300}, "y": {"_field": "t"}}, "a string tag has 1 to 255"),
    ({"x": {"_field": "t", **{f"t{i}": i for i in range(17)}}, "y": {"_field": "t"}}, "at most 16"),
])
def test_influxdb_tags_are_checked(tags, text):
    f = Feed("r.a", "t", record=True)
    with pytest.raises(FeedError, match=text):
        f.payloads({"block_name": "b", "timestamp": 1, "data": {"x": 1.0, "y": 2.0},
                    "influxdb_tags": tags})
    assert f.flush() == []  # nothing buffered
