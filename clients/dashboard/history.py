"""History plots from the feed archive: the archiver agent's ``query`` Task, when one runs.

The archiver (agent class ``FeedArchiver``) is found on the heartbeats. Its ``query`` Task takes
``address, feed, fields, start, stop, max_points`` and leaves ``{"series": {field: {"t",
"value", ["min", "max"]}}, "gaps": [...]}`` in its session data, downsampled to at most
``max_points`` buckets (mean, min and max), so a day of data stays a few thousand points.
Queries go one at a time (a Task runs once at a time).
"""
from __future__ import annotations

import math
from typing import Any

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from ocs_core.runtime.codes import OK

__all__ = ["ArchiveHistory", "HistoryUnavailable", "ARCHIVER_CLASS", "MAX_POINTS", "MAX_SPAN"]

ARCHIVER_CLASS = "FeedArchiver"
#: Largest ``max_points`` a page may ask for, and the longest span (s): 31 days.
MAX_POINTS = 10_000
MAX_SPAN = 31 * 86400.0
#: Seconds to wait for one query.
QUERY_TIMEOUT = 30.0


class HistoryUnavailable(Exception):
    """No archiver runs, or it refused or failed the query; the text says which."""


def check_query(address: Any, feed: Any, fields: Any, start: Any, stop: Any, max_points: Any) -> dict[str, Any]:
    """The query's params, checked (raises HistoryUnavailable naming what was wrong)."""
    if not isinstance(address, str) or not address or not isinstance(feed, str) or not feed:
        raise HistoryUnavailable("give address and feed")
    if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise HistoryUnavailable("fields must be a list of field names")
    for name, value in (("start", start), ("stop", stop)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise HistoryUnavailable(f"{name}={value!r} is not a unix time in seconds")
    if not 0 < stop - start <= MAX_SPAN:
        raise HistoryUnavailable(f"the span stop - start = {stop - start:g} s must be positive and at "
                                 f"most {MAX_SPAN:.0f} s (31 days)")
    if not isinstance(max_points, int) or isinstance(max_points, bool) or not 1 <= max_points <= MAX_POINTS:
        raise HistoryUnavailable(f"max_points={max_points!r} must be an integer from 1 to {MAX_POINTS}")
    return {"address": address, "feed": feed, "fields": fields, "start": float(start),
            "stop": float(stop), "max_points": max_points}


class ArchiveHistory:
    """Queries of the archiver seen on the heartbeats (see the module's docstring).

    Args:
        model: the dashboard's :class:`~clients.dashboard.model.SiteModel`.
        link: its :class:`~clients.dashboard.link.SiteLink`.
    """

    def __init__(self, model: Any, link: Any) -> None:
        self.model = model
        self.link = link
        self._lock = defer.DeferredLock()

    def archiver_address(self) -> str | None:
        """The address of a live archiver, or None."""
        entry = self.model.find_class(ARCHIVER_CLASS)
        return entry.address if entry is not None else None

    async def query(self, address: Any, feed: Any, fields: Any, start: Any, stop: Any,
                    max_points: Any = 2000) -> dict[str, Any]:
        """``{"archiver", "series", "gaps"}`` for one feed over ``[start, stop]``."""
        params = check_query(address, feed, fields, start, stop, max_points)
        archiver = self.archiver_address()
        if archiver is None:
            raise HistoryUnavailable(f"no {ARCHIVER_CLASS} is running (none seen on the heartbeats)")
        await self._lock.acquire()
        try:
            return await self._query(archiver, params)
        finally:
            self._lock.release()

    async def _query(self, archiver: str, params: dict[str, Any]) -> dict[str, Any]:
        ops = f"{archiver}.ops"
        try:
            reply = await self.link.call(ops, "start", "query", params)
            if reply[0] != OK and "already in progress" in str(reply[1]):
                await self.link.call(ops, "wait", "query", {}, timeout=QUERY_TIMEOUT)
                reply = await self.link.call(ops, "start", "query", params)
            if reply[0] != OK:
                raise HistoryUnavailable(f"{archiver} refused the query: {reply[1]}")
            reply = await self.link.call(ops, "wait", "query", {}, timeout=QUERY_TIMEOUT)
        except (ApplicationError, ConnectionError) as exc:
            raise HistoryUnavailable(f"{archiver} query: {getattr(exc, 'error', None) or exc}") from None
        session = reply[2] if len(reply) == 3 and isinstance(reply[2], dict) else {}
        if reply[0] != OK or session.get("status") != "done":
            raise HistoryUnavailable(f"{archiver} query did not finish: {reply[1]}")
        if not session.get("success"):
            messages = session.get("messages") or [[0, "no message"]]
            raise HistoryUnavailable(f"{archiver} query failed: {messages[-2 if len(messages) > 1 else -1][1]}")
        data = session.get("data") or {}
        return {"archiver": archiver, "series": data.get("series") or {}, "gaps": data.get("gaps") or []}
