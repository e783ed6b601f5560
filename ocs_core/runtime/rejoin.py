"""Registering an agent's procedures when the router may still hold its previous session.

After a NAT-style cut (the agent's side of the connection is reset, the router's side stays open
and silent) the agent reconnects at once, but the router keeps the old session, and with it the
agent's registrations, until its auto-ping times out (~15 s with our router config). Registering
then fails with ``wamp.error.procedure_already_exists``. :func:`register_all` tells the cases apart:

* **rejoin** (the agent was joined before): the holder is our own stale session. Retry every
  ``retry_interval`` until the router has dropped it, for as long as it takes, logging while
  it lasts; never give up (running ops and the feed queue are untouched meanwhile);
* **first start**: the holder may be another live agent with the same instance-id (fail fast,
  as before) or a stale session of an earlier run of this one (e.g. a host that lost its
  network). Probe the holder with a short call (``get_api``, ``probe_timeout``): an answer
  means live; no answer means stale, and we retry like a rejoin, probing again every
  ``probe_every`` seconds in case the holder comes back.

Twisted only; the caller owns the session.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ocs_core import _quiet_imports  # noqa: F401  (before autobahn)
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["ALREADY_EXISTS", "LiveHolder", "RejoinPolicy", "register_all"]

log = Logger(namespace="ocs_core.runtime.rejoin")

ALREADY_EXISTS = "wamp.error.procedure_already_exists"


class LiveHolder(Exception):
    """At first start, a live agent answered on a procedure we need: the instance-id is taken.

    Attributes:
        procedure: the procedure it holds. info: what its probe answered (``get_api`` or None).
    """

    def __init__(self, procedure: str, info: Any = None) -> None:
        super().__init__(procedure)
        self.procedure, self.info = procedure, info


@dataclass(frozen=True)
class RejoinPolicy:
    """How :func:`register_all` waits for a stale registration to go away.

    Attributes:
        retry_interval: seconds between registration attempts.
        probe_timeout: seconds a live holder has to answer the probe.
        probe_every: seconds between probes at first start (a stale holder may come back).
        log_every: seconds between log lines while a registration is still held.
        router_timeout: about how long the router keeps a silent session (its auto-ping interval
            plus timeout); past it, a rejoin probes the holder once and says what it found.
    """

    retry_interval: float = 0.5
    probe_timeout: float = 2.0
    probe_every: float = 5.0
    log_every: float = 5.0
    router_timeout: float = 15.0


def _sleep(reactor: Any, seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def _probe(session: Any, reactor: Any, procedure: str, address: str, timeout: float) -> tuple[bool, Any]:
    """Whether a live callee answers on ``procedure`` within ``timeout``; with what it said."""
    args: tuple = ("get_api",) if procedure == address else ("status", "")
    # WAMP call timeouts are whole seconds (crossbar cancels the invocation); ours is the backstop
    d = session.call(procedure, *args, options=CallOptions(timeout=max(1, round(timeout))))
    d.addTimeout(timeout + 0.5, reactor)
    try:
        answer = await d
    except ApplicationError as exc:
        if exc.error in ("wamp.error.canceled", "wamp.error.timeout", "wamp.error.no_such_procedure",
                         "wamp.error.no_such_registration"):
            return False, None
        return True, None  # it answered, with an error of its own
    except Exception:  # noqa: BLE001 - timed out, or the session went away
        return False, None
    return True, answer


async def register_all(session: Any, reactor: Any, address: str,
                       procedures: Sequence[tuple[str, Callable]], *, first: bool,
                       policy: RejoinPolicy = RejoinPolicy(),
                       still_wanted: Callable[[], bool] = lambda: True) -> bool:
    """Register every ``(uri, handler)`` on ``session``, waiting out a stale holder.

    Returns:
        True once all are registered; False when the session went away (or ``still_wanted``
        turned false) first: the caller reconnects and calls again.

    Raises:
        LiveHolder: at first start, a live agent holds one of them.
        ApplicationError: the router refused for another reason (e.g. not authorized).
    """
    pending = list(procedures)
    started = reactor.seconds()
    next_probe = started if first else started + policy.router_timeout
    next_log = started
    attempts = 0
    while pending:
        if not still_wanted() or not session.is_attached():
            return False
        held = []
        for uri, handler in pending:
            try:
                await session.register(handler, uri)
            except ApplicationError as exc:
                if exc.error != ALREADY_EXISTS:
                    raise
                held.append((uri, handler))
            except Exception:  # noqa: BLE001 - the transport went away mid-call
                return False
        pending = held
        if not pending:
            break
        attempts += 1
        now = reactor.seconds()
        uri = pending[0][0]
        if now >= next_probe:
            next_probe = now + (policy.probe_every if first else 1e18)
            live, info = await _probe(session, reactor, uri, address, policy.probe_timeout)
            if live and first:
                raise LiveHolder(uri, info)
            if not first:
                who = _holder(info) if live else "no answer: the router still holds our old session"
                log.warn("{uri} is still registered after {t:.0f} s ({who}); still retrying",
                         uri=uri, t=now - started, who=who)
            elif attempts == 1:
                log.warn("{uri} is registered, but its holder does not answer (a stale session of an "
                         "earlier run?); retrying until the router drops it", uri=uri)
            now = reactor.seconds()
        if now >= next_log:
            next_log = now + policy.log_every
            log.warn("registering {uri}: the router still holds it (attempt {n}, {t:.1f} s); retrying "
                     "every {i:g} s", uri=uri, n=attempts, t=now - started, i=policy.retry_interval)
        await _sleep(reactor, policy.retry_interval)
    if attempts:
        log.info("registered {addr} after {n} attempt(s) in {t:.1f} s", addr=address, n=attempts + 1,
                 t=reactor.seconds() - started)
    return True


def _holder(info: Any) -> str:
    if isinstance(info, dict):
        return (f"a live agent answers: pid {info.get('instance_pid')} on "
                f"{info.get('instance_hostname')}")
    return "a live agent answers"
