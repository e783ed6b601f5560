"""The archiver's pure parts and its SQLite store: parsing, exactly-once tracking, rollups (no network)."""
import sqlite3

import numpy as np
import pytest

from ocs_core.archive import downsample as ds
from agents.archive.events import EventError, MAX_BLOCK_VALUES, parse_event
from agents.archive.sqlite_store import SQLiteStore
from agents.archive.store import Batch, StoreCorrupt, StoreError
from agents.archive.tracker import Tracker

T0 = 1_700_000_000.0


def event(seq, ts, data, session="1.0", address="observatory.a", feed="f", tags=None, **block):
    payload = {"b": {"block_name": "b", "timestamps": list(ts), "data": data, "influxdb_tags": tags,
                     **block}}
    return [payload, {"agent_address": address, "feed_name": feed, "session_id": session,
                      "record": True, "seq": seq, "agent_class": "A", "address": "x", "agg_params": {}}]


def store_events(store, tracker, raws):
    batch = Batch()
    for raw in raws:
        e = parse_event(raw)
        ts = [b.timestamps for b in e.blocks]
        t0 = min(t.min() for t in ts) if ts else None
        t1 = max(t.max() for t in ts) if ts else None
        if tracker.accept(*e.stream, e.seq, t0, t1):
            batch.add(e)
    batch.add_state(*tracker.take_dirty())
    store.write(batch)
    return batch


# -- tracker -------------------------------------------------------------------------------------
def test_tracker_drops_duplicates_detects_and_fills_gaps():
    tr = Tracker()
    key = ("a", "f", "1")
    assert tr.accept(*key, 1, 0, 1, now=5) and tr.accept(*key, 2, 1, 2)
    assert not tr.accept(*key, 2, 1, 2) and tr.duplicates == 1
    assert tr.accept(*key, 6, 6, 7, now=9)
    [gap] = tr.streams[key].gaps
    assert (gap.first, gap.last, gap.t_before, gap.t_after, gap.detected) == (3, 5, 2, 6, 9)
    assert tr.accept(*key, 4, 4, 4)  # splits the gap
    assert [(g.first, g.last) for g in tr.streams[key].gaps] == [(3, 3), (5, 5)]
    assert not tr.accept(*key, 4, 4, 4)
    assert tr.accept(*key, 3, 3, 3) and tr.accept(*key, 5, 5, 5)
    assert tr.streams[key].gaps == [] and tr.gaps_found == 1 and tr.gaps_filled == 3
    assert tr.accept(*key, None, 0, 0) and tr.accept(*key, None, 0, 0)  # ocs agents: no seq


def test_tracker_gives_up_below_the_oldest_kept():
    tr = Tracker()
    key = ("a", "f", "1")
    tr.accept(*key, 1, 0, 0)
    tr.accept(*key, 10, 9, 9)  # gap 2..9
    tr.take_dirty()
    lost = tr.give_up(key, 5)
    assert [(g.first, g.last) for g in lost] == [(2, 4)]
    assert [(g.first, g.last) for g in tr.streams[key].gaps] == [(5, 9)]
    rows, lost_rows = tr.take_dirty()
    assert rows[0]["gaps"][0][:2] == [5, 9] and len(lost_rows) == 1
    assert [(g.first, g.last) for g in tr.give_up(key, None)] == [(5, 9)] and tr.gaps_lost == 2


