"""The host manager's database of managed instances, with ocs 0.12 HostManager's vocabulary.

Pure: no processes, no Twisted; the caller passes the time and carries out the actions
:meth:`Database.step` returns. Each instance's life is a :class:`ocs_core.supervisor.child.Child`
(restart with backoff, ``failed`` after a configuration error) and is shown the way ocs's
HostManager shows it in its ``manager`` session: ``child_states`` entries with ``next_action``,
``target_state``, ``stability``, ``agent_class``, ``instance_id``, ``operable`` and
``restart_required`` (plus ``pid`` and ``restarts``, which ocs's clients ignore).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.site.config import HostConfig
from ocs_core.supervisor.child import Child, ChildState
from ocs_core.supervisor.plan import HOST_MANAGER_CLASSES

__all__ = ["HOST_MANAGER_CLASSES", "Managed", "Database", "stability", "check_requests", "TARGETS"]

#: Target states of ``update`` requests: ocs's two, and ours, ``restart`` (then ``up``).
TARGETS = ("up", "down", "restart")
_STABILITY_WINDOW = 120.0

_NEXT_ACTION = {ChildState.STOPPED: "down", ChildState.BACKOFF: "start_at",
                ChildState.STARTING: "wait_start", ChildState.RUNNING: "up",
                ChildState.STOPPING: "wait_dead", ChildState.FAILED: "down"}


def stability(fail_times: list[float], now: float) -> float:
    """ocs's stability factor: 1 with no recent failures; one failure 10 s ago gives 0.5."""
    recent = [t for t in fail_times if t >= now - _STABILITY_WINDOW]
    return max(0.0, 1.0 - sum(5.0 / max(now - t, 1e-3) for t in recent))


def check_requests(requests: Any) -> str | None:
    """Why an ``update``/``manager`` ``requests`` parameter is malformed, or None."""
    if not isinstance(requests, (list, tuple)):
        return f"requests: expected a list of [instance-id, state] pairs, got {type(requests).__name__}"
    for i, item in enumerate(requests):
        if not (isinstance(item, (list, tuple)) and len(item) == 2
                and all(isinstance(x, str) for x in item)):
            return f"requests[{i}]: expected [instance-id or 'all', state], got {item!r}"
    return None


@dataclass
class Managed:
    """One managed instance."""

    instance_id: str
    agent_class: str
    management: str  # host | docker | retired
    target_state: str
    child: Child
    operable: bool = True
    fail_times: list[float] = field(default_factory=list)
    restart_pending: bool = False
    arguments: list[str] = field(default_factory=list)
    #: answers on the router but was not started by this manager (one before it left it running)
    unmanaged: bool = False
    #: whether the manager has looked for such a running instance before its first start
    looked: bool = False

    def next_action(self) -> str:
        """ocs's name for where the instance is (``up``, ``down``, ``wait_start``...)."""
        if not self.operable:
            return "?"
        if self.unmanaged:
            return "up"
        return _NEXT_ACTION[self.child.state]

    def child_state(self, now: float) -> dict[str, Any]:
        """The ``child_states`` entry of ocs's HostManager (plus ``pid``, ``restarts``)."""
        return {"next_action": self.next_action(), "target_state": self.target_state,
                "stability": round(stability(self.fail_times, now), 3),
                "agent_class": self.agent_class, "instance_id": self.instance_id,
                "operable": self.operable, "restart_required": False,
                "pid": self.child.pid, "restarts": self.child.restarts,
                "last_error": self.child.last_error, "unmanaged": self.unmanaged}


