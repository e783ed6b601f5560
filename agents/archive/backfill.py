"""Back-fill: fetch missed events from an agent's ``ocs_core.feed_history`` (Twisted).

One job at a time per (agent, feed). A job pages through the agent's history from the first
missing seq (or, for a catch-up, from the newest seq stored) and hands every event to the
archiver's normal ingest, where duplicates are dropped. What the history no longer holds, or a
run the agent has left (it restarted), is declared lost in the tracker.
"""
from __future__ import annotations

from typing import Any, Callable

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.logger import Logger

from ocs_core.runtime.feed_history import FEED_HISTORY_QUERY
from agents.archive.tracker import Tracker

log = Logger(namespace="agents.archive.backfill")

#: Seconds between a gap's detection and its back-fill (lets an agent's own replay arrive first).
GAP_DELAY = 1.5
RETRY_DELAYS = (2.0, 5.0, 10.0, 30.0, 60.0)
PAGE_BYTES = 4 * 1024 * 1024
#: Seconds a job waits for the archiver's backlog to drain before it gives up for now.
DRAIN_WAIT = 10.0
_GONE = ("wamp.error.no_such_procedure", "wamp.error.canceled", "wamp.error.timeout")


class Backfiller:
    """Schedules and runs back-fill jobs.

    Args:
        reactor: for delays.
        tracker: the archiver's exactly-once state.
        session: returns the joined WAMP session or None.
        ingest: ``ingest(event) -> None``, the archiver's entry for one back-filled event.
        ready: whether the archiver can take a page now (its backlog has drained).
    """

    def __init__(self, reactor: Any, tracker: Tracker, session: Callable[[], Any],
                 ingest: Callable[[Any], None], ready: Callable[[], bool] = lambda: True) -> None:
        self.reactor, self.tracker, self._session, self._ingest = reactor, tracker, session, ingest
        self._ready = ready
        self._jobs: dict[tuple[str, str], Any] = {}   # (address, feed) -> DelayedCall or "running"
        self._retries: dict[tuple[str, str], int] = {}
        self.pages = 0
        self.stopped = False

    def schedule(self, address: str, feed: str, delay: float = GAP_DELAY) -> None:
        """Run a job for (address, feed) after ``delay`` (sooner, if one is already waiting)."""
        key = (address, feed)
        job = self._jobs.get(key)
        if self.stopped or job == "running":
            return
        if job is not None:
            if job.getTime() > self.reactor.seconds() + delay:
                job.reset(delay)
            return
        self._jobs[key] = self.reactor.callLater(delay, self._start, key)

    def catch_up_all(self, delay: float = GAP_DELAY) -> None:
        """A job for the newest run of every known (agent, feed), retry back-off forgotten."""
        self._retries.clear()
        for s in self.tracker.latest_runs():
            self.schedule(s.address, s.feed, delay)

    def pending(self) -> int:
        return len(self._jobs)

    def stop(self) -> None:
        self.stopped = True
        for job in self._jobs.values():
            if hasattr(job, "active") and job.active():
                job.cancel()
        self._jobs.clear()

    def _start(self, key: tuple[str, str]) -> None:
        self._jobs[key] = "running"
        d = defer.ensureDeferred(self._run(*key))
        d.addCallbacks(lambda retry: self._done(key, retry), lambda f: self._failed(key, f))

    def _done(self, key, retry: bool) -> None:
        self._jobs.pop(key, None)
        if retry:
            n = self._retries.get(key, 0)
            self._retries[key] = n + 1
            self.schedule(*key, delay=RETRY_DELAYS[min(n, len(RETRY_DELAYS) - 1)])
        else:
            self._retries.pop(key, None)

    def _failed(self, key, failure) -> None:
        log.error("back-fill of {a} feed {f} failed: {why}", a=key[0], f=key[1],
                  why=failure.getErrorMessage())
        self._done(key, True)

    def _runs(self, address: str, feed: str):
        return sorted((s for s in self.tracker.streams.values()
                       if s.address == address and s.feed == feed),
                      key=lambda s: (bool(s.gaps), s.session_id))

    async def _run(self, address: str, feed: str) -> bool:
        """One job; returns True to be retried later (agent away, gaps still open)."""
        runs = self._runs(address, feed)
        if not runs:
            return False
        gappy = [s for s in runs if s.gaps]
        stream = gappy[0] if gappy else max(runs, key=lambda s: _num(s.session_id))
        after = stream.gaps[0].first - 1 if stream.gaps else stream.max_seq
        while not self.stopped:
            waited = 0.0
            while not self._ready():  # one page at a time, once the last is written
                if waited > DRAIN_WAIT:
                    return True
                await task.deferLater(self.reactor, 0.1, lambda: None)
                waited += 0.1
            session = self._session()
            if session is None:
                return True
            try:
                reply = await session.call(address, FEED_HISTORY_QUERY, feed=feed, after_seq=after,
                                           max_bytes=PAGE_BYTES)
            except ApplicationError as exc:
                if exc.error in _GONE:
                    return bool(stream.gaps)
                self._lose(stream, None, f"the agent refused the history query: {exc.args[:1]}")
                return False
            self.pages += 1
            if not isinstance(reply, dict) or "events" not in reply:  # ocs 0.12 agent: no history
                self._lose(stream, None, "the agent keeps no history")
                return False
            if str(reply.get("session_id")) != stream.session_id:
                self._lose(stream, None, f"the agent restarted (run {reply.get('session_id')})")
                for event in reply["events"]:
                    self._ingest(event)
                if reply.get("more") or reply["events"]:
                    self.schedule(address, feed, delay=0.1)  # continue with the new run
                return any(s.gaps for s in self._runs(address, feed) if s is not stream)
            oldest = reply.get("oldest_seq")
            self._lose(stream, oldest if oldest is not None else int(reply["last_seq"]) + 1,
                       "no longer in the agent's history")
            for event in reply["events"]:
                self._ingest(event)
            if not reply.get("more") or not reply["events"]:
                return any(s.gaps for s in self._runs(address, feed) if s is not stream)
            after = reply["events"][-1][1]["seq"]
            if stream.gaps and stream.gaps[0].first - 1 > after:
                after = stream.gaps[0].first - 1
        return False

    def _lose(self, stream, oldest_kept, why: str) -> None:
        for gap in self.tracker.give_up(stream.key, oldest_kept):
            log.warn("gap lost: {a} feed {f} run {s} seq {g1}..{g2} ({why})", a=stream.address,
                     f=stream.feed, s=stream.session_id, g1=gap.first, g2=gap.last, why=why)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
