"""``ocs-core up|down|restart INSTANCE`` for instances that a host manager runs (on any host).

An instance goes to its host's host manager when that host lists one and it answers (this is
how one host controls another's agents); else to this host's supervisor when the instance is on
this host; else the command says where it lives and that nothing there answers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ocs_core.cli.main import CliError
from ocs_core.site.config import HubConfig, SiteConfig
from ocs_core.supervisor.managers import find_instance_host, host_manager_of, manager_view, request_update

__all__ = ["Routes", "route_instances", "control_via_managers"]


@dataclass
class Routes:
    """Instances for the local supervisor, and instances per host manager."""

    local: list[str] = field(default_factory=list)
    managers: dict[str, list[str]] = field(default_factory=dict)


def route_instances(cfg: SiteConfig, local_host: str, hub: HubConfig, instances: list[str]) -> Routes:
    """Decide who acts on each instance.

    Raises:
        CliError: an instance no host lists, or on another host without an answering manager.
    """
    routes = Routes()
    answering: dict[str, bool] = {}
    for iid in instances:
        host = find_instance_host(cfg, iid)
        if host is None:
            known = sorted({i for h in cfg.hosts.values() for i in h.instance_ids})
            raise CliError(f"{cfg.path}: unknown instance-id {iid!r} on every host "
                           f"(known: {', '.join(known) or 'none'})")
        manager = host_manager_of(host)
        if manager is not None and manager != iid:
            if manager not in answering:
                answering[manager] = manager_view(hub, manager).running
            if answering[manager]:
                routes.managers.setdefault(manager, []).append(iid)
                continue
        if host.name == local_host:
            routes.local.append(iid)
        else:
            reason = (f"its host manager {manager!r} does not answer (or its manager Process is "
                      f"stopped)" if manager else "that host has no host manager")
            raise CliError(f"{iid} is on host {host.name!r} and {reason}; run ocs-core there "
                           f"(--site-host {host.name}) or start its host manager")
    return routes


def _state(hub: HubConfig, manager: str, iid: str) -> dict:
    view = manager_view(hub, manager)
    for child in view.child_states:
        if child.get("instance_id") == iid:
            return child
    return {}


def control_via_managers(hub: HubConfig, managers: dict[str, list[str]], action: str,
                         timeout: float) -> int:
    """Send ``update`` requests to each manager and wait for its instances; returns the status."""
    t0 = time.monotonic()
    before = {iid: _state(hub, m, iid).get("pid") for m, ids in managers.items() for iid in ids}
    for manager, ids in managers.items():
        ok, message = request_update(hub, manager, [[iid, action] for iid in ids])
        for iid in ids:
            print(f"{iid}: {action} requested from host manager {manager}", flush=True)
        if not ok:
            raise CliError(message)
    pending = {iid: m for m, ids in managers.items() for iid in ids}
    deadline = t0 + timeout
    while pending:
        for iid, manager in list(pending.items()):
            child = _state(hub, manager, iid)
            state, pid = child.get("next_action"), child.get("pid")
            if action == "down" and state == "down":
                print(f"  {iid}: stopped by {manager} ({time.monotonic() - t0:.1f} s)", flush=True)
                del pending[iid]
            elif action != "down" and state == "up" and (action == "up" or pid != before.get(iid)):
                print(f"  {iid}: callable via {manager}, pid {pid} ({time.monotonic() - t0:.1f} s)",
                      flush=True)
                del pending[iid]
            elif action != "down" and child.get("last_error") and state == "down":
                raise CliError(f"{iid}: {child['last_error']} (see its log on host manager "
                               f"{manager}'s host)")
        if pending and time.monotonic() >= deadline:
            raise CliError(f"not done within {timeout:g} s: {', '.join(pending)}")
        if pending:
            time.sleep(0.2)
    return 0
