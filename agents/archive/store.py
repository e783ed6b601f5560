"""What a store backend of the archiver is: one small interface, and the batch it writes (pure).

The archiver hands a backend a :class:`Batch` (new events, the changed streams' exactly-once
state, the gaps declared lost) and asks it to write all of it or nothing. Backends run in the
archiver's writer thread and may block. Two ship: :mod:`agents.archive.sqlite_store` (the
default, embedded) and :mod:`agents.archive.influx_store` (InfluxDB 1.x).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ocs_core.archive.series import Series

from agents.archive.events import ArchiveEvent
from agents.archive.tracker import Gap, Stream

__all__ = ["ArchiveStore", "Batch", "Series", "StoreError", "StoreCorrupt"]  # Series: re-exported


class StoreError(RuntimeError):
    """The store cannot be written or read (full disk, unwritable, unreachable); text says which."""


class StoreCorrupt(StoreError):
    """The store's file is not an archive this agent can use; it is never overwritten."""


@dataclass
class Batch:
    """Everything one transaction writes."""

    events: list[ArchiveEvent] = field(default_factory=list)
    streams: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    lost: list[tuple[Stream, Gap]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._samples = sum(e.samples for e in self.events)

    def add(self, event: ArchiveEvent) -> None:
        """Append one event (its sample count is kept, not recounted)."""
        self.events.append(event)
        self._samples += event.samples

    @property
    def samples(self) -> int:
        """(timestamp, field) values in the batch."""
        return self._samples

    def __bool__(self) -> bool:
        return bool(self.events or self.streams or self.lost)

    def add_state(self, rows: list[dict], lost: list[tuple[Stream, Gap]]) -> None:
        for row in rows:
            self.streams[(row["address"], row["feed"], row["session_id"])] = row
        self.lost.extend(lost)


class ArchiveStore(Protocol):
    """A store backend (all methods may block; the archiver calls them from one thread)."""

    #: Where the data goes, for the log and ``make demo`` (a path or a URL).
    location: str

    def load_streams(self) -> list[Stream]:
        """The exactly-once state of every stream, as last written."""

    def write(self, batch: Batch) -> None:
        """Write the whole batch or nothing. Raises StoreError."""

    def query(self, address: str, feed: str, fields: list[str] | None, start: float, stop: float,
              max_points: int | None) -> dict[str, Series]:
        """Each field's samples in ``[start, stop]``, downsampled to ``max_points`` buckets."""

    def gaps(self, address: str | None = None, feed: str | None = None) -> list[dict[str, Any]]:
        """The gaps declared lost (agent, feed, session_id, first/last seq, time bounds)."""

    def catalog(self) -> list[dict[str, Any]]:
        """The stored series: address, feed, field."""

    def size_bytes(self) -> int | None:
        """Bytes the data takes (None if unknown)."""

    def apply_retention(self, now: float, max_age: float | None,
                        max_bytes: int | None) -> str | None:
        """Drop the oldest data past the limits; return a one-line summary if anything went."""

    def close(self) -> None:
        """Release the store."""
