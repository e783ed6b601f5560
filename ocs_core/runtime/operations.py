"""Tasks and Processes: the registry and the start/status/wait/stop/abort rules of ocs 0.12.

``Operations`` answers every control request with the ``[code, message, session]`` triple and the
exact message strings of ocs (quirks included, see the wire reference §3.3), and runs operation
bodies: blocking ones in the reactor's thread pool, non-blocking ones in the reactor as Deferreds
or coroutines. Every call into this module comes from the reactor thread.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocs_core.runtime.codes import ERROR, OK, TIMEOUT, OpCode
from ocs_core.runtime.params import ParamError, ParamSpec, declared_params, non_finite, validate_params
from ocs_core.runtime.session import OpSession, no_history
from ocs_core.runtime.text import brief

log = Logger(namespace="ocs_core.runtime.operations")

OpFunc = Callable[[OpSession, Any], Any]
Reply = list  # [code, message, session]


@dataclass
class Operation:
    """A registered Task or Process."""

    name: str
    kind: str  # "task" or "process"
    start: OpFunc
    stopper: OpFunc | None
    blocking: bool
    stopper_blocking: bool
    startup: bool | dict = False
    params: list[ParamSpec] | None = None
    session: OpSession | None = None
    waiters: list[defer.Deferred] = field(default_factory=list)

    @property
    def docstring(self) -> str | None:
        return inspect.getdoc(self.start)

    def op_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"blocking": self.blocking}
        if self.kind == "task":
            info["abortable"] = self.stopper is not None
        info.update({"docstring": self.docstring, "op_type": self.kind, "min_privs": 1})
        return info

    def encoded_session(self) -> dict[str, Any]:
        return self.session.encoded() if self.session is not None else no_history(self.name)

    @property
    def op_code(self) -> int:
        return int(self.session.op_code) if self.session is not None else int(OpCode.NONE)


def _reply(code: int, message: str, session: OpSession | None = None) -> Reply:
    return [int(code), message, session.encoded() if session is not None else {}]


class Operations:
    """The agent's Tasks and Processes and the rules for controlling them.

    Args:
        reactor: provides time and ``callLater``; threads come from its thread pool.
        on_message: called with ``(session, text)`` for each session message (for logging).
    """

    def __init__(self, reactor: IReactorTime, on_message: Callable[[OpSession, str], None] | None = None):
        self._reactor = reactor
        self._on_message = on_message
        self._ops: dict[str, Operation] = {}
        self._next_session_id = 0

    # -- registration -----------------------------------------------------------------------
    def register_task(self, name: str, func: OpFunc, aborter: OpFunc | None = None, *,
                      blocking: bool = True, aborter_blocking: bool | None = None,
                      startup: bool | dict = False) -> Operation:
        """Register a Task: it runs to completion and may be aborted if ``aborter`` is given."""
        return self._add(Operation(name, "task", func, aborter, blocking,
                                   blocking if aborter_blocking is None else aborter_blocking,
                                   startup, declared_params(func)))

    def register_process(self, name: str, start: OpFunc, stop: OpFunc, *, blocking: bool = True,
                         stopper_blocking: bool | None = None,
                         startup: bool | dict = False) -> Operation:
        """Register a Process: it runs until ``stop`` asks it to end."""
        return self._add(Operation(name, "process", start, stop, blocking,
                                   blocking if stopper_blocking is None else stopper_blocking,
                                   startup, declared_params(start)))

    def _add(self, op: Operation) -> Operation:
        if not op.name or "." in op.name:
            raise ValueError(f"operation name {op.name!r} must be non-empty and contain no '.'")
        if op.name in self._ops:
            raise ValueError(f"operation {op.name!r} is already registered")
        self._ops[op.name] = op
        return op

    def __iter__(self):
        return iter(self._ops.values())

    def __getitem__(self, name: str) -> Operation:
        return self._ops[name]

    def get(self, name: str) -> Operation | None:
        return self._ops.get(name)

    def tasks(self) -> list[Operation]:
        return sorted((o for o in self._ops.values() if o.kind == "task"), key=lambda o: o.name)

    def processes(self) -> list[Operation]:
        return sorted((o for o in self._ops.values() if o.kind == "process"), key=lambda o: o.name)

    def op_codes(self) -> dict[str, int]:
        """Every op name mapped to its op code, in registration order (the heartbeat payload)."""
        return {op.name: op.op_code for op in self._ops.values()}

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, action: str, op_name: str, params: Any = None,
                 timeout: float | None = None) -> Reply | defer.Deferred:
        """Answer one control request; ``wait`` may return a Deferred of the reply."""
        if action == "start":
            return self.start(op_name, params)
        if action == "status":
            return self.status(op_name)
        if action == "wait":
            return self.wait(op_name, timeout)
        if action in ("stop", "abort"):
            return self.stop(action, op_name, params)
        return _reply(ERROR, f'No implementation for "{brief(op_name, quote=False)}"')

    def start(self, op_name: str, params: Any = None) -> Reply:
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'No task or process called "{brief(op_name, quote=False)}"')
        if op.session is not None and not op.session.done:
            return _reply(ERROR, f'Operation "{op_name}" already in progress.', op.session)
        try:
            params = self._check_params(op, params)
        except ParamError as exc:
            return _reply(ERROR, str(exc))
        except Exception as exc:  # a check function that raised something else
            return _reply(ERROR, f"CRASH: during param pre-processing: {brief(str(exc), quote=False)}")
        session = self._launch(op, params)
        return _reply(OK, f'Started {op.kind} "{op_name}".', session)

    def status(self, op_name: str) -> Reply:
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'No task or process called "{brief(op_name, quote=False)}"')
        if op.session is None:
            return _reply(OK, "No session active.")
        return _reply(OK, "Session active.", op.session)

    def wait(self, op_name: str, timeout: float | None = None) -> Reply | defer.Deferred:
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'Unknown operation "{brief(op_name, quote=False)}".')
        if op.session is None:
            return _reply(OK, "Idle.")
        if op.session.done:
            return self._wait_reply(op)
        if timeout is not None:
            try:
                timeout = float(timeout)
            except (TypeError, ValueError, OverflowError):
                return _reply(ERROR, f"wait timeout must be a number of seconds or null, not {brief(timeout)}")
            if not math.isfinite(timeout):  # a NaN deadline would corrupt the reactor's timer heap
                return _reply(ERROR, f"wait timeout must be a finite number of seconds or null, not {timeout}")
            if timeout < 0:
                return self._wait_reply(op)
        waiter: defer.Deferred = defer.Deferred()
        op.waiters.append(waiter)
        session = op.session
        if timeout is not None:
            timer = self._reactor.callLater(timeout, self._wait_timed_out, op, waiter)
            waiter.addBoth(_cancel_timer, timer)
        waiter.addCallback(lambda _: self._wait_reply(op, session))
        return waiter

    def _wait_timed_out(self, op: Operation, waiter: defer.Deferred) -> None:
        if waiter in op.waiters:
            op.waiters.remove(waiter)
            waiter.callback(None)

    def _wait_reply(self, op: Operation, session: OpSession | None = None) -> Reply:
        session = session or op.session
        assert session is not None
        if not session.done:
            return _reply(TIMEOUT, f'Operation "{op.name}" still running; wait timed out.', session)
        outcome = "SUCCEEDED" if session.success else "FAILED"
        return _reply(OK, f'Operation "{op.name}" is currently not running ({outcome}).', session)

    def stop(self, action: str, op_name: str, params: Any = None) -> Reply:
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'No operation called "{brief(op_name, quote=False)}".')
        if (action == "stop") != (op.kind == "process"):
            return _reply(ERROR, f'Cannot "{action}" "{op_name}" because it is a "{op.kind}".')
        session = op.session
        if session is None:
            return _reply(ERROR, "No session active.")
        if session.status in ("stopping", "done"):
            return _reply(ERROR, f"The operation is already {session.status}")
        if op.stopper is None:
            return _reply(ERROR, f'Task "{op_name}" cannot be aborted: it was registered without an aborter.')
        self._call(op.stopper, op.stopper_blocking, session, params).addErrback(
            self._log_stopper_failure, op)
        verb = "stop on process" if action == "stop" else "abort on task"
        return _reply(OK, f'Requested {verb} {op_name}".', session)

    def _log_stopper_failure(self, failure: Failure, op: Operation) -> None:
        log.failure("{op} stopper failed", failure, op=op.name)

    # -- running ----------------------------------------------------------------------------
    def _check_params(self, op: Operation, params: Any) -> Any:
        where = non_finite(params)
        if where is not None:
            raise ParamError(f"{where} is not a finite number: NaN and infinities are not JSON "
                             "and are refused")
        if op.params is not None:
            return validate_params(op.params, params)
        if params is None or params == []:
            return {}
        return params

    def _launch(self, op: Operation, params: Any) -> OpSession:
        session = OpSession(self._next_session_id, op.name, on_message=self._on_message)
        self._next_session_id += 1
        op.session = session

        def body(session: OpSession, params: Any) -> Any:
            session.set_status("running")
            return op.start(session, params)

        d = self._call(body, op.blocking, session, params, defer_start=True)
        d.addCallbacks(self._op_returned, self._op_crashed, callbackArgs=(op, session),
                       errbackArgs=(op, session))
        d.addErrback(lambda f: log.failure("finishing {op} failed", f, op=op.name))
        return session

    def _call(self, func: OpFunc, blocking: bool, session: OpSession, params: Any,
              defer_start: bool = False) -> defer.Deferred:
        if blocking:
            return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                             func, session, params)
        if defer_start:  # let the start reply go out with status "starting", as in ocs
            d = defer.Deferred()
            self._reactor.callLater(0, d.callback, None)
            d.addCallback(lambda _: _as_deferred(func, session, params))
            return d
        return _as_deferred(func, session, params)

    def _op_returned(self, result: Any, op: Operation, session: OpSession) -> None:
        try:
            ok, message = result
        except (TypeError, ValueError):
            session.finish(False, f"CRASH: the op returned {result!r}, not an (ok, message) pair")
        else:
            session.finish(bool(ok), message)
        self._fire_waiters(op, session)

    def _op_crashed(self, failure: Failure, op: Operation, session: OpSession) -> None:
        if failure.check(ParamError):
            session.finish(False, f"ERROR: {failure.value}")
        else:
            log.failure("{op}[session={sid}] crashed", failure, op=op.name, sid=session.session_id)
            session.finish(False, f"CRASH: {failure.type.__name__}: {failure.value}")
        self._fire_waiters(op, session)

    def _fire_waiters(self, op: Operation, session: OpSession) -> None:
        waiters, op.waiters = op.waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def run_startup_ops(self) -> None:
        """Launch every op registered with ``startup`` (in registration order)."""
        for op in self._ops.values():
            if op.startup is False or op.startup is None:
                continue
            params = op.startup if isinstance(op.startup, dict) else {}
            reply = self.start(op.name, params)
            if reply[0] != OK:
                log.error("startup op {op} did not start: {msg}", op=op.name, msg=reply[1])

    def stop_all(self, timeout: float = 0.8) -> defer.Deferred:
        """Abort running Tasks and stop running Processes; fires when all are done or at ``timeout``."""
        pending = []
        for op in self._ops.values():
            session = op.session
            if session is None or session.done:
                continue
            if session.status != "stopping" and op.stopper is not None:
                self.stop("stop" if op.kind == "process" else "abort", op.name, {})
            pending.append(self.wait(op.name, timeout))
        return defer.DeferredList([p if isinstance(p, defer.Deferred) else defer.succeed(p)
                                   for p in pending])


def _as_deferred(func: OpFunc, session: OpSession, params: Any) -> defer.Deferred:
    try:
        result = func(session, params)
    except BaseException:
        return defer.fail()
    if inspect.iscoroutine(result):
        return defer.ensureDeferred(result)
    return defer.succeed(result) if not isinstance(result, defer.Deferred) else result


def _cancel_timer(result: Any, timer: Any) -> Any:
    if timer.active():
        timer.cancel()
    return result