# -- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("block, why", [
    ({"timestamps": [1, 2], "data": {"x": [1.0]}}, "has 1 values for 2 timestamps"),
    ({"data": {"x": 1.0}}, "no timestamps"),
    ({"timestamps": [1, float("nan")], "data": {"x": [1.0, 2.0]}}, "timestamps must be finite"),
    ({"timestamps": ["now"], "data": {"x": [1.0]}}, "timestamps must be a list of numbers"),
    ({"timestamps": [1], "data": {"x": ["a"]}, "influxdb_tags": {"y": {}}}, "influxdb_tags must"),
    ({"timestamps": [1, 2], "data": {"x": [1.0, "a"]}}, "mixes value types"),
    ({"timestamps": [1], "data": {"bad name": [1.0]}}, "invalid field name"),
    ({"timestamps": list(range(MAX_BLOCK_VALUES // 2 + 1)),
      "data": {"x": [0.0] * (MAX_BLOCK_VALUES // 2 + 1), "y": [0.0] * (MAX_BLOCK_VALUES // 2 + 1)}},
     "is more than"),
])
def test_bad_blocks_are_rejected_with_the_reason_and_others_kept(block, why):
    raw = event(1, [1.0], {"ok": [1.0]})
    raw[0]["bad"] = block
    e = parse_event(raw)
    assert [b.name for b in e.blocks] == ["b"]
    assert len(e.rejected) == 1 and why in e.rejected[0] and e.rejected[0].startswith("block 'bad'")


def test_event_shapes():
    assert parse_event([{"x": 1}, {"record": False}]) is None
    with pytest.raises(EventError, match="is \\[payload, feed_info\\]"):
        parse_event({"not": "an event"})
    with pytest.raises(EventError, match="seq 0 is not a positive integer"):
        parse_event(event(0, [1.0], {"x": [1.0]}))
    single = event(1, [], {})
    single[0] = {"b": {"block_name": "b", "timestamp": 5.0, "data": {"x": 1, "s": "on"}}}
    [b] = parse_event(single).blocks
    assert b.timestamps.tolist() == [5.0] and b.fields["x"].tolist() == [1.0] and b.fields["s"] == ["on"]


# -- the SQLite store ----------------------------------------------------------------------------
def test_write_query_raw_and_state_survive_reopening(tmp_path):
    path = tmp_path / "a.sqlite"
    store, tr = SQLiteStore(path), Tracker()
    raws = [event(s, T0 + s + np.arange(10) / 10, {"x": list(np.arange(10.0) + s), "s": ["v"] * 10})
            for s in range(1, 51)]
    store_events(store, tr, raws[:30])
    store_events(store, tr, raws[25:])  # 25..29 again: dropped by the tracker
    got = store.query("observatory.a", "f", None, T0, T0 + 100, None)
    assert sorted(got) == ["s", "x"] and len(got["x"].t) == 500 and not got["x"].downsampled
    assert np.all(np.diff(got["x"].t) > 0) and got["s"].value[0] == "v"
    store.close()
    again = SQLiteStore(path)
    [stream] = again.load_streams()
    assert (stream.key, stream.max_seq, stream.gaps) == (("observatory.a", "f", "1.0"), 50, [])
    assert again.catalog() == [{"address": "observatory.a", "feed": "f", "field": "s"},
                               {"address": "observatory.a", "feed": "f", "field": "x"}]
    with pytest.raises(KeyError, match="has no field\\(s\\) \\['y'\\]"):
        again.query("observatory.a", "f", ["y"], T0, T0 + 1, None)
    with pytest.raises(KeyError, match="nothing archived for observatory.b feed 'f'"):
        again.query("observatory.b", "f", None, T0, T0 + 1, None)


@pytest.mark.parametrize("max_points", [7, 100, 2000])
def test_downsampling_matches_numpy_on_the_samples(tmp_path, max_points):
    rng = np.random.default_rng(4)
    store, tr = SQLiteStore(tmp_path / "a.sqlite"), Tracker()
    ts = T0 + np.arange(0, 7200, 0.5)
    vals = rng.normal(size=len(ts))
    vals[100] = np.nan  # non-finite values are kept raw and left out of mean/min/max
    raws = [event(i + 1, ts[i * 400:(i + 1) * 400], {"x": vals[i * 400:(i + 1) * 400].tolist()})
            for i in range(len(ts) // 400)]
    store_events(store, tr, raws)
    start, stop = T0 + 13.3, T0 + 7000.0
    got = store.query("observatory.a", "f", ["x"], start, stop, max_points)["x"]
    assert got.downsampled and 0 < len(got.t) <= max_points
    width = np.diff(got.t).min()
    for t, mean, lo, hi in list(zip(got.t, got.value, got.min, got.max))[1:-1]:
        inside = (ts >= t - width / 2) & (ts < t + width / 2) & np.isfinite(vals)
        assert lo == vals[inside].min() and hi == vals[inside].max()
        assert mean == pytest.approx(vals[inside].mean(), rel=1e-9, abs=1e-12)
    raw = store.query("observatory.a", "f", ["x"], start, stop, None)["x"]
    assert np.isnan(raw.value).sum() == 1 and raw.t[0] >= start and raw.t[-1] <= stop


def test_a_corrupt_or_foreign_file_is_refused_and_left_alone(tmp_path):
    bad = tmp_path / "archive.sqlite"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreCorrupt, match=f"{bad} is not a usable ocs-core archive .*refusing to "
                                           "overwrite it"):
        SQLiteStore(bad)
    assert bad.read_bytes() == b"this is not a database at all" * 100
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreCorrupt, match="no such table: meta"):
        SQLiteStore(other)


def test_a_full_store_writes_nothing_and_the_batch_fits_once_space_returns(tmp_path):
    path = tmp_path / "a.sqlite"
    SQLiteStore(path).close()
    full, tr = SQLiteStore(path, max_pages=12), Tracker()
    big = [event(s, T0 + s + np.arange(2000) / 2000, {"x": np.arange(2000.0).tolist()}) for s in range(1, 6)]
    with pytest.raises(StoreError, match="database or disk is full"):
        store_events(full, tr, big)
    assert full.load_streams() == [] and full.catalog() == []
    full.close()
    roomy = SQLiteStore(path)
    batch = Batch(events=[parse_event(r) for r in big])
    batch.add_state([tr.streams[("observatory.a", "f", "1.0")].to_row()], [])
    roomy.write(batch)
    assert len(roomy.query("observatory.a", "f", ["x"], T0, T0 + 10, None)["x"].t) == 10_000


def test_retention_by_age_and_by_size(tmp_path):
    store, tr = SQLiteStore(tmp_path / "a.sqlite"), Tracker()
    for s in range(1, 101):
        store_events(store, tr, [event(s, T0 + s * 100 + np.arange(100), {"x": [1.0] * 100})])
    assert store.apply_retention(T0 + 10_001, max_age=5000, max_bytes=None).startswith(
        "retention: dropped 49 block rows")
    left = store.query("observatory.a", "f", ["x"], T0, T0 + 20_000, None)["x"]
    assert left.t.min() >= T0 + 5000
    assert store.apply_retention(T0 + 10_001, max_age=None, max_bytes=None) is None
    before = store.size_bytes()
    store.apply_retention(T0 + 10_001, max_age=None, max_bytes=before - 1)
    assert store.size_bytes() <= before


def test_rollup_combination_is_exact():
    ts = np.arange(0, 100, 0.1)
    vals = np.sin(ts)
    b, n, lo, hi, total = ds.rollup(ts, vals, 1.0)
    t, mean, mn, mx = ds.combine_rollups(b, n, lo, hi, total, 0.0, 10.0, 1.0)
    assert len(t) == 10 and mn[3] == vals[(ts >= 30) & (ts < 40)].min()
    assert mean[3] == pytest.approx(vals[(ts >= 30) & (ts < 40)].mean())
    assert ds.rollup_width(43.2) == 10.0 and ds.output_width(43.2, 10.0) == 50.0
    assert ds.rollup_width(0.5) is None


def test_tracker_seen_is_a_side_effect_free_duplicate_check():
    tr = Tracker()
    tr.accept("a", "f", "1", 1, 0, 0)
    tr.accept("a", "f", "1", 3, 0, 0)
    assert tr.seen("a", "f", "1", 1) and not tr.seen("a", "f", "1", 2) and not tr.seen("a", "f", "1", 4)
    assert not tr.seen("a", "f", "2", 1) and not tr.seen("a", "f", "1", None)
    assert tr.duplicates == 0
