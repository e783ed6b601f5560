"""OCSAgent: an agent's WAMP presence — registration, control RPCs, feeds, heartbeats, reconnects.

The agent joins the realm, registers ``<root>.<instance-id>`` (management) and
``<root>.<instance-id>.ops`` (control), publishes a heartbeat every second, and serves its
Tasks and Processes through :class:`ocs_core.runtime.operations.Operations`. When the router goes away,
running operations keep running, feed events are queued, and the agent reconnects with backoff
for as long as configured (default: for ever), registers again and replays the queued events.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from twisted.application.internet import ClientService
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger
from twisted.python import threadable

from ocs_core.runtime.access import AccessControl, AccessRuleError
from ocs_core.runtime.agent_config import AgentConfig
from ocs_core.runtime.agent_session import AgentSession as _Session
from ocs_core.runtime.feeds import Feed, FeedError
from ocs_core.runtime.logs import start_logging
from ocs_core.runtime.management import RUNTIME_ERROR, answer_management, describe_agent
from ocs_core.runtime.codes import START_AND_WAIT
from ocs_core.runtime.operations import InlineChooser, OpFunc, Operation, Operations
from ocs_core.runtime.rejoin import ALREADY_EXISTS, LiveHolder, register_all
from ocs_core.runtime.session import OpSession
from ocs_core.runtime.text import brief
from ocs_core.runtime.wire import agent_serializers

log = Logger(namespace="ocs_core.runtime.agent")


class OCSAgent:
    """An agent: register Tasks, Processes and feeds, then :meth:`run` (or :meth:`connect`).

    Args:
        config: address, router URL, realm and reconnect behaviour.
        reactor: the Twisted reactor (default: the global one).
    """

    def __init__(self, config: AgentConfig, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.agent_address = config.address
        self.agent_class = config.agent_class
        self.session_id = str(time.time())
        self.access = AccessControl(config.access_policy, config.instance_id, config.agent_class)
        self.operations = Operations(reactor, on_message=self._log_session_message,
                                     access=self.access)
        self.feeds: dict[str, Feed] = {}
        self.heartbeat_enabled = True
        self._heartbeat = Feed(self.agent_address, "heartbeat", agent_class=config.agent_class,
                               session_id=self.session_id, outbox_size=0)
        self._subscriptions: list[tuple[Callable, str, dict | None]] = []
        self._procedures: list[tuple[Callable, str]] = []
        self._session: _Session | None = None
        self._feeds_live = False
        self._joined_once = False
        self._beat = task.LoopingCall(self._send_heartbeat)
        self._beat.clock = reactor
        self._service: ClientService | None = None
        self._giveup = None
        self._replay = None
        self._shutting_down = False
        self.exit_code = 0
        self.on_first_join: defer.Deferred = defer.Deferred()
        if self.access.director_id is not None:
            self.subscribe(self._director_controls,
                           f"{config.address_root}.{self.access.director_id}.feeds.controls")

    # -- registration API -------------------------------------------------------------------
    def register_task(self, name: str, func: OpFunc, aborter: OpFunc | None = None, *,
                      blocking: bool = True, aborter_blocking: bool | None = None,
                      startup: bool | dict = False, min_privs: int = 1,
                      inline: InlineChooser | None = None) -> Operation:
        """Register a Task ``func(session, params) -> (ok, message)``; see ocs's register_task
        (``inline``, ocs-core's own: see :meth:`Operations.register_task`)."""
        return self.operations.register_task(name, func, aborter, blocking=blocking,
                                             aborter_blocking=aborter_blocking, startup=startup,
                                             min_privs=min_privs, inline=inline)

    def register_process(self, name: str, start: OpFunc, stop: OpFunc, *, blocking: bool = True,
                         stopper_blocking: bool | None = None,
                         startup: bool | dict = False, min_privs: int = 1) -> Operation:
        """Register a Process with its start and stop functions."""
        return self.operations.register_process(name, start, stop, blocking=blocking,
                                                stopper_blocking=stopper_blocking, startup=startup,
                                                min_privs=min_privs)

    def register_feed(self, name: str, *, record: bool = False, agg_params: dict | None = None,
                      buffer_time: float = 0.0, outbox_size: int = 10_000,
                      **history: Any) -> Feed:
        """Register a feed on ``<agent>.feeds.<name>`` (``history``: see :class:`Feed`)."""
        if name in self.feeds or name == "heartbeat":
            raise ValueError(f"feed {name!r} is already registered")
        feed = Feed(self.agent_address, name, record=record, agg_params=agg_params,
                    buffer_time=buffer_time, agent_class=self.agent_class,
                    session_id=self.session_id, outbox_size=outbox_size, **history)
        self.feeds[name] = feed
        return feed

    def publish_to_feed(self, name: str, message: Any) -> None:
        """Publish ``message`` on feed ``name``; safe from any thread.

        Raises:
            KeyError: no such feed. FeedError / TypeError: the message does not fit the feed.
        """
        feed = self.feeds[name]
        self._emit_from_any_thread(feed, feed.payloads(message))

    def publish_to_feed_acked(self, name: str, message: Any) -> defer.Deferred:
        """Publish ``message`` on the unrecorded feed ``name``; fire when the router acknowledged it.

        Call from the reactor thread. Unlike :meth:`publish_to_feed` nothing is queued: while
        the router is away the Deferred fails at once with ConnectionError (nothing is sent),
        and a publish the router refuses fails it with the router's error.

        Raises:
            KeyError: no such feed. FeedError: ``name`` is a recorded feed.
        """
        feed = self.feeds[name]
        if feed.record:
            raise FeedError(f"feed {name!r} is recorded (buffered); use publish_to_feed")
        session = self.session
        if not self._feeds_live or session is None:
            return defer.fail(ConnectionError(f"{self.agent_address} is not connected to the "
                                              f"router; not published on {feed.address}"))
        d = session.publish(feed.address, feed.make_event(message),
                            options=PublishOptions(acknowledge=True))
        return d.addCallback(lambda _: None)

    def flush_feed(self, name: str) -> None:
        """Publish what a buffered recorded feed holds now."""
        feed = self.feeds[name]
        self._emit_from_any_thread(feed, feed.flush())

    def subscribe(self, handler: Callable, topic: str, options: dict | None = None) -> None:
        """Subscribe ``handler`` to ``topic`` now and on every (re)join."""
        self._subscriptions.append((handler, topic, options))
        if self._session is not None and self._session.is_attached():
            self._subscribe_one(self._session, handler, topic, options)

    def register_procedure(self, func: Callable, name: str) -> None:
        """Serve ``func`` as the procedure ``<agent address>.<name>``, now and on every (re)join."""
        uri = f"{self.agent_address}.{name}"
        self._procedures.append((func, uri))
        if self.session is not None:
            self.session.register(func, uri).addErrback(
                lambda f: log.error("registering {uri} failed: {why}", uri=uri, why=f.getErrorMessage()))

    @property
    def session(self) -> _Session | None:
        """The joined WAMP session, or None while the router is away."""
        s = self._session
        return s if s is not None and s.is_attached() else None

    def call_op(self, agent_address: str, op_name: str, action: str, params: Any = None,
                timeout: float | None = None) -> defer.Deferred:
        """Control another agent's op; fires with its ``[code, message, session]`` reply."""
        session = self.session
        if session is None:
            return defer.fail(ConnectionError(f"{self.agent_address} is not connected to the router"))
        return session.call(f"{agent_address}.ops", action, op_name, params=params, timeout=timeout)

    # -- connection -------------------------------------------------------------------------
    def connect(self) -> None:
        """Start connecting (and reconnecting) to the router."""
        url = self.config.wamp_server
        factory = WampWebSocketClientFactory(
            lambda: _Session(ComponentConfig(realm=self.config.realm), self), url=url,
            serializers=agent_serializers())
        factory.setProtocolOptions(autoPingInterval=10, autoPingTimeout=5)
        host, port = factory.host, factory.port
        endpoint = clientFromString(self.reactor, f"tcp:host={host}:port={port}:timeout=5")
        policy = self.config.reconnect_policy()
        self._service = ClientService(endpoint, factory, retryPolicy=policy.retry_policy(), clock=self.reactor)
        self._service.startService()
        d = self._service.whenConnected(failAfterFailures=1)
        d.addErrback(lambda f: None if self._joined_once else log.error(
            "router unreachable at {url} ({why}); still trying", url=url, why=f.getErrorMessage()))
        if self.config.crossbar_timeout > 0:
            self._arm_giveup()

    def _joined(self, session: _Session, details: Any) -> defer.Deferred:
        return defer.ensureDeferred(self._on_join(session))

    async def _on_join(self, session: _Session) -> None:
        addr = self.agent_address
        self._cancel_giveup()  # the router is there; a registration still held is waited out
        try:
            procedures = [(f"{addr}.ops", self._ops_rpc), (addr, self._management_rpc)]
            procedures += [(uri, func) for func, uri in self._procedures]
            registered = await register_all(session, self.reactor, addr, procedures,
                                            first=not self._joined_once,
                                            still_wanted=lambda: not self._shutting_down)
        except LiveHolder:
            self._fatal_registration(ApplicationError(ALREADY_EXISTS))
            return
        except ApplicationError as exc:
            self._fatal_registration(exc)
            return
        if not registered:  # the session went away while a stale registration was waited out
            return
        self._session = session
        for handler, topic, options in self._subscriptions:
            self._subscribe_one(session, handler, topic, options)
        if not self._beat.running:
            self._beat.start(self.config.heartbeat_period, now=True)
        if self.access.director_id is not None:
            self._poll_director(session)
        first = not self._joined_once
        self._joined_once = True
        if first:
            log.info("{addr} joined realm {realm} at {url}", addr=addr, realm=self.config.realm,
                     url=self.config.wamp_server)
            self._feeds_live = True
            self.operations.run_startup_ops()
            self.on_first_join.callback(self)
        else:
            log.info("{addr} rejoined the router; replaying queued feed events in {d:.1f} s",
                     addr=addr, d=self.config.replay_delay)
            self._replay = self.reactor.callLater(self.config.replay_delay, self._replay_queued)

    def _fatal_registration(self, exc: ApplicationError) -> None:
        addr = self.agent_address
        if exc.error == ALREADY_EXISTS:
            why = (f"instance-id {self.config.instance_id!r} is already running on this router "
                   f"({addr} is registered)")
        elif exc.error == "wamp.error.not_authorized":
            why = (f"the router refused to register {addr}: address_root "
                   f"{self.config.address_root!r} or realm {self.config.realm!r} does not match "
                   "the router's configuration (wamp.error.not_authorized)")
        else:
            why = f"registering {addr} failed: {exc.error} {exc.args}"
        log.error("{why}", why=why)
        self.exit_code = 1
        self.shutdown()

    def _left(self, session: _Session, details: Any) -> None:
        if not self._joined_once and details.reason in ("wamp.error.no_such_realm",
                                                        "wamp.error.not_authorized"):
            what = (f"the cryptosign key of {self.config.instance_id!r}" if self.config.auth_key
                    else f"realm {self.config.realm!r}")
            log.error("the router at {url} refused {what} ({reason}: {why})", url=self.config.wamp_server,
                      what=what, reason=details.reason, why=details.message or "no detail")
            self.exit_code = 1
            self.shutdown()

    def _disconnected(self, session: _Session) -> None:
        if session is not self._session:
            return
        self._session = None
        self._feeds_live = False
        if self._replay is not None and self._replay.active():
            self._replay.cancel()
        resend = sum(feed.requeue_inflight() for feed in self.feeds.values())
        if self._beat.running:
            self._beat.stop()
        if not self._shutting_down:
            log.warn("lost the router at {url}; ops keep running, feed events are queued "
                     "({n} unacknowledged, sent again on rejoin), reconnecting",
                     url=self.config.wamp_server, n=resend)
            if self.config.crossbar_timeout > 0:
                self._arm_giveup()

    def _arm_giveup(self) -> None:
        self._cancel_giveup()
        self._giveup = self.reactor.callLater(self.config.crossbar_timeout, self._give_up)

    def _cancel_giveup(self) -> None:
        if self._giveup is not None and self._giveup.active():
            self._giveup.cancel()
        self._giveup = None

    def _give_up(self) -> None:
        log.error("no router at {url} for {t:.0f} s (--crossbar-timeout); stopping",
                  url=self.config.wamp_server, t=self.config.crossbar_timeout)
        self.exit_code = 1
        self.shutdown()

    def _subscribe_one(self, session, handler, topic, options) -> None:
        opts = SubscribeOptions(**options) if options else None
        d = session.subscribe(handler, topic, options=opts)
        d.addErrback(lambda f: log.error("subscribing to {topic} failed: {why}", topic=topic,
                                         why=f.getErrorMessage()))

    # -- RPC handlers -----------------------------------------------------------------------
    def _management_rpc(self, q: str | None = None, *args: Any, **kwargs: Any) -> Any:
        return answer_management(self, q, kwargs)

    def get_api(self) -> dict[str, Any]:
        """The agent's self-description (ocs 0.12's ``get_api``)."""
        return describe_agent(self)

    def _ops_rpc(self, action: str | None = None, op_name: str | None = None, params: Any = None,
                 timeout: Any = None, password: Any = None, *extra: Any, **unexpected: Any) -> Any:
        if extra:
            raise ApplicationError(RUNTIME_ERROR, f"ops calls take at most 5 arguments (action, op_name, "
                                   f"params, timeout, password), got {5 + len(extra)}")
        if unexpected:
            raise ApplicationError(RUNTIME_ERROR, f"unexpected keyword argument(s) {brief(sorted(unexpected))}; "
                                   "ops calls take action, op_name, params, timeout, password")
        if not isinstance(action, str) or not isinstance(op_name, str):
            raise ApplicationError(RUNTIME_ERROR, "ops calls need two string arguments: action "
                                   f"(start, status, wait, stop, abort, {START_AND_WAIT}) and "
                                   f"op_name; got {brief(action)}, {brief(op_name)}")
        return self.operations.dispatch(action, op_name, params, timeout, password)

    # -- access director --------------------------------------------------------------------
    def _poll_director(self, session: _Session) -> None:
        director = f"{self.config.address_root}.{self.access.director_id}"
        d = session.call(f"{director}.agent_poll", instance_id=self.config.instance_id,
                         agent_class=self.agent_class)
        d.addErrback(lambda f: log.info("the access director {d} did not answer ({why}); keeping "
                                        "the current rules until it publishes",
                                        d=director, why=f.getErrorMessage()))

    def _director_controls(self, *args: Any, **kwargs: Any) -> None:
        applied, why = self.access.apply_controls(args[0] if len(args) == 1 else list(args))
        if why:
            (log.info if applied else log.warn)("access director: {why}", why=why)

    # -- feeds over the wire ----------------------------------------------------------------
    def _emit_from_any_thread(self, feed: Feed, payloads: list) -> None:
        if not payloads:
            return
        if threadable.isInIOThread():
            self._emit(feed, payloads)
        else:
            self.reactor.callFromThread(self._emit, feed, payloads)

    def _emit(self, feed: Feed, payloads: list) -> None:
        for payload in payloads:
            event = feed.make_event(payload)
            if self._feeds_live and self.session is not None:
                self._send(feed, event)
            else:
                feed.queue(event)

    def _send(self, feed: Feed, event: list) -> None:
        seq = event[1]["seq"]
        feed.inflight[seq] = event
        try:
            d = self._session.publish(feed.address, event, options=PublishOptions(acknowledge=True))
        except Exception:  # the transport is going away: requeued when the disconnect arrives
            return
        d.addCallback(lambda _: feed.inflight.pop(seq, None))
        d.addErrback(lambda f: None)  # stays in flight; requeued when the connection drops

    def _replay_queued(self) -> None:
        if self.session is None:
            return
        total = 0
        for feed in self.feeds.values():
            if feed.dropped:
                log.warn("feed {f}: {n} events were dropped while the router was away (queue full)",
                         f=feed.name, n=feed.dropped)
                feed.dropped = 0
            while feed.outbox:
                self._send(feed, feed.outbox.popleft())
                total += 1
        self._feeds_live = True
        if total:
            log.info("replayed {n} queued feed events", n=total)

    def _send_heartbeat(self) -> None:
        session = self.session
        if self.heartbeat_enabled and session is not None:
            try:
                session.publish(self._heartbeat.address,
                                self._heartbeat.make_event(self.operations.op_codes()))
            except Exception as exc:  # the transport is going away; the next join beats again
                log.debug("heartbeat not sent: {exc}", exc=exc)

    def _log_session_message(self, session: OpSession, text: str) -> None:
        # The op's own messages and its end at info; the routine starting/running steps at debug.
        if text.startswith('Status is now "') and not text.endswith('"done".'):
            log.debug("{op}:{sid} {text}", op=session.op_name, sid=session.session_id, text=text)
        else:
            log.info("{op}:{sid} {text}", op=session.op_name, sid=session.session_id, text=text)

    # -- lifecycle --------------------------------------------------------------------------
    def shutdown(self) -> defer.Deferred:
        """Stop every op (briefly waiting for them), leave the router and stop the reactor."""
        if self._shutting_down:
            return defer.succeed(None)
        self._shutting_down = True
        # A blocking op that ignores its stopper must not keep the process alive.
        killer = threading.Timer(3.0, os._exit, (self.exit_code or 0,))
        killer.daemon = True
        killer.start()
        d = self.operations.stop_all(timeout=0.8)

        def leave(_):
            if self._beat.running:
                self._beat.stop()
            if self._service is not None:
                return self._service.stopService()

        d.addCallback(leave)
        d.addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)
        return d

    def run(self) -> None:
        """Connect, serve until SIGTERM/SIGINT (or a fatal error), then exit with a status."""
        threadpool = self.reactor.getThreadPool()
        threadpool.adjustPoolsize(maxthreads=max(threadpool.max, 20))
        self.reactor.callWhenRunning(self.connect)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.reactor.callFromThread(self.shutdown))
        self.reactor.run(installSignalHandlers=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(self.exit_code)


#: Same names as ocs_core.site.args.CHECK_ENV / CHECKED (runtime does not import site).
_CHECK_ENV, _CHECKED = "OCS_CORE_CHECK_ARGUMENTS", "ocs-core: arguments checked"


def init_site_agent(args: Any, agent_class: str, log_level: str | None = None) -> OCSAgent:
    """Make an agent from parsed site arguments and start its logging.

    Logs go to stderr and to ``<log-dir>/<address>.log`` when the host has a log directory.
    """
    config = AgentConfig.from_args(args, agent_class=agent_class)
    if os.environ.get(_CHECK_ENV):  # ``ocs-core up``'s check of the arguments: they are fine
        raise SystemExit(_CHECKED)
    log_dir = getattr(args, "log_dir", None)
    log_file = os.path.join(log_dir, f"{config.address}.log") if log_dir else None
    start_logging(level=log_level or os.environ.get("LOGLEVEL", "info"), log_file=log_file,
                  prefix=f"{config.instance_id} ")
    try:
        return OCSAgent(config)
    except AccessRuleError as exc:  # a bad --access-policy: one line, exit status 1
        sys.exit(f"{config.instance_id}: error: {exc}")
