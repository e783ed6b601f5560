"""Recent recorded events of a feed, and the ``ocs_core.feed_history`` management query (pure).

Every numbered event of a recorded feed is kept, bounded in count and age, so that a subscriber
that missed some (its own restart, a router outage, an event the router acknowledged and never
delivered) can fetch them again by sequence number. The query answers the events after a given
``seq``, paged below the router's message-size limit.

ocs 0.12's management procedure answers ``null`` to queries it does not know, so ocs tools are
not affected; ours are named ``ocs_core.<name>`` (see docs/agents.md, "Management queries").
"""
from __future__ import annotations

import json
import time
from collections import deque
from itertools import islice
from typing import Any, Callable, Mapping

__all__ = ["FEED_HISTORY_QUERY", "FeedHistory", "FeedHistoryError", "answer_feed_history",
           "DEFAULT_HISTORY_EVENTS", "DEFAULT_HISTORY_SECONDS", "DEFAULT_PAGE_BYTES",
           "MAX_PAGE_BYTES"]

FEED_HISTORY_QUERY = "ocs_core.feed_history"
#: Events kept per recorded feed, and their age limit in seconds (whichever bound comes first).
DEFAULT_HISTORY_EVENTS = 10_000
DEFAULT_HISTORY_SECONDS = 3600.0
#: Page size of a reply (JSON bytes, estimated): below the HTTP bridge's 1 MiB and the router's
#: 16 MiB message limit. A single event larger than a page is sent alone.
DEFAULT_PAGE_BYTES = 512 * 1024
MAX_PAGE_BYTES = 8 * 1024 * 1024
_MIN_PAGE_BYTES = 1024
_ARGS = ("feed", "after_seq", "max_bytes")


class FeedHistoryError(ValueError):
    """A history query that cannot be answered; the text says why."""


class FeedHistory:
    """The recent events ``[payload, feed_info]`` of one feed, in sequence order.

    Args:
        max_events: events kept (0 keeps none).
        max_seconds: age past which events are dropped.
        clock: time source (seconds).
    """

    def __init__(self, max_events: int = DEFAULT_HISTORY_EVENTS,
                 max_seconds: float = DEFAULT_HISTORY_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if max_events < 0 or max_seconds < 0:
            raise ValueError(f"history bounds must be >= 0, got {max_events} events, "
                             f"{max_seconds} s")
        self.max_events = int(max_events)
        self.max_seconds = float(max_seconds)
        self._clock = clock
        self._events: deque[tuple[float, list]] = deque()
        self.last_seq = 0

    def add(self, event: list) -> None:
        """Keep a numbered event (its ``feed_info["seq"]`` follows the previous one)."""
        self.last_seq = event[1]["seq"]
        if self.max_events == 0:
            return
        self._events.append((self._clock(), event))
        while len(self._events) > self.max_events:
            self._events.popleft()

    def _trim(self) -> None:
        oldest = self._clock() - self.max_seconds
        while self._events and self._events[0][0] < oldest:
            self._events.popleft()

    @property
    def oldest_seq(self) -> int | None:
        """Sequence number of the oldest event kept (None when none is)."""
        self._trim()
        return self._events[0][1][1]["seq"] if self._events else None

    def page(self, after_seq: int, max_bytes: int = DEFAULT_PAGE_BYTES) -> dict[str, Any]:
        """The events with ``seq > after_seq``, as many as fit in ``max_bytes`` of JSON.

        Returns ``{"oldest_seq", "last_seq", "events", "more"}``: ``oldest_seq`` is the oldest
        sequence number still kept (events before it are gone), ``more`` says a next page exists.
        """
        oldest = self.oldest_seq
        events: list[list] = []
        more = False
        if oldest is not None:
            start = max(0, after_seq + 1 - oldest)
            size = 0
            for _, event in islice(self._events, start, None):
                n = len(json.dumps(event, separators=(",", ":"), default=repr)) + 1
                if events and size + n > max_bytes:
                    more = True
                    break
                events.append(event)
                size += n
        return {"oldest_seq": oldest, "last_seq": self.last_seq, "events": events, "more": more}


def answer_feed_history(feeds: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``q="ocs_core.feed_history"``: ``feed`` (name), ``after_seq=0``, ``max_bytes``.

    ``feeds`` maps names to :class:`~ocs_core.runtime.feeds.Feed`. The reply adds ``feed``,
    ``address`` and ``session_id`` (the agent run the sequence numbers belong to) to
    :meth:`FeedHistory.page`'s.

    Raises:
        FeedHistoryError: an unknown or unrecorded feed, or a bad argument.
    """
    unexpected = sorted(set(kwargs) - set(_ARGS))
    if unexpected:
        raise FeedHistoryError(f"{FEED_HISTORY_QUERY}: unexpected argument(s) {unexpected}; "
                               f"it takes {', '.join(_ARGS)}")
    name = kwargs.get("feed")
    recorded = sorted(n for n, f in feeds.items() if getattr(f, "history", None) is not None)
    feed = feeds.get(name) if isinstance(name, str) else None
    if feed is None or feed.history is None:
        raise FeedHistoryError(f"{FEED_HISTORY_QUERY}: no recorded feed {name!r} on this agent; "
                               f"recorded feeds: {recorded}")
    after_seq = kwargs.get("after_seq", 0)
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise FeedHistoryError(f"{FEED_HISTORY_QUERY}: after_seq must be an integer >= 0, "
                               f"got {after_seq!r}")
    max_bytes = kwargs.get("max_bytes", DEFAULT_PAGE_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise FeedHistoryError(f"{FEED_HISTORY_QUERY}: max_bytes must be an integer, "
                               f"got {max_bytes!r}")
    max_bytes = min(max(max_bytes, _MIN_PAGE_BYTES), MAX_PAGE_BYTES)
    reply = {"feed": feed.name, "address": feed.address, "session_id": feed.session_id}
    reply.update(feed.history.page(after_seq, max_bytes))
    return reply