class Database:
    """Every managed instance of one host, keyed by instance-id."""

    def __init__(self, policy: BackoffPolicy | None = None):
        self.policy = policy or BackoffPolicy()
        self.instances: dict[str, Managed] = {}

    def reload(self, host: HostConfig) -> list[str]:
        """Bring the database in line with the host's entry; returns session messages.

        New instances get the target of their ``manage`` (``host/up`` -> up); known ones keep
        theirs; instances gone from the file (or now ``ignore``) are retired: brought down, then
        dropped. Docker-managed instances are listed but not operable (``[d?]``).
        """
        messages = []
        wanted = {}
        for inst in host.agent_instances:
            if inst.agent_class in HOST_MANAGER_CLASSES or inst.manage == "ignore":
                continue
            wanted[inst.instance_id] = inst
        for iid, minst in self.instances.items():
            if iid not in wanted and minst.management != "retired":
                messages.append(f"Retiring {minst.agent_class}:{iid}, which has disappeared from "
                                f"the site config or has manage: ignore.")
                minst.management, minst.target_state = "retired", "down"
        for iid, inst in wanted.items():
            mgmt, start = inst.manage.split("/")
            known = self.instances.get(iid)
            if known is not None and known.management == mgmt and known.agent_class.split("[")[0] == inst.agent_class:
                continue
            if known is not None:
                messages.append(f"Managed agent {iid!r} changed agent_class or management and is "
                                f"being reset.")
            docker = mgmt == "docker"
            self.instances[iid] = Managed(
                instance_id=iid, agent_class=inst.agent_class + ("[d?]" if docker else ""),
                management=mgmt, target_state=start, child=Child(iid, self.policy),
                operable=not docker, arguments=list(inst.arguments))
            if docker:
                messages.append(f"{iid}: docker-managed (manage: {inst.manage}): listed, not run "
                                f"(ocs-core's HostManager runs host agents only)")
        return messages

    def apply(self, requests: Iterable[tuple[str, str]]) -> list[str]:
        """Set target states, in order (``all`` matches every live instance); returns messages."""
        messages = []
        addressable = {k: m for k, m in self.instances.items() if m.management != "retired"}
        for key, state in requests:
            if state not in TARGETS:
                messages.append(f'Ignoring request for "{key}" -> invalid state "{state}".')
                continue
            targets = list(addressable.values()) if key == "all" else \
                [addressable[key]] if key in addressable else []
            if not targets:
                messages.append(f"Ignoring invalid target, {key}")
            for minst in targets:
                if state == "restart" or (state == "up" and minst.child.state is ChildState.FAILED):
                    minst.target_state, minst.restart_pending = "up", True  # failed: try again
                else:
                    minst.target_state = state
        return messages

    def all_down(self) -> None:
        """Target every instance down (the ``manager`` Process is stopping)."""
        for minst in self.instances.values():
            minst.target_state = "down"
            minst.restart_pending = False

    def step(self, now: float) -> list[tuple[str, str]]:
        """What to do now: ``("spawn", iid)`` and ``("terminate", iid)`` actions."""
        actions = []
        for iid, minst in list(self.instances.items()):
            child = minst.child
            if not minst.operable:
                continue
            if minst.restart_pending and child.state in (ChildState.STARTING, ChildState.RUNNING):
                if child.request_stop(now):
                    actions.append(("terminate", iid))
                continue
            if minst.target_state == "up":
                if child.state in (ChildState.STOPPED, ChildState.FAILED) and \
                        (minst.restart_pending or child.state is ChildState.STOPPED):
                    minst.restart_pending = False
                    child.want(now)
                if child.due(now):
                    actions.append(("spawn", iid))
            elif child.alive and child.state is not ChildState.STOPPING:
                if child.request_stop(now):
                    actions.append(("terminate", iid))
            elif child.state is ChildState.BACKOFF:
                child.request_stop(now)
            if minst.management == "retired" and not child.alive:
                del self.instances[iid]
        return actions

    def exited(self, iid: str, now: float, code: int | None) -> list[str]:
        """A child process ended; returns its event lines."""
        minst = self.instances.get(iid)
        if minst is None:
            return []
        asked = minst.child.state is ChildState.STOPPING
        events = minst.child.exited(now, code)
        if not asked:
            minst.fail_times = [t for t in minst.fail_times if t >= now - _STABILITY_WINDOW] + [now]
        return [str(e) for e in events]

    def any_alive(self) -> bool:
        """Whether any managed process is still believed to run."""
        return any(m.child.alive for m in self.instances.values())

    def child_states(self, now: float) -> list[dict[str, Any]]:
        """The ``child_states`` list of the ``manager`` session."""
        return [m.child_state(now) for m in self.instances.values()]
