"""Helpers of the archive tests: samples from events, from the archive, and from agents' history."""
from __future__ import annotations

import collections
import time

from ocs_core.testing import http_call

from clients.archive import history

FAKE_FEED = "false_temperatures"


def samples_of_events(events) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(address, field) -> sorted [(t, value)] of each event once per (address, feed, run, seq)."""
    seen, out = set(), collections.defaultdict(list)
    for payload, info in events:
        key = (info["agent_address"], info["feed_name"], info["session_id"], info.get("seq"))
        if key in seen:
            continue
        seen.add(key)
        for block in payload.values():
            for name, values in block["data"].items():
                out[(info["agent_address"], name)].extend(zip(block["timestamps"], values))
    return {k: sorted(v) for k, v in out.items()}


def samples_in_archive(path, address, feed, start=0.0, stop=4e9):
    """(address, field) -> sorted [(t, value)] as archived (raw), straight from the SQLite file."""
    h = history(address, feed, start=start, stop=stop, archive=path)
    return {(address, name): sorted(zip(s.t.tolist(), s.value.tolist())) for name, s in h.series.items()}


def agent_history(http_url, address, feed):
    """Every event the agent still holds in its feed history (paging through it)."""
    events, after = [], 0
    while True:
        reply = http_call(http_url, address, "ocs_core.feed_history", feed=feed, after_seq=after)
        assert "error" not in reply, reply
        page = reply["args"][0]
        events += page["events"]
        if not page["more"] or not page["events"]:
            return events, page
        after = page["events"][-1][1]["seq"]


def op(http_url, address, action, name, params=None, timeout=None):
    args = [action, name, params or {}] + ([timeout] if timeout is not None else [])
    reply = http_call(http_url, f"{address}.ops", *args, timeout=30)
    assert "error" not in reply, reply
    return reply["args"][0]


def record_data(http_url, archiver):
    """The archiver's record session data ({} while it has none)."""
    try:
        return op(http_url, archiver, "status", "record")[2].get("data") or {}
    except (OSError, AssertionError):
        return {}


def wait_until(predicate, timeout=30.0, what="condition", step=0.1, describe=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    state = describe() if describe else last
    raise AssertionError(f"{what} not met within {timeout} s (last: {state!r})")


def caught_up(http_url, archiver, expected_seqs: dict[str, int]):
    """The archiver stored every seq up to ``expected_seqs[address.feed]``, nothing pending."""
    data = caught_up.last = record_data(http_url, archiver)
    feeds = data.get("feeds", {})
    ok = all(feeds.get(k, {}).get("last_seq", 0) >= n and feeds[k]["missing"] == 0
             for k, n in expected_seqs.items())
    return data if ok and data.get("backlog_samples") == 0 else None


caught_up.last = None
