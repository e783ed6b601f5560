"""The recent-event history of recorded feeds and the ``ocs_core.feed_history`` query (no network)."""
import pytest

from ocs_core.runtime.feed_history import (FeedHistory, FeedHistoryError, answer_feed_history,
                                           MAX_PAGE_BYTES)
from ocs_core.runtime.feeds import Feed


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _publish(feed, n, clock=None):
    for i in range(n):
        for payload in feed.payloads({"block_name": "b", "timestamp": float(i), "data": {"x": float(i)}}):
            feed.make_event(payload)
        if clock:
            clock.t += 1


def test_recorded_feeds_keep_their_events_unrecorded_none():
    assert Feed("r.a", "status").history is None
    f = Feed("r.a", "t", record=True, session_id="5.0")
    _publish(f, 3)
    reply = answer_feed_history({"t": f}, {"feed": "t", "after_seq": 1})
    assert reply["feed"] == "t" and reply["session_id"] == "5.0" and reply["address"] == "r.a.feeds.t"
    assert [e[1]["seq"] for e in reply["events"]] == [2, 3]
    assert reply["events"][0][0]["b"]["data"]["x"] == [1.0]
    assert (reply["oldest_seq"], reply["last_seq"], reply["more"]) == (1, 3, False)
    assert answer_feed_history({"t": f}, {"feed": "t", "after_seq": 3})["events"] == []


def test_bounded_by_count_and_age():
    clock = Clock()
    f = Feed("r.a", "t", record=True, clock=clock, history_events=5, history_seconds=100)
    _publish(f, 8, clock)
    assert f.history.oldest_seq == 4
    clock.t += 97.5  # events 4..8 were kept at t=1003..1007: 4, 5, 6 are now older than 100 s
    page = f.history.page(0)
    assert [e[1]["seq"] for e in page["events"]] == [7, 8] and page["oldest_seq"] == 7
    assert page["last_seq"] == 8
    clock.t += 1000
    assert f.history.page(0) == {"oldest_seq": None, "last_seq": 8, "events": [], "more": False}


def test_pages_stay_below_max_bytes_and_a_big_event_goes_alone():
    h = FeedHistory(max_events=100)
    for seq in range(1, 21):
        h.add([{"b": {"data": {"x": [0.5] * 100}}}, {"seq": seq}])
    page = h.page(0, max_bytes=2000)
    assert 1 <= len(page["events"]) < 20 and page["more"]
    seen = [e[1]["seq"] for e in page["events"]]
    while page["more"]:
        page = h.page(seen[-1], max_bytes=2000)
        seen += [e[1]["seq"] for e in page["events"]]
    assert seen == list(range(1, 21))
    h.add([{"b": {"data": {"x": [0.5] * 10_000}}}, {"seq": 21}])
    assert [e[1]["seq"] for e in h.page(20, max_bytes=2000)["events"]] == [21]


@pytest.mark.parametrize("kwargs, text", [
    ({"feed": "nope"}, "no recorded feed 'nope' on this agent; recorded feeds: \\['t'\\]"),
    ({"feed": "status"}, "no recorded feed 'status'"),
    ({}, "no recorded feed None"),
    ({"feed": "t", "after_seq": -1}, "after_seq must be an integer >= 0"),
    ({"feed": "t", "after_seq": "3"}, "after_seq must be an integer"),
    ({"feed": "t", "max_bytes": 1.5}, "max_bytes must be an integer"),
    ({"feed": "t", "colour": 1}, "unexpected argument\\(s\\) \\['colour'\\]"),
])
def test_bad_queries_name_what_is_wrong(kwargs, text):
    feeds = {"t": Feed("r.a", "t", record=True), "status": Feed("r.a", "status")}
    with pytest.raises(FeedHistoryError, match=text):
        answer_feed_history(feeds, kwargs)


def test_max_bytes_is_clamped():
    f = Feed("r.a", "t", record=True)
    _publish(f, 3)
    assert len(answer_feed_history({"t": f}, {"feed": "t", "max_bytes": 10**12})["events"]) == 3
    assert MAX_PAGE_BYTES < 16 * 1024 * 1024
