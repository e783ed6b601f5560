"""Exactly-once bookkeeping per feed run: which sequence numbers arrived, which are missing (pure).

A *stream* is one run of one agent's feed: (agent address, feed, session_id). Its sequence
numbers count from 1. The tracker keeps the highest seen and the open gaps (ranges not yet
received); a seq is new when it is above the highest or inside an open gap, else a duplicate.
A gap that can no longer be filled (the agent's history does not reach back, or its run ended)
is *lost*: it is closed and kept as a record.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Gap", "Stream", "Tracker"]


@dataclass
class Gap:
    """Missing seqs ``first..last`` of a stream; ``t_before``/``t_after`` bound its data's time."""

    first: int
    last: int
    t_before: float | None
    t_after: float | None
    detected: float

    def to_list(self) -> list:
        return [self.first, self.last, self.t_before, self.t_after, self.detected]

    @classmethod
    def from_list(cls, item: list) -> "Gap":
        return cls(int(item[0]), int(item[1]), item[2], item[3], float(item[4]))


@dataclass
class Stream:
    """One feed run's state: the highest seq, the open gaps, the newest timestamp seen."""

    address: str
    feed: str
    session_id: str
    max_seq: int = 0
    gaps: list[Gap] = field(default_factory=list)
    last_t: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.address, self.feed, self.session_id)

    def missing(self) -> int:
        """Sequence numbers still missing."""
        return sum(g.last - g.first + 1 for g in self.gaps)

    def accept(self, seq: int, t_first: float | None, t_last: float | None,
               now: float) -> tuple[bool, Gap | None, int]:
        """Record ``seq``; return (new?, the gap it revealed or None, seqs it filled (0 or 1))."""
        revealed = None
        if seq > self.max_seq:
            if seq > self.max_seq + 1:
                revealed = Gap(self.max_seq + 1, seq - 1, self.last_t, t_first, now)
                self.gaps.append(revealed)
            self.max_seq = seq
            self._advance(t_last)
            return True, revealed, 0
        for i, gap in enumerate(self.gaps):
            if gap.first <= seq <= gap.last:
                parts = []
                if gap.first < seq:
                    parts.append(Gap(gap.first, seq - 1, gap.t_before, t_first, gap.detected))
                if seq < gap.last:
                    parts.append(Gap(seq + 1, gap.last, t_last, gap.t_after, gap.detected))
                self.gaps[i:i + 1] = parts
                self._advance(t_last)
                return True, None, 1
        return False, None, 0

    def _advance(self, t_last: float | None) -> None:
        if t_last is not None and (self.last_t is None or t_last > self.last_t):
            self.last_t = t_last

    def give_up_before(self, oldest_kept: int | None) -> list[Gap]:
        """Close the parts of open gaps below ``oldest_kept`` (None: all); return them."""
        lost, keep = [], []
        for gap in self.gaps:
            if oldest_kept is None or gap.last < oldest_kept:
                lost.append(gap)
            elif gap.first < oldest_kept:
                lost.append(Gap(gap.first, oldest_kept - 1, gap.t_before, None, gap.detected))
                keep.append(Gap(oldest_kept, gap.last, None, gap.t_after, gap.detected))
            else:
                keep.append(gap)
        self.gaps = keep
        return lost

    def to_row(self) -> dict[str, Any]:
        return {"address": self.address, "feed": self.feed, "session_id": self.session_id,
                "max_seq": self.max_seq, "gaps": [g.to_list() for g in self.gaps],
                "last_t": self.last_t}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Stream":
        return cls(row["address"], row["feed"], row["session_id"], int(row["max_seq"]),
                   [Gap.from_list(g) for g in row["gaps"]], row["last_t"])


class Tracker:
    """Every stream's state, with counters for the record Process's session data."""

    def __init__(self, streams: list[Stream] = ()) -> None:
        self.streams: dict[tuple[str, str, str], Stream] = {s.key: s for s in streams}
        self.dirty: set[tuple[str, str, str]] = set()
        self.gaps_found = 0
        self.gaps_filled = 0   # sequence numbers back-filled
        self.duplicates = 0
        self.gaps_lost = 0
        self.lost: list[tuple[Stream, Gap]] = []  # not yet written to the store

    def stream(self, address: str, feed: str, session_id: str) -> Stream:
        key = (address, feed, session_id)
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = Stream(address, feed, session_id)
        return s

    def seen(self, address: str, feed: str, session_id: str, seq: Any) -> bool:
        """Whether ``seq`` of that run was received already (a cheap check before parsing)."""
        s = self.streams.get((address, feed, session_id))
        if s is None or not isinstance(seq, int) or seq > s.max_seq:
            return False
        return not any(g.first <= seq <= g.last for g in s.gaps)

    def accept(self, address: str, feed: str, session_id: str, seq: int | None,
               t_first: float | None, t_last: float | None, now: float | None = None) -> bool:
        """Whether the event is new (to be stored); ``seq=None`` (ocs agents) is always new."""
        if seq is None:
            return True
        s = self.stream(address, feed, session_id)
        new, revealed, filled = s.accept(seq, t_first, t_last, time.time() if now is None else now)
        if not new:
            self.duplicates += 1
            return False
        self.dirty.add(s.key)
        self.gaps_found += revealed is not None
        self.gaps_filled += filled
        return True

    def give_up(self, key: tuple[str, str, str], oldest_kept: int | None) -> list[Gap]:
        """Declare a stream's gaps below ``oldest_kept`` (None: all) lost."""
        s = self.streams[key]
        lost = s.give_up_before(oldest_kept)
        if lost:
            self.gaps_lost += len(lost)
            self.dirty.add(key)
            self.lost.extend((s, g) for g in lost)
        return lost

    def take_dirty(self) -> tuple[list[dict], list[tuple[Stream, Gap]]]:
        """The changed streams (as rows) and the newly lost gaps, to write with the next batch."""
        rows = [self.streams[k].to_row() for k in sorted(self.dirty)]
        lost, self.lost = self.lost, []
        self.dirty.clear()
        return rows, lost

    def open_gaps(self) -> list[tuple[Stream, Gap]]:
        return [(s, g) for s in self.streams.values() for g in s.gaps]

    def latest_runs(self) -> list[Stream]:
        """The newest run (highest session_id as a number) of each (address, feed)."""
        best: dict[tuple[str, str], Stream] = {}
        for s in self.streams.values():
            k = (s.address, s.feed)
            if k not in best or _as_float(s.session_id) > _as_float(best[k].session_id):
                best[k] = s
        return list(best.values())


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
