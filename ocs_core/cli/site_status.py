"""The site form of ``ocs-core status``: the router, the supervisor and every instance of a host.

Registered by :mod:`clients.cli_commands` (which gathers heartbeats) as ``ocs-core status``
without an INSTANCE. Every host of the site with a host manager gets a table of its own, from
that manager's ``manager`` session: so one ``status`` shows every host.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any, Callable

from ocs_core.site.args import site_file_path, site_host_default
from ocs_core.site.config import HostConfig, InstanceConfig, load_site_config
from ocs_core.supervisor.managers import host_manager_of, manager_view
from ocs_core.supervisor.plan import (SitePlan, instance_ready, is_wamp_agent, plan_site, read_json,
                                      router_answers, supervisor_info)

__all__ = ["site_status"]


def _plan(args: argparse.Namespace) -> SitePlan:
    args.site_host = site_host_default(args.site_host)
    return plan_site(site_file_path(args.site_file, getattr(args, "site", None)), args.site_host,
                     args.run_dir)


Heartbeats = Callable[[Any, float], "tuple[int, dict[str, tuple[float, dict]]]"]


def site_status(args: argparse.Namespace, gather: Heartbeats, live_window: float = 5.0) -> int:
    """Print the router, the supervisor and every instance of this host; 0 when all is up.

    Args:
        args: ``site_file``, ``site_host``, ``run_dir``, ``listen_time``.
        gather: ``gather(hub, seconds) -> (status, {address: (time, op codes)})`` collecting
            heartbeats (clients.cli_commands.gather_heartbeats).
        live_window: seconds within which a heartbeat means alive.
    """
    plan = _plan(args)
    host = load_site_config(plan.site_file).host(args.site_host)
    state = read_json(plan.state_path) or {}
    sup = supervisor_info(plan)
    router = plan.router()
    up = router_answers(plan.hub)
    rpid = router.pid
    print(f"router      {'up' if up else 'down':5} " + (f"pid {rpid}, " if rpid else "")
          + f"{plan.hub.wamp_http}" + ("" if up or not rpid else " (process runs but does not answer)"))
    if sup is not None:
        since = time.strftime("%H:%M:%S", time.localtime(sup.get("started", 0)))
        logs = state.get("log_dir", plan.log_dir)
        print(f"supervisor  up    pid {sup['pid']} since {since}, logs in {logs}")
    else:
        print(f"supervisor  down  (run dir {plan.run_dir})")
    beats: dict[str, tuple[float, dict]] = {}
    if up:
        code, beats = gather(plan.hub, getattr(args, "listen_time", 1.5))
        if code:
            return code
    now = time.time()
    agents = state.get("agents", {}) if sup is not None else {}
    rows, ok = [], up and (sup is not None or not agents)
    cfg = load_site_config(plan.site_file)
    managers = {h.name: host_manager_of(h) for h in cfg.hosts.values() if host_manager_of(h)}
    mine = managers.get(host.name)
    for inst in host.agent_instances:
        if mine is not None and inst.instance_id != mine and inst.instance_id not in agents:
            continue  # in its host manager's table below
        alive = _alive(plan, inst, beats, now, live_window, up)
        info = agents.get(inst.instance_id) or {}
        if inst.instance_id in agents and not alive:
            ok = False
        rows.append((inst.instance_id, inst.agent_class, "yes" if alive else "no",
                     info.get("state", "-"), info.get("pid") or "-",
                     info.get("restarts", "-") if info else "-"))
    _table(["instance", "class", "alive", "supervised", "pid", "restarts"], rows)
    for name, manager in managers.items():
        ok &= _manager_section(cfg.hosts[name], manager, plan, beats, now, live_window, up)
    return 0 if ok else 1


def _alive(plan: SitePlan, inst: InstanceConfig, beats: dict, now: float, live_window: float,
           router_up: bool) -> bool:
    seen = beats.get(plan.address(inst.instance_id))
    if is_wamp_agent(inst.agent_class):
        return seen is not None and now - seen[0] <= live_window
    # a plain server (no heartbeat): ask its own readiness probe
    return router_up and instance_ready(replace(plan, arguments={inst.instance_id: list(inst.arguments)},
                                                classes={inst.instance_id: inst.agent_class}),
                                        inst.instance_id)


def _manager_section(host: HostConfig, manager: str, plan: SitePlan, beats: dict, now: float,
                     live_window: float, router_up: bool) -> bool:
    """A host's instances as its host manager reports them; False when one meant up is not."""
    view = manager_view(plan.hub, manager) if router_up else None
    if view is None or not view.answers:
        said = "not answering: its agents run unmanaged"
    else:
        said = "manager Process running" if view.running else "up, manager Process stopped"
    print(f"\nhost {host.name}: host manager {manager}, {said}")
    children = {c.get("instance_id"): c for c in (view.child_states if view else [])}
    rows, ok = [], view is not None and view.running
    for inst in host.agent_instances:
        if inst.instance_id == manager:
            continue
        alive = _alive(plan, inst, beats, now, live_window, router_up)
        child = children.get(inst.instance_id)
        if child is None:
            state = "unmanaged" if alive else "-"
            target = pid = restarts = "-"
        else:
            state = "unmanaged" if child.get("unmanaged") else str(child.get("next_action"))
            target, pid, restarts = child.get("target_state"), child.get("pid") or "-", child.get("restarts", "-")
            if target == "up" and not alive and is_wamp_agent(inst.agent_class):
                ok = False
        rows.append((inst.instance_id, inst.agent_class, "yes" if alive else "no", target, state, pid, restarts))
    _table(["instance", "class", "alive", "target", "state", "pid", "restarts"], rows)
    return ok


def _table(header: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*[str(x) for x in row]))
