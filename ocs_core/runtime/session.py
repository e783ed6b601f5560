"""OpSession: one run of an operation — its status state machine, messages, data and wire encoding.

Pure logic: no Twisted. A session may be touched from a worker thread (a blocking op updating
``data`` or adding messages) while the reactor encodes it for a reply, so every mutation and the
encoding hold one lock.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

from ocs_core.runtime.codes import OpCode

STATUSES = ("starting", "running", "stopping", "done")
_RANK = {name: rank for rank, name in enumerate(STATUSES)}

#: Most messages a session keeps; the oldest are dropped past this (ocs lets them grow unbounded).
MAX_MESSAGES = 1000


def sanitize(value: Any) -> Any:
    """Return a strictly JSON-serialisable copy of ``value``.

    NaN and +/-inf become ``None`` (ocs refuses inf and breaks ``get_api``); numpy arrays and
    scalars become lists and plain numbers; tuples and sets become lists; dict keys become strings;
    anything else that JSON cannot hold becomes its ``repr``, so one bad value never breaks a reply.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [sanitize(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return sanitize(tolist())
    return repr(value)


class OpSession:
    """The state of one run of a Task or Process, encoded exactly as ocs 0.12 does on the wire.

    Args:
        session_id: agent-wide counter value for this run.
        op_name: the operation's name.
        clock: time source (injectable for tests).
        on_message: called with ``(session, text)`` for every message, e.g. to log it.
    """

    def __init__(self, session_id: int, op_name: str, *, clock: Callable[[], float] = time.time,
                 on_message: Callable[[OpSession, str], None] | None = None) -> None:
        self.session_id = session_id
        self.op_name = op_name
        self._clock = clock
        self._on_message = on_message
        self._lock = threading.RLock()
        self._status = "starting"
        self._data: Any = {}
        self.degraded = False
        self.success: bool | None = None
        self.cred_level = 1
        self.start_time = clock()
        self.end_time: float | None = None
        self.messages: list[list[Any]] = []
        self._append(self.start_time, 'Status is now "starting".')

    # -- status -----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self.set_status(value)

    def set_status(self, status: str, timestamp: float | None = None) -> None:
        """Move the status forward (starting -> running -> stopping -> done); same value is a no-op.

        Raises:
            ValueError: for an unknown status or a backward move.
        """
        if status not in _RANK:
            raise ValueError(f"unknown session status {status!r}; expected one of {STATUSES}")
        with self._lock:
            if status == self._status:
                return
            if _RANK[status] < _RANK[self._status]:
                raise ValueError(f"session status cannot go back from {self._status!r} to {status!r}")
            now = self._clock() if timestamp is None else timestamp
            self._status = status
            if status == "done":
                self.end_time = now
            self._append(now, f'Status is now "{status}".')

    def finish(self, success: bool, message: str | None) -> None:
        """End the run: record the op's closing message, its success, and status ``done``."""
        with self._lock:
            if message is not None:
                self.add_message(str(message))
            self.success = bool(success)
            self.set_status("done")

    @property
    def done(self) -> bool:
        return self._status == "done"

    @property
    def op_code(self) -> OpCode:
        status = self._status
        if status == "starting":
            return OpCode.STARTING
        if status == "running":
            return OpCode.DEGRADED if self.degraded else OpCode.RUNNING
        if status == "stopping":
            return OpCode.STOPPING
        return OpCode.SUCCEEDED if self.success else OpCode.FAILED

    # -- data and messages ------------------------------------------------------------------
    @property
    def data(self) -> Any:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        with self._lock:
            self._data = value

    def add_message(self, text: str, timestamp: float | None = None) -> None:
        """Append a timestamped message (kept to the newest ``MAX_MESSAGES``)."""
        with self._lock:
            self._append(self._clock() if timestamp is None else timestamp, str(text))

    def _append(self, timestamp: float, text: str) -> None:
        self.messages.append([timestamp, text])
        if len(self.messages) > MAX_MESSAGES:
            del self.messages[: len(self.messages) - MAX_MESSAGES]
        if self._on_message is not None:
            self._on_message(self, text)

    # -- encoding ---------------------------------------------------------------------------
    def encoded(self) -> dict[str, Any]:
        """The session as ocs 0.12 puts it on the wire (11 keys, in ocs's order)."""
        with self._lock:
            return {
                "session_id": self.session_id,
                "op_name": self.op_name,
                "op_code": int(self.op_code),
                "cred_level": self.cred_level,
                "status": self._status,
                "degraded": bool(self.degraded),
                "success": self.success,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "data": sanitize(self._data),
                "messages": [list(m) for m in self.messages],
            }


def no_history(op_name: str) -> dict[str, str]:
    """The placeholder ocs sends for an operation that never ran."""
    return {"op_name": op_name, "status": "no_history"}
