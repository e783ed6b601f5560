"""Tasks and Processes: the registry and the start/status/wait/stop/abort rules of ocs 0.12.

``Operations`` answers every control request with the ``[code, message, session]`` triple and the
exact message strings of ocs (quirks included, see the wire reference §3.3), and runs operation
bodies: blocking ones in the reactor's thread pool, non-blocking ones in the reactor as Deferreds
or coroutines. A blocking Task registered with ``inline`` chooses per call: ``inline(params)``
names a lock when this call is measured cheap, and the body then runs in the reactor if that lock
is free (a non-blocking acquire), else in the thread pool as usual. Every call into this module
comes from the reactor thread.

Every path that starts, stops or aborts an op goes through :meth:`Operations.authorize`, the one
privilege check (ocs 0.12 access levels, :mod:`ocs_core.runtime.access`).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocs_core.runtime.access import SUPERUSER_KEY, AccessControl
from ocs_core.runtime.codes import ERROR, OK, START_AND_WAIT, TIMEOUT, OpCode
from ocs_core.runtime.params import ParamError, ParamSpec, declared_params, non_finite, validate_params
from ocs_core.runtime.session import OpSession, no_history
from ocs_core.runtime.text import brief

log = Logger(namespace="ocs_core.runtime.operations")

OpFunc = Callable[[OpSession, Any], Any]
Reply = list  # [code, message, session]


class TryLock(Protocol):
    """What an ``inline`` chooser returns: a lock taken with ``acquire(blocking=False)``."""

    def acquire(self, blocking: bool = ...) -> bool: ...

    def release(self) -> None: ...


InlineChooser = Callable[[Any], "TryLock | None"]


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
    min_privs: int = 1
    inline: InlineChooser | None = None
    session: OpSession | None = None
    waiters: list[defer.Deferred] = field(default_factory=list)

    @property
    def docstring(self) -> str | None:
        return inspect.getdoc(self.start)

    def op_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"blocking": self.blocking}
        if self.kind == "task":
            info["abortable"] = self.stopper is not None
        info.update({"docstring": self.docstring, "op_type": self.kind,
                     "min_privs": self.min_privs})
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
        access: the agent's access policy and rules (default: policy ``none``).
    """

    def __init__(self, reactor: IReactorTime, on_message: Callable[[OpSession, str], None] | None = None,
                 access: AccessControl | None = None):
        self._reactor = reactor
        self.access = access if access is not None else AccessControl(None, "")
        self._on_message = on_message
        self._ops: dict[str, Operation] = {}
        self._next_session_id = 0

    # -- registration -----------------------------------------------------------------------
    def register_task(self, name: str, func: OpFunc, aborter: OpFunc | None = None, *,
                      blocking: bool = True, aborter_blocking: bool | None = None,
                      startup: bool | dict = False, min_privs: int = 1,
                      inline: InlineChooser | None = None) -> Operation:
        """Register a Task: it runs to completion and may be aborted if ``aborter`` is given.

        ``min_privs`` (1..4, 0 counts as 1) is the credential level start and abort need.
        ``inline`` (blocking Tasks only): ``inline(params) -> lock or None``, called in the reactor
        when the body is due; with a lock that ``acquire(blocking=False)`` takes, the body runs in
        the reactor holding it (for calls measured cheap), otherwise in a worker thread."""
        if inline is not None and not blocking:
            raise ValueError(f"task {name!r}: inline applies to blocking tasks only")
        return self._add(Operation(name, "task", func, aborter, blocking,
                                   blocking if aborter_blocking is None else aborter_blocking,
                                   startup, declared_params(func), _min_privs(name, min_privs), inline))

    def register_process(self, name: str, start: OpFunc, stop: OpFunc, *, blocking: bool = True,
                         stopper_blocking: bool | None = None,
                         startup: bool | dict = False, min_privs: int = 1) -> Operation:
        """Register a Process: it runs until ``stop`` asks it to end; start and stop need
        credential level ``min_privs``."""
        return self._add(Operation(name, "process", start, stop, blocking,
                                   blocking if stopper_blocking is None else stopper_blocking,
                                   startup, declared_params(start), _min_privs(name, min_privs)))

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
                 timeout: float | None = None, password: Any = None) -> Reply | defer.Deferred:
        """Answer one control request; ``wait`` may return a Deferred of the reply."""
        if action == "start":
            return self.start(op_name, params, password)
        if action == "status":
            return self.status(op_name)
        if action == "wait":
            return self.wait(op_name, timeout)
        if action in ("stop", "abort"):
            return self.stop(action, op_name, params, password)
        if action == START_AND_WAIT:
            return self.start_and_wait(op_name, params, timeout, password)
        return _reply(ERROR, f'No implementation for "{brief(op_name, quote=False)}"')

    def authorize(self, op: Operation, action: str, password: Any) -> tuple[int, Reply | None]:
        """The privilege check of every start, stop and abort path.

        Returns:
            ``(granted level, None)`` when ``password`` reaches the op's ``min_privs``, else
            ``(granted level, refusal reply)`` with ocs's text (a start's refusal carries the
            lockout or no-policy detail, a stop's or abort's does not, as in ocs).
        """
        level, refusal = self.access.check(op.min_privs, password, with_detail=action == "start")
        if refusal is None:
            return level, None
        log.info('refused underprivileged "{action}" of {op}: level {have} < {need}',
                 action=action, op=op.name, have=level, need=op.min_privs)
        return level, _reply(ERROR, refusal)

    def start(self, op_name: str, params: Any = None, password: Any = None, *,
              _reply_first: bool = True) -> Reply:
        """Start an op (ocs's order: unknown op, in progress, privileges, params)."""
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'No task or process called "{brief(op_name, quote=False)}"')
        if op.session is not None and not op.session.done:
            return _reply(ERROR, f'Operation "{op_name}" already in progress.', op.session)
        level, refusal = self.authorize(op, "start", password)
        if refusal is not None:
            return refusal
        try:
            params = self._check_params(op, params)
        except ParamError as exc:
            return _reply(ERROR, str(exc))
        except Exception as exc:  # a check function that raised something else
            return _reply(ERROR, f"CRASH: during param pre-processing: {brief(str(exc), quote=False)}")
        session = self._launch(op, params, level, defer_start=_reply_first)
        return _reply(OK, f'Started {op.kind} "{op_name}".', session)

    def start_and_wait(self, op_name: str, params: Any = None, timeout: float | None = None,
                       password: Any = None) -> Reply | defer.Deferred:
        """``start`` then ``wait`` in one request: start's reply if it refused, else wait's.

        Every check of :meth:`start` applies (unknown op, already running, privileges, params); a bad
        ``timeout`` is refused before anything starts.
        """
        timeout, refusal = _wait_timeout(timeout)
        if refusal is not None:
            return refusal
        reply = self.start(op_name, params, password, _reply_first=False)  # no start reply to send first
        if reply[0] != OK:
            return reply
        return self.wait(op_name, timeout)

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
        timeout, refusal = _wait_timeout(timeout)
        if refusal is not None:
            return refusal
        if timeout is not None and timeout < 0:
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

    def stop(self, action: str, op_name: str, params: Any = None, password: Any = None) -> Reply:
        """Stop a Process or abort a Task (ocs's order: unknown, wrong kind, privileges, state)."""
        op = self._ops.get(op_name)
        if op is None:
            return _reply(ERROR, f'No operation called "{brief(op_name, quote=False)}".')
        if (action == "stop") != (op.kind == "process"):
            return _reply(ERROR, f'Cannot "{action}" "{op_name}" because it is a "{op.kind}".')
        _, refusal = self.authorize(op, action, password)
        if refusal is not None:
            return refusal
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

    def _launch(self, op: Operation, params: Any, cred_level: int, defer_start: bool = True) -> OpSession:
        session = OpSession(self._next_session_id, op.name, on_message=self._on_message)
        session.cred_level = cred_level
        self._next_session_id += 1
        op.session = session

        def body(session: OpSession, params: Any) -> Any:
            session.set_status("running")
            return op.start(session, params)

        d = self._call(body, op.blocking, session, params, defer_start=defer_start, inline=op.inline)
        d.addCallbacks(self._op_returned, self._op_crashed, callbackArgs=(op, session),
                       errbackArgs=(op, session))
        d.addErrback(lambda f: log.failure("finishing {op} failed", f, op=op.name))
        return session

    def _call(self, func: OpFunc, blocking: bool, session: OpSession, params: Any,
              defer_start: bool = False, inline: InlineChooser | None = None) -> defer.Deferred:
        if blocking and inline is None:
            return self._in_thread(func, session, params)
        if blocking:
            def run() -> defer.Deferred:
                return self._inline_or_thread(func, inline, session, params)
        else:
            def run() -> defer.Deferred:
                return _as_deferred(func, session, params)
        if defer_start:  # let the start reply go out with status "starting", as in ocs
            d = defer.Deferred()
            self._reactor.callLater(0, d.callback, None)
            d.addCallback(lambda _: run())
            return d
        return run()

    def _in_thread(self, func: OpFunc, session: OpSession, params: Any) -> defer.Deferred:
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), func, session, params)

    def _inline_or_thread(self, func: OpFunc, inline: InlineChooser, session: OpSession,
                          params: Any) -> defer.Deferred:
        """Run a blocking body here if ``inline(params)`` names a lock that is free, else in a thread."""
        try:
            lock = inline(params)
            taken = lock is not None and lock.acquire(blocking=False)
        except Exception:  # noqa: BLE001 - a failing chooser only costs the inline path
            log.failure("the inline chooser of {op} failed", op=session.op_name)
            lock, taken = None, False
        if not taken:
            return self._in_thread(func, session, params)
        try:
            return _as_deferred(func, session, params)
        finally:
            lock.release()

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
        """Launch every op registered with ``startup`` (in registration order) at level 4."""
        for op in self._ops.values():
            if op.startup is False or op.startup is None:
                continue
            params = op.startup if isinstance(op.startup, dict) else {}
            reply = self.start(op.name, params, SUPERUSER_KEY)
            if reply[0] != OK:
                log.error("startup op {op} did not start: {msg}", op=op.name, msg=reply[1])

    def stop_all(self, timeout: float = 0.8) -> defer.Deferred:
        """Abort running Tasks and stop running Processes at level 4 (whatever the rules say);
        fires when all are done or at ``timeout``."""
        pending = []
        for op in self._ops.values():
            session = op.session
            if session is None or session.done:
                continue
            if session.status != "stopping" and op.stopper is not None:
                self.stop("stop" if op.kind == "process" else "abort", op.name, {}, SUPERUSER_KEY)
            pending.append(self.wait(op.name, timeout))
        return defer.DeferredList([p if isinstance(p, defer.Deferred) else defer.succeed(p)
                                   for p in pending])


def _min_privs(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise ValueError(f"operation {name!r}: min_privs must be a credential level 0..4, got {value!r}")
    return max(1, value)


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


def _wait_timeout(timeout: Any) -> tuple[float | None, Reply | None]:
    """A wait's timeout as seconds (None: no limit), or the refusal of a bad one."""
    if timeout is None:
        return None, None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError, OverflowError):
        return None, _reply(ERROR, f"wait timeout must be a number of seconds or null, not {brief(timeout)}")
    if not math.isfinite(seconds):  # a NaN deadline would corrupt the reactor's timer heap
        return None, _reply(ERROR, f"wait timeout must be a finite number of seconds or null, not {seconds}")
    return seconds, None
