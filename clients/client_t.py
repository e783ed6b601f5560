"""Twisted control programs: run a function over a WebSocket session, and control agents' ops from it.

    from clients import client_t

    def main(app, args):
        delay = client_t.TaskClient(app, 'observatory.fake-data1', 'delay_task')
        yield delay.start(params={'delay': 1})
        yield delay.wait()
        yield delay.run(delay=1)             # start and wait, one call to an ocs-core agent
        yield client_t.dsleep(0.05)

    client_t.run_control_script(main)

``TaskClient`` and ``ProcessClient`` also work inside an agent's op: pass the agent
(:class:`ocs_core.runtime.agent.OCSAgent`) as ``app`` and they use its current session.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import weakref
from typing import Any, Callable

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString

from ocs_core.runtime.codes import FEATURES_QUERY, OK, START_AND_WAIT
from ocs_core.runtime.timing import dsleep
from clients.passwords import password_for
from clients.site import parse_control_args, resolve_hub

__all__ = ["run_control_script", "run_with_session", "OperationClient", "TaskClient",
           "ProcessClient", "agent_features", "dsleep", "describe_wamp_error"]


def _session_of(app: Any) -> ApplicationSession:
    session = getattr(app, "session", app) if not isinstance(app, ApplicationSession) else app
    if session is None:
        raise ConnectionError("not connected to the router (the agent's session is down)")
    return session


#: Per WAMP session, per agent address: the Deferred of the agent's ``ocs_core.features``.
_FEATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def agent_features(session: ApplicationSession, agent_address: str) -> defer.Deferred:
    """The agent's ``ocs_core.features`` dict (``{}`` for an ocs agent); asked once per session."""
    known = _FEATURES.setdefault(session, {})
    if agent_address in known:
        return defer.succeed(known[agent_address])

    def keep(answer: Any) -> dict:
        features = answer if isinstance(answer, dict) else {}
        known[agent_address] = features
        return features

    return session.call(agent_address, FEATURES_QUERY).addCallback(keep)


class OperationClient:
    """Control one op of one agent; every method returns a Deferred of ``[code, message, session]``.

    Args:
        app: a joined ``ApplicationSession``, or an agent whose ``.session`` is used.
        agent_address: e.g. ``observatory.fake-data1``.
        op_name: the Task or Process name.
        privs: a password, or a level 1-3 looked up in ocs's password file as OCSClient does
            (the agent's class is asked for once, on the first request).
    """

    def __init__(self, app: Any, agent_address: str, op_name: str, privs: Any = None) -> None:
        self.app = app
        self.agent_address = agent_address
        self.op_name = op_name
        self._privs = privs
        self._password: str | None = None if isinstance(privs, int) and privs > 1 else \
            password_for(privs, agent_address.rpartition(".")[2], None)

    @defer.inlineCallbacks
    def _resolve_password(self, session: ApplicationSession):
        agent_class = yield session.call(self.agent_address, "get_agent_class")
        self._password = password_for(self._privs, self.agent_address.rpartition(".")[2],
                                      agent_class if isinstance(agent_class, str) else None)

    @defer.inlineCallbacks
    def request(self, action: str, params: Any = None, timeout: float | None = None):
        """Send ``action`` (start, status, wait, stop, abort) to the op; fires with the reply."""
        session = _session_of(self.app)
        if self._password is None:
            yield self._resolve_password(session)
        extra = {"password": self._password} if self._password else {}
        reply = yield session.call(f"{self.agent_address}.ops", action, self.op_name,
                                   params=params, timeout=timeout, **extra)
        return reply

    def start(self, params: dict | None = None, **kw: Any) -> defer.Deferred:
        """Start the op with ``params`` (a dict, or keyword arguments)."""
        return self.request("start", params=dict(params or {}, **kw))

    def status(self) -> defer.Deferred:
        return self.request("status")

    def wait(self, timeout: float | None = None) -> defer.Deferred:
        """Fires when the op is done, or with a TIMEOUT reply after ``timeout`` seconds."""
        return self.request("wait", timeout=timeout)

    def run(self, params: dict | None = None, timeout: float | None = None, **kw: Any) -> defer.Deferred:
        """Start the op and wait for it (``timeout`` as in :meth:`wait`): one call to an
        ocs-core agent (``start_and_wait``), start then wait for an ocs agent.

        Fires with start's reply if the start was refused, else with wait's.
        """
        return defer.ensureDeferred(self._run(dict(params or {}, **kw), timeout))

    async def _run(self, params: dict, timeout: float | None) -> list:
        session = _session_of(self.app)
        features = await agent_features(session, self.agent_address)
        actions = features.get("ops_actions")
        if isinstance(actions, list) and START_AND_WAIT in actions:
            return await self.request(START_AND_WAIT, params=params, timeout=timeout)
        reply = await self.request("start", params=params)
        if reply[0] != OK:
            return reply
        return await self.wait(timeout)


