"""A rig's last known experiment state, and what it last heard from other rigs (pure).

Events move the rig's own status: EXPINIT -> INITIALIZED, EXPSTART -> RUNNING (and sets the
exp_ref), EXPEND and EXPINTERRUPT -> STOPPED; EXPSTATUS and EXPINFO set the status they carry;
EXPCLEANUP and ALYX leave it. A fresh rig is CONNECTED.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.messages import RigMessage

__all__ = ["RigState", "next_status"]

#: Remote rigs remembered at most (the least recently heard is forgotten first).
MAX_REMOTES = 256

_MOVES = {
    ExpMessage.EXPINIT: ExpStatus.INITIALIZED,
    ExpMessage.EXPSTART: ExpStatus.RUNNING,
    ExpMessage.EXPEND: ExpStatus.STOPPED,
    ExpMessage.EXPINTERRUPT: ExpStatus.STOPPED,
}


def next_status(current: ExpStatus, message: RigMessage) -> ExpStatus:
    """The status a rig is in after ``message``."""
    if message.event in (ExpMessage.EXPSTATUS, ExpMessage.EXPINFO):
        return message.status
    return _MOVES.get(message.event, current)


def _summary(status: ExpStatus, exp_ref: Optional[str], message: Optional[RigMessage], t: Optional[float]) -> dict:
    return {
        "status": status.name,
        "exp_ref": exp_ref,
        "last_event": message.event.name if message else None,
        "last_data": message.data if message else None,
        "last_time": t,
    }


class RigState:
    """The own rig's status and exp_ref, and the last event of each remote rig.

    Args:
        clock: Returns the time (seconds); ``time.time`` by default.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self.status = ExpStatus.CONNECTED
        self.exp_ref: Optional[str] = None
        self.last: Optional[RigMessage] = None
        self.last_time: Optional[float] = None
        self.remotes: dict[str, dict] = {}

    def apply(self, message: RigMessage) -> None:
        """Record an event this rig announced."""
        self.status = next_status(self.status, message)
        if message.event is ExpMessage.EXPSTART:
            self.exp_ref = message.exp_ref
        self.last, self.last_time = message, self._clock()

    def heard(self, message: RigMessage) -> None:
        """Record an event heard from another rig (keyed by ``message.source``)."""
        key = _key(message.source)
        old = self.remotes.pop(key, None)
        status = ExpStatus[old["status"]] if old else ExpStatus.CONNECTED
        exp_ref = message.exp_ref if message.event is ExpMessage.EXPSTART else (old or {}).get("exp_ref")
        self.remotes[key] = _summary(next_status(status, message), exp_ref, message, self._clock())
        while len(self.remotes) > MAX_REMOTES:
            self.remotes.pop(next(iter(self.remotes)))

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: ``{status, exp_ref, last_event, last_data, last_time, remotes}``."""
        out = _summary(self.status, self.exp_ref, self.last, self.last_time)
        out["remotes"] = {k: dict(v) for k, v in self.remotes.items()}
        return out


def _key(source: Any) -> str:
    if isinstance(source, tuple) and len(source) == 2:
        host, port = source
        return f"udp://[{host}]:{port}" if ":" in str(host) else f"udp://{host}:{port}"
    return str(source)
