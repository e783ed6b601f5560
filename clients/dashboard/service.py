"""The dashboard's core: the site model fed by the router, pushed to every open page.

:class:`Dashboard` owns the WAMP link, the :class:`~clients.dashboard.model.SiteModel` and the
event streams of the open pages. It asks a new agent for its ``get_api``, polls the ``get_api``
of the agents a page shows (agents publish no session updates: ocs-web polls too), batches new
feed samples, and sends op requests with the password the person typed.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task
from twisted.logger import Logger

from ocs_core.runtime.codes import ResponseCode
from ocs_core.runtime.param_specs import PARAM_SPECS_QUERY

from clients.dashboard.history import ArchiveHistory
from clients.dashboard.link import SiteLink
from clients.dashboard.model import FeedEventError, SiteModel, decode_feed_event
from clients.ocs_client import OCSReply

__all__ = ["Dashboard", "Stream", "DashboardError", "PARAM_SPECS_QUERY", "ACTIONS"]

log = Logger(namespace="clients.dashboard.service")

ACTIONS = ("start", "stop", "abort", "status", "wait")
#: Seconds between flushes of new samples to the pages, and between session polls.
FLUSH_PERIOD = 0.25
POLL_PERIOD = 1.0
KEEPALIVE_PERIOD = 15.0
#: Longest ``wait`` a page may ask for (s): the HTTP request stays open that long.
MAX_WAIT = 30.0


class DashboardError(Exception):
    """A request the dashboard refuses or could not carry out; the text says why."""


class Stream(Protocol):
    """An open page's event stream."""

    watch: str | None

    def send(self, event: str, data: Any) -> None: ...

    def keepalive(self) -> None: ...


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApplicationError):
        detail = "; ".join(str(a) for a in exc.args) or "no detail"
        return f"{exc.error}: {detail}"
    return str(exc) or type(exc).__name__


