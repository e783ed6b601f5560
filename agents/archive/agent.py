"""FeedArchiver: every recorded feed of the site into a store, exactly once (Twisted side).

Process ``record`` subscribes to every feed under the address root (``<root>..feeds.``,
wildcard), keeps the recorded ones, drops duplicates and notes gaps by sequence number
(:mod:`agents.archive.tracker`), and writes batches to the store from one writer thread.
Gaps, and whatever was missed while the archiver or the router was away, are back-filled from
the agents' ``ocs_core.feed_history`` (:mod:`agents.archive.backfill`). Task ``query`` reads
the store back.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.session import OpSession
from ocs_core.site import args as site_args

from agents.archive.agent_options import data_dir, make_parser, open_store
from agents.archive.backfill import Backfiller
from agents.archive.events import EventError, parse_event
from agents.archive.store import Batch, StoreError
from agents.archive.tracker import Tracker

log = Logger(namespace="agents.archive.agent")

#: Points a ``query`` reply may hold per field (its result travels in the session).
MAX_QUERY_POINTS = 50_000
#: Samples in one write (a transaction) at most.
MAX_BATCH_SAMPLES = 10_000
STORE_RETRY = 2.0


class FeedArchiver:
    """The archiver's ops on ``agent``; ``parsed`` holds its options."""

    def __init__(self, agent: OCSAgent, parsed: Any) -> None:
        self.agent, self.parsed = agent, parsed
        self.reactor = agent.reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="archive-writer")
        self.store = None
        self.tracker = Tracker()
        self.backfill: Backfiller | None = None
        self.pending = Batch()                 # being filled
        self.queue: deque[Batch] = deque()     # cut, each with the stream state at its cut
        self.writing: Batch | None = None
        self.store_failing = False
        self._backlog = 0  # samples received, not yet written
        self.recording = False
        self.seen: set[tuple[str, str]] = set()
        self.stats = {"samples_written": 0, "events_written": 0, "rejected_blocks": 0,
                      "last_rejection": None, "refused_events": 0, "store_error": None}
        self._rejections_logged: set[tuple[str, str]] = set()
        self._rate = (time.monotonic(), 0)
        self._last_session = None
        self._joined_before = False
        self._stop: defer.Deferred | None = None
        self._retry_at = 0.0
        agent.subscribe(self._on_event, f"{agent.config.address_root}..feeds.", {"match": "wildcard"})

    def _in_pool(self, func, *args) -> defer.Deferred:
        if not self.pool.started:
            self.pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.pool.stop)
        return threads.deferToThreadPool(self.reactor, self.pool, func, *args)

    # -- ingest -------------------------------------------------------------------------------
    def _on_event(self, event: Any, *args: Any, **kwargs: Any) -> None:
        if self.recording:
            self.ingest(event)

    def ingest(self, raw: Any, backfilled: bool = False) -> None:
        """Take one feed event (live, or back-filled: those are paced by the Backfiller)."""
        info = raw[1] if isinstance(raw, (list, tuple)) and len(raw) == 2 else None
        if isinstance(info, dict) and self.tracker.seen(info.get("agent_address"), info.get("feed_name"),
                                                        str(info.get("session_id")), info.get("seq")):
            self.tracker.duplicates += 1
            return
        try:
            event = parse_event(raw)
        except EventError as exc:
            self._reject("?", str(exc))
            return
        if event is None:
            return
        event.received = time.time()
        if not backfilled and self.backlog() >= self.parsed.max_backlog:
            self.stats["refused_events"] += 1  # not counted as received: back-filled later
            return
        key = (event.address, event.feed)
        if key not in self.seen:
            self.seen.add(key)
            log.info("archiving {a} feed {f} (agent class {c}, run {s})", a=event.address,
                     f=event.feed, c=event.agent_class, s=event.session_id)
        times = [b.timestamps for b in event.blocks if len(b.timestamps)]
        t_first = min(float(t.min()) for t in times) if times else None
        t_last = max(float(t.max()) for t in times) if times else None
        found = self.tracker.gaps_found
        if not self.tracker.accept(*event.stream, event.seq, t_first, t_last):
            return
        for why in event.rejected:
            self._reject(f"{event.address}.{event.feed}", why)
        self.pending.add(event)
        self._backlog += event.samples
        if self.pending.samples >= MAX_BATCH_SAMPLES:
            self._cut()
        if self.tracker.gaps_found > found and self.backfill is not None:
            self.backfill.schedule(event.address, event.feed)

    def _reject(self, where: str, why: str) -> None:
        self.stats["rejected_blocks"] += 1
        self.stats["last_rejection"] = f"{where}: {why}"
        kind = (where, why.split(":")[0])
        if kind not in self._rejections_logged:
            self._rejections_logged.add(kind)
            log.warn("not archived: {where}: {why} (further such are counted in session data)",
                     where=where, why=why)

    def backlog(self) -> int:
        """Samples received and not yet written."""
        return self._backlog

    # -- writing ------------------------------------------------------------------------------
    def flush(self) -> defer.Deferred | None:
        """Cut what is pending and hand the oldest batch to the writer (unless one is running).

        Batches are written in the order they were cut, each with the stream state as it was at
        its cut, so that every commit leaves the store consistent (a crash loses no seq silently).
        """
        self._cut()
        if self.writing is not None or self.store is None or not self.queue:
            return None
        if self.store_failing and time.monotonic() < self._retry_at:
            return None
        batch = self.writing = self.queue.popleft()
        d = self._in_pool(self.store.write, batch)
        d.addCallbacks(self._written, self._write_failed)
        return d

    def _cut(self) -> None:
        self.pending.add_state(*self.tracker.take_dirty())
        if self.pending:
            self.queue.append(self.pending)
            self.pending = Batch()

    def _written(self, _: Any) -> None:
        batch, self.writing = self.writing, None
        self._backlog -= batch.samples
        if self.queue:
            self.reactor.callLater(0, self.flush)
        self.stats["samples_written"] += batch.samples
        self.stats["events_written"] += len(batch.events)
        if self.store_failing:
            self.store_failing = False
            log.info("the store is writable again; {n} samples written", n=batch.samples)
            self.stats["store_error"] = None
            self._set_degraded(False)
            if self.backfill is not None:
                self.backfill.catch_up_all(0.1)

    def _write_failed(self, failure) -> None:
        self.queue.appendleft(self.writing)
        self.writing, self.store_failing = None, True
        self._retry_at = time.monotonic() + STORE_RETRY
        why = failure.getErrorMessage() if failure.check(StoreError) else repr(failure.value)
        if why != self.stats["store_error"]:
            log.error("{why}; keeping {n} samples in memory and retrying every {s:.0f} s",
                      why=why, n=self.backlog(), s=STORE_RETRY)
        self.stats["store_error"] = why
        self._set_degraded(True)

    def _set_degraded(self, value: bool) -> None:
        session = self._record_session
        if session is not None:
            session.degraded = value

    _record_session: OpSession | None = None

    # -- the record Process -------------------------------------------------------------------
    async def record(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """record()

        **Process** - Archive every recorded feed of the site until stopped.

        ``session.data``: ``samples_per_s``, ``samples_written``, ``backlog_samples``,
        ``lag_s``, ``feeds`` (per agent.feed: run, last seq, missing), ``gaps_found``,
        ``gaps_filled``, ``gaps_lost``, ``open_gaps``, ``duplicates``, ``rejected_blocks``,
        ``store``, ``store_size_bytes``, ``store_error``.
        """
        try:
            self.store = await self._in_pool(open_store, self.parsed)
            streams = await self._in_pool(self.store.load_streams)
        except StoreError as exc:
            log.error("record cannot start: {why}", why=exc)
            self.store = None
            return False, f"record cannot start: {exc}"
        self.tracker = Tracker(streams)  # the store's state: anything unwritten from a previous
        self.pending, self.queue, self._backlog = Batch(), deque(), 0  # run is back-filled
        self.store_failing, self.stats["store_error"] = False, None
        self.backfill = Backfiller(self.reactor, self.tracker, lambda: self.agent.session,
                                   lambda event: self.ingest(event, backfilled=True),
                                   lambda: self.backlog() < self.parsed.max_backlog / 2)
        self._record_session, self.recording = session, True
        log.info("archiving to {where} ({n} feed runs known)", where=self.store.location, n=len(streams))
        loops = [task.LoopingCall(f) for f in (self.flush, self._watch, self._retention)]
        periods = [self.parsed.flush_interval, 1.0, self.parsed.retention_period]
        for loop, period, now in zip(loops, periods, (False, False, True)):
            loop.clock = self.reactor
            loop.start(period, now=now)
        self._stop = defer.Deferred()
        self._watch()
        await self._stop
        for loop in loops:
            loop.stop()
        self.recording = False
        self.backfill.stop()
        while self.writing is not None or self.pending or self.queue:
            if self.store_failing and self.writing is None:
                break  # the store is failing: what is pending is back-filled next time
            d = self.flush()
            await (d if d is not None else _later(self.reactor, 0.05))
        store, self.store = self.store, None
        await self._in_pool(store.close)
        return True, "Stopped recording."

    def _stop_record(self, session: OpSession, params: Any) -> None:
        session.set_status("stopping")
        if self._stop is not None and not self._stop.called:
            self._stop.callback(None)

    def _watch(self) -> None:
        """Every second: catch up after (re)joining the router; retry open gaps; session data."""
        current = self.agent.session
        if current is not None and current is not self._last_session:
            # after a router outage agents replay their queues first (replay_delay); at our own
            # start nothing is on its way: catch up at once
            rejoin = self._joined_before
            self.backfill.catch_up_all(delay=self.agent.config.replay_delay + 1.0 if rejoin else 0.2)
            self._joined_before = True
        self._last_session = current
        for stream, _ in self.tracker.open_gaps():
            self.backfill.schedule(stream.address, stream.feed, delay=2.0)
        self._update_session()

    def _update_session(self) -> None:
        session = self._record_session
        now = time.monotonic()
        t0, n0 = self._rate
        written = self.stats["samples_written"]
        rate = (written - n0) / (now - t0) if now > t0 else 0.0
        self._rate = (now, written)
        oldest = self._oldest_pending()
        tr = self.tracker
        feeds = {f"{s.address}.{s.feed}": {"session_id": s.session_id, "last_seq": s.max_seq,
                                           "missing": s.missing()} for s in tr.latest_runs()}
        session.data = {
            "samples_per_s": round(rate, 1), "samples_written": written,
            "events_written": self.stats["events_written"], "backlog_samples": self.backlog(),
            "lag_s": None if oldest is None else round(time.time() - oldest, 3),
            "feeds": feeds, "gaps_found": tr.gaps_found, "gaps_filled": tr.gaps_filled,
            "gaps_lost": tr.gaps_lost,
            "open_gaps": [[s.address, s.feed, s.session_id, g.first, g.last] for s, g in tr.open_gaps()],
            "duplicates": tr.duplicates, "rejected_blocks": self.stats["rejected_blocks"],
            "last_rejection": self.stats["last_rejection"],
            "refused_events": self.stats["refused_events"],
            "store": self.store.location if self.store else None,
            "store_size_bytes": self._size, "store_error": self.stats["store_error"],
        }

    _size: int | None = None

    def _oldest_pending(self) -> float | None:
        for batch in (self.writing, *self.queue, self.pending):
            if batch and batch.events:
                return batch.events[0].received
        return None

    def _retention(self) -> defer.Deferred | None:
        store = self.store
        if store is None:
            return None
        p = self.parsed
        d = self._in_pool(store.apply_retention, time.time(), p.retention_age, p.retention_size)
        d.addCallback(lambda text: text and log.info("{text}", text=text))
        d.addErrback(lambda f: log.error("{why}", why=f.getErrorMessage()))
        d.addCallback(lambda _: self._in_pool(store.size_bytes) if self.store is store else None)
        d.addCallback(lambda size: setattr(self, "_size", size))
        d.addErrback(lambda f: None)
        return d

    # -- the query Task -----------------------------------------------------------------------
    @param("address", default=None, type=str)
    @param("feed", default=None, type=str)
    @param("fields", default=None, type=list)
    @param("start", default=None, type=float)
    @param("stop", default=None, type=float)
    @param("max_points", default=2000, type=int, min=1, max=MAX_QUERY_POINTS)
    async def query(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """query(address=None, feed=None, fields=None, start=None, stop=None, max_points=2000)

        **Task** - Read the archive. Without ``address``: ``session.data = {"catalog": [...]}``
        (every stored address, feed and field). With ``address`` and ``feed``:
        ``{"series": {field: {"t", "value", ["min", "max"]}}, "gaps": [...]}`` for
        ``[start, stop]`` (default: the last hour), downsampled to at most ``max_points``.
        """
        store = self.store
        if store is None:
            return False, "the record Process is not running: no store is open"
        if params["address"] is None:
            session.data = {"catalog": await self._in_pool(store.catalog)}
            return True, f"{len(session.data['catalog'])} series archived"
        if params["feed"] is None:
            return False, "query needs feed= with address="
        stop = params["stop"] if params["stop"] is not None else time.time()
        start = params["start"] if params["start"] is not None else stop - 3600.0
        if not start < stop:
            return False, f"start ({start}) must be before stop ({stop})"
        args = (params["address"], params["feed"], params["fields"], start, stop, params["max_points"])
        try:
            series = await self._in_pool(store.query, *args)
        except KeyError as exc:
            return False, str(exc.args[0])
        gaps = await self._in_pool(store.gaps, params["address"], params["feed"])
        session.data = {"address": params["address"], "feed": params["feed"], "start": start,
                        "stop": stop, "series": {f: s.to_json() for f, s in series.items()},
                        "gaps": gaps}
        n = sum(len(s.t) for s in series.values())
        return True, f"{n} points in {len(series)} field(s)"


def _later(reactor: Any, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def main(args: list[str] | None = None) -> None:
    """Run a FeedArchiver from the site config (``ocs-core agent INSTANCE_ID``)."""
    parsed = site_args.parse_args(agent_class="FeedArchiver", parser=make_parser(), args=args)
    agent = init_site_agent(parsed, "FeedArchiver")
    archiver = FeedArchiver(agent, parsed)
    agent.register_process("record", archiver.record, archiver._stop_record, blocking=False,
                           startup=parsed.initial_state == "record")
    agent.register_task("query", archiver.query, blocking=False)
    log.info("data directory {d} (backend {b})", d=data_dir(parsed), b=parsed.backend)
    agent.run()


if __name__ == "__main__":
    main()
