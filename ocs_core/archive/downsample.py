"""Downsampling for plots: per bucket mean, min and max, from raw samples or rollups (pure numpy).

Rollups are per-bucket (count, min, max, sum) of finite values, written at ingest for the
widths in :data:`ROLLUP_WIDTHS`; a query whose buckets are at least a rollup width wide reads
the rollups instead of the samples. Output buckets are a whole multiple of the rollup width used,
so every rollup falls in exactly one bucket and min/max stay exact.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ROLLUP_WIDTHS", "bucket_width", "rollup_width", "rollup", "rollup_many", "bucket_raw",
           "combine_rollups", "output_width", "thin"]

#: Rollup bucket widths (seconds) written at ingest.
ROLLUP_WIDTHS = (1.0, 10.0, 60.0, 600.0, 3600.0)


def bucket_width(start: float, stop: float, max_points: int) -> float:
    """The narrowest bucket that splits ``[start, stop]`` into at most ``max_points``."""
    return max((stop - start) / max(1, max_points), 1e-9)


def rollup_width(width: float) -> float | None:
    """The widest rollup width not above ``width`` (None: read the samples)."""
    usable = [w for w in ROLLUP_WIDTHS if w <= width]
    return usable[-1] if usable else None


def rollup(ts: np.ndarray, values: np.ndarray, width: float):
    """Per-bucket (bucket start, count, min, max, sum) of the finite values; ``ts`` sorted."""
    _, *out = rollup_many(ts, values, np.zeros(len(ts), dtype=np.int64), width)
    return tuple(out)


def rollup_many(ts: np.ndarray, values: np.ndarray, group: np.ndarray, width: float):
    """:func:`rollup` of several series at once: ``group`` numbers each sample's series.

    Samples of one group are contiguous and sorted by time. Returns (group, bucket start,
    count, min, max, sum) per (group, bucket) with finite values.
    """
    ok = np.isfinite(values)
    if not ok.all():
        ts, values, group = ts[ok], values[ok], group[ok]
    if not len(ts):
        return (np.empty(0, dtype=np.int64),) + (np.empty(0),) * 5
    buckets = np.floor(ts / width) * width
    change = np.empty(len(ts), dtype=bool)
    change[0] = True
    np.not_equal(buckets[1:], buckets[:-1], out=change[1:])
    change[1:] |= group[1:] != group[:-1]
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(ts)))
    return (group[starts], buckets[starts], counts, np.minimum.reduceat(values, starts),
            np.maximum.reduceat(values, starts), np.add.reduceat(values, starts))


def bucket_raw(ts: np.ndarray, values: np.ndarray, start: float, width: float):
    """Bucket raw samples: (bucket centre, mean, min, max) of finite values, empty buckets left out."""
    b0, n, vmin, vmax, vsum = rollup(ts - start, values, width)
    return b0 + start + width / 2, vsum / n, vmin, vmax


def combine_rollups(buckets: np.ndarray, n: np.ndarray, vmin: np.ndarray, vmax: np.ndarray,
                    vsum: np.ndarray, start: float, width: float, base: float):
    """Merge rollup rows (sorted by bucket) into output buckets of ``width`` (a multiple of ``base``)."""
    if not len(buckets):
        return (np.empty(0),) * 4
    origin = math.floor(start / base) * base
    index = np.floor((buckets - origin + base / 2) / width).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    total = np.add.reduceat(n, starts)
    centre = origin + index[starts] * width + width / 2
    return (centre, np.add.reduceat(vsum, starts) / total, np.minimum.reduceat(vmin, starts),
            np.maximum.reduceat(vmax, starts))


def output_width(width: float, base: float) -> float:
    """``width`` rounded up to a whole multiple of the rollup width ``base``."""
    return math.ceil(width / base - 1e-9) * base


def thin(ts: np.ndarray, values: np.ndarray, max_points: int):
    """Every k-th sample so that at most ``max_points`` remain (for string fields)."""
    step = max(1, math.ceil(len(ts) / max(1, max_points)))
    return ts[::step], values[::step]