class Dashboard:
    """The site as the pages see it.

    Args:
        hub: the site's hub (``clients.site.Hub``).
        reactor: the Twisted reactor.
        clock: unix time (tests may fix it).
    """

    def __init__(self, hub: Any, reactor: Any, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.reactor = reactor
        self.clock = clock
        self.model = SiteModel(hub.address_root)
        self.link = SiteLink(hub, reactor, self._on_event, self._on_state)
        self.history = ArchiveHistory(self.model, self.link)
        self.streams: set[Stream] = set()
        self.apis: dict[str, dict] = {}
        self._pending: dict[tuple[str, str], dict[str, tuple[list, list]]] = {}
        self._asking: set[str] = set()
        self._beats: set[str] = set()
        self._loops: list[task.LoopingCall] = []

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the router and start the periodic work."""
        self.link.start()
        for period, func in ((FLUSH_PERIOD, self._flush), (POLL_PERIOD, self._poll),
                             (KEEPALIVE_PERIOD, self._keepalive)):
            loop = task.LoopingCall(func)
            loop.clock = self.reactor
            loop.start(period, now=False).addErrback(
                lambda f: log.error("dashboard loop failed: {why}", why=f.getTraceback()))
            self._loops.append(loop)

    def stop(self) -> defer.Deferred:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        return self.link.stop()

    # -- pages ------------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        """What a page gets first: the router state and every agent."""
        return {"address_root": self.hub.address_root, "router": self.hub.wamp_server,
                "connected": self.link.connected, "agents": self.model.snapshot(self.clock()),
                "archiver": self.history.archiver_address()}

    def add_stream(self, stream: Stream) -> None:
        self.streams.add(stream)
        stream.send("hello", self.hello())
        if stream.watch in self.model.agents:  # a page may watch an agent not seen yet
            api = self.apis.get(stream.watch)
            if api is not None:
                stream.send("api", {"address": stream.watch, "api": api})
            self._refresh(stream.watch)

    def remove_stream(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def _broadcast(self, event: str, data: Any, watch: str | None = None) -> None:
        for stream in list(self.streams):
            if watch is None or stream.watch == watch:
                stream.send(event, data)

    # -- router events ----------------------------------------------------------------------
    def _on_state(self, connected: bool) -> None:
        self._broadcast("router", {"connected": connected, "router": self.hub.wamp_server})
        if connected:
            for address in {s.watch for s in self.streams} & set(self.model.agents):
                self._refresh(address)

    def _on_event(self, args: tuple, topic: str) -> None:
        try:
            payload, info = decode_feed_event(args)
        except FeedEventError:
            return
        if info.get("feed_name") == "heartbeat":
            entry, changed, new_run = self.model.heartbeat(payload, info, self.clock())
            if entry is None:
                return
            self._beats.add(entry.address)
            if new_run:
                self._ask_api(entry.address)
            if changed:
                self._broadcast("agent", entry.summary(self.clock()))
                if entry.address in {s.watch for s in self.streams}:
                    self._refresh(entry.address)
        elif info.get("record"):
            new = self.model.recorded(payload, info)
            if new:
                pending = self._pending.setdefault((info["agent_address"], str(info.get("feed_name"))), {})
                for name, (t, v) in new.items():
                    pt, pv = pending.setdefault(name, ([], []))
                    pt.extend(t)
                    pv.extend(v)

    def _ask_api(self, address: str) -> None:
        if address in self._asking:
            return
        self._asking.add(address)
        d = self.link.call(address, "get_api")

        def got(api: Any) -> None:
            if not isinstance(api, dict) or api == self.apis.get(address):
                return  # nothing new: nothing to push
            self.apis[address] = api
            entry = self.model.set_api(address, api)
            if entry is not None:
                self._broadcast("agent", entry.summary(self.clock()))
            self._broadcast("api", {"address": address, "api": api}, watch=address)

        d.addCallback(got)
        d.addErrback(lambda f: log.debug("get_api of {a} failed: {why}", a=address, why=f.getErrorMessage()))
        d.addBoth(lambda _: self._asking.discard(address))

    def _refresh(self, address: str) -> None:
        if self.link.connected:
            self._ask_api(address)

    # -- periodic work ----------------------------------------------------------------------
    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        beats, self._beats = self._beats, set()
        if beats:
            self._broadcast("beats", sorted(beats))
        for (address, feed), fields in pending.items():
            self._broadcast("points", {"address": address, "feed": feed, "fields": fields}, watch=address)
        now = self.clock()
        for entry in self.model.expire(now):
            self._broadcast("agent", entry.summary(now))

    def _keepalive(self) -> None:
        for stream in list(self.streams):
            stream.keepalive()

    def _poll(self) -> None:
        for address in {s.watch for s in self.streams if s.watch}:
            entry = self.model.agents.get(address)
            if entry is not None and not entry.lost:
                self._refresh(address)

    # -- requests from pages ----------------------------------------------------------------
    def _address(self, agent: Any) -> str:
        if not isinstance(agent, str) or not agent or len(agent) > 255:
            raise DashboardError("give the agent's address or instance-id")
        if agent in self.model.agents:
            return agent
        address = f"{self.hub.address_root}.{agent}"
        if address in self.model.agents:
            return address
        raise DashboardError(f"no agent {agent!r} has been seen on the heartbeats")

    async def agent_info(self, agent: Any) -> dict[str, Any]:
        """An agent's ``get_api`` and its ``@param`` declarations (None for ocs's agents)."""
        address = self._address(agent)
        try:
            api = await self.link.call(address, "get_api")
            specs = await self.link.call(address, PARAM_SPECS_QUERY)
        except (ApplicationError, ConnectionError) as exc:
            raise DashboardError(f"{address}: {_describe(exc)}") from None
        if isinstance(api, dict):
            self.apis[address] = api
            self.model.set_api(address, api)
        return {"address": address, "api": api, "param_specs": specs if isinstance(specs, dict) else None}

    async def op_request(self, body: Any) -> dict[str, Any]:
        """Carry out ``{"agent", "op", "action", "params", "password", "timeout"}``; return
        ``{"reply": [status, message, session], "text": <as OCSClient shows it>}``."""
        if not isinstance(body, dict):
            raise DashboardError("the request body must be a JSON object")
        address = self._address(body.get("agent"))
        op, action = body.get("op"), body.get("action")
        if not isinstance(op, str) or not op or len(op) > 255:
            raise DashboardError("give the op's name in 'op'")
        if action not in ACTIONS:
            raise DashboardError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        params = body.get("params")
        if action == "start":
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise DashboardError("params must be a JSON object of name: value pairs")
        else:
            params = {}
        kwargs: dict[str, Any] = {}
        password = body.get("password")
        if password is not None and not isinstance(password, str):
            raise DashboardError("password must be a string")
        api = self.apis.get(address) or {}
        if password and "access_control" in api:  # pre-0.12 agents refuse a password keyword
            kwargs["password"] = password
        if action == "wait":
            timeout = body.get("timeout", 10.0)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 <= timeout <= MAX_WAIT:
                raise DashboardError(f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}")
            kwargs["timeout"] = float(timeout)
        try:
            reply = await self.link.call(f"{address}.ops", action, op, params, **kwargs)
        except (ApplicationError, ConnectionError) as exc:
            raise DashboardError(f"{address}.ops {action} {op}: {_describe(exc)}") from None
        if not (isinstance(reply, (list, tuple)) and len(reply) == 3):
            raise DashboardError(f"{address}.ops replied {reply!r}, not [status, message, session]")
        self._refresh(address)
        text = OCSReply(*reply).format(now=self.clock())
        try:
            code = ResponseCode(reply[0]).name
        except ValueError:
            code = str(reply[0])
        return {"reply": list(reply), "code": code, "text": text}

    def feed_points(self, agent: Any, feed: Any, max_points: int | None = None) -> dict[str, Any]:
        """The samples kept of one recorded feed."""
        address = self._address(agent)
        buf = self.model.feeds.get((address, str(feed)))
        points = buf.points(max_points) if buf is not None else {}
        return {"address": address, "feed": feed, "fields": points}