class TaskClient(OperationClient):
    """An OperationClient for a Task (adds ``abort``)."""

    def abort(self, params: Any = None) -> defer.Deferred:
        return self.request("abort", params=params)


class ProcessClient(OperationClient):
    """An OperationClient for a Process (adds ``stop``)."""

    def stop(self, params: Any = None) -> defer.Deferred:
        return self.request("stop", params=params)


def describe_wamp_error(exc: ApplicationError) -> str:
    """One line for a WAMP error a call raised (with a hint for the common ones)."""
    detail = "; ".join(str(a) for a in exc.args) or "no detail"
    hint = {"wamp.error.no_such_procedure": " (is the agent running? `ocs-core scan`)",
            "wamp.error.not_authorized": " (does the site's address_root match the router's?)",
            }.get(exc.error, "")
    return f"{exc.error}: {detail}{hint}"


def _as_deferred(func: Callable, *args: Any, **kwargs: Any) -> defer.Deferred:
    if inspect.isgeneratorfunction(func):
        return defer.inlineCallbacks(func)(*args, **kwargs)
    try:
        result = func(*args, **kwargs)
    except BaseException:
        return defer.fail()
    if inspect.iscoroutine(result):
        return defer.ensureDeferred(result)
    return defer.maybeDeferred(lambda: result)


class _ScriptSession(ApplicationSession):
    def __init__(self, config: ComponentConfig, on_join: Callable, on_gone: Callable) -> None:
        super().__init__(config)
        self._on_join = on_join
        self._on_gone = on_gone

    def onJoin(self, details):  # noqa: N802
        self._on_join(self)

    def onLeave(self, details):  # noqa: N802
        self.leave_reason = details.reason
        self.disconnect()

    def onDisconnect(self):  # noqa: N802
        self._on_gone(getattr(self, "leave_reason", None))


def run_with_session(hub: Any, func: Callable, *args: Any, **kwargs: Any) -> int:
    """Join ``hub``'s realm over WebSocket, run ``func(session, *args, **kwargs)`` to its end,
    leave, and return an exit status (0 on success, 1 on failure). Runs the reactor."""
    from twisted.internet import reactor

    outcome: dict[str, Any] = {"code": 0, "finished": False}

    def joined(session: ApplicationSession) -> None:
        d = _as_deferred(func, session, *args, **kwargs)

        def failed(failure):
            outcome["code"] = 1
            if failure.check(KeyboardInterrupt):
                return
            if failure.check(ApplicationError):
                print(f"error: {describe_wamp_error(failure.value)}", file=sys.stderr)
                return
            print(f"error: {failure.type.__name__}: {failure.value}", file=sys.stderr)
            if not failure.check(ConnectionError, ValueError, LookupError):
                failure.printTraceback(file=sys.stderr)

        d.addErrback(failed)

        def done(_):
            outcome["finished"] = True
            if session.is_attached():
                return session.leave()
        d.addBoth(done)
        d.addBoth(lambda _: reactor.stop() if reactor.running else None)

    def gone(reason: str | None) -> None:
        if outcome["finished"] or not reactor.running:
            return
        outcome["code"] = 1
        why = f" ({reason})" if reason and reason != "wamp.close.normal" else ""
        print(f"error: lost the router at {hub.wamp_server}{why}", file=sys.stderr)
        reactor.stop()

    factory = WampWebSocketClientFactory(
        lambda: _ScriptSession(ComponentConfig(realm=hub.wamp_realm), joined, gone),
        url=hub.wamp_server)
    endpoint = clientFromString(reactor, f"tcp:host={factory.host}:port={factory.port}:timeout=5")

    def unreachable(failure):
        outcome["code"] = 1
        print(f"error: cannot reach the router at {hub.wamp_server} ({failure.getErrorMessage()}); "
              "is it running? (`ocs-core router status`)", file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: endpoint.connect(factory).addErrback(unreachable))
    reactor.run()
    return outcome["code"]


def run_control_script(func: Callable, parser: argparse.ArgumentParser | None = None,
                       *args: Any, **kwargs: Any) -> None:
    """Connect to the site's router over WebSocket, run ``func(app, parsed_args, *args, **kwargs)``,
    then stop the reactor; exit with status 1 if it failed.

    ``func`` may be an ``inlineCallbacks``-style generator, a coroutine function, or return a
    Deferred. ``parser`` defaults to one with the site options (``--site-file``, ...).
    """
    try:
        pargs = parse_control_args(parser)
        hub = resolve_hub(pargs)
    except ValueError as exc:  # SiteConfigError
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(run_with_session(hub, func, pargs, *args, **kwargs))
