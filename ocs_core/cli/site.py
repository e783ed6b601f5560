"""``ocs-core up`` / ``down`` / ``restart``: the site of this host, or some of its instances.

``up`` checks every instance first (:mod:`ocs_core.supervisor.precheck`) and refuses with all the
problems listed; then it starts a supervisor (:mod:`ocs_core.supervisor.launcher`) that runs the
router and this host's agents, in the background by default (it prints one line per agent as it
becomes callable and returns once all are), or in the foreground with ``--foreground``. On a
running site, ``up INSTANCE``, ``down INSTANCE`` and ``restart INSTANCE`` ask its supervisor
(:mod:`ocs_core.supervisor.control`). ``down`` without instances stops everything and makes sure
nothing is left. The site form of ``ocs-core status`` is :mod:`ocs_core.cli.site_status`.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from ocs_core.cli.main import CliError
from ocs_core.cli.site_managed import Routes, control_via_managers, route_instances
from ocs_core.cli.site_progress import Outcome, wait_for_site
from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.site.args import site_file_path, site_host_default
from ocs_core.site.config import load_site_config
from ocs_core.supervisor.control import ControlError, send_request
from ocs_core.supervisor.launcher import Supervisor
from ocs_core.supervisor.managers import call_bridge, manager_view
from ocs_core.supervisor.plan import (DEFAULT_RUN_DIR, HOST_MANAGER_CLASSES, SUPERVISOR_LOG, SitePlan,
                                      child_env, plan_site, read_json, supervisor_info)
from ocs_core.supervisor.precheck import check_plan
from ocs_core.supervisor.process_group import group_alive, same_process, signal_group

__all__ = ["register", "run_up", "run_down", "run_restart", "add_run_dir"]


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--run-dir`` option (supervisor pid and state files, router node directory)."""
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, metavar="DIR",
                        help=f"pid file, state file and router node dir (default: ./{DEFAULT_RUN_DIR})")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``up``, ``down`` and ``restart``."""
    up = subparsers.add_parser(
        "up", parents=[common], help="start the router and this host's agents, supervised",
        description="Check every instance, then start the router and every agent instance of this "
                    "host (or the named ones), restarting agents that die. Returns once all answer, "
                    "unless --foreground. On a running site, starts the named instances.")
    up.add_argument("instances", nargs="*", metavar="INSTANCE",
                    help="instance-ids to run (default: every 'manage: host/up' instance of the host)")
    add_run_dir(up)
    up.add_argument("--foreground", action="store_true", help="supervise in this process until Ctrl-C")
    up.add_argument("--no-router", action="store_true", help="do not run a router (it runs elsewhere)")
    up.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)  # the supervisor's own
    up.add_argument("--timeout", type=float, default=60.0, metavar="S",
                    help="seconds to wait for the router and agents to answer (default: 60)")
    up.add_argument("--stop-timeout", type=float, default=10.0, metavar="S",
                    help="seconds between SIGTERM and SIGKILL when stopping an agent (default: 10)")
    up.add_argument("--backoff", type=float, nargs=3, default=(1.0, 30.0, 60.0),
                    metavar=("FIRST", "MAX", "RESET"),
                    help="restart delay: first, maximum (it doubles), and the uptime that resets it "
                         "(default: 1 30 60)")
    up.set_defaults(func=run_up, launcher=True)
    down = subparsers.add_parser("down", parents=[common],
                                 help="stop what `ocs-core up` started (or the named instances)")
    down.add_argument("instances", nargs="*", metavar="INSTANCE",
                      help="instance-ids to stop (default: the whole site, router included)")
    add_run_dir(down)
    down.add_argument("--timeout", type=float, default=30.0, metavar="S",
                      help="seconds to wait for a clean stop before SIGKILL (default: 30)")
    down.set_defaults(func=run_down, launcher=True)
    restart = subparsers.add_parser("restart", parents=[common],
                                    help="restart instances of a running site")
    restart.add_argument("instances", nargs="+", metavar="INSTANCE")
    add_run_dir(restart)
    restart.add_argument("--timeout", type=float, default=60.0, metavar="S",
                         help="seconds to wait for the instances to answer again (default: 60)")
    restart.set_defaults(func=run_restart, launcher=True)


def _plan(args: argparse.Namespace, instances: list[str] | None = None) -> SitePlan:
    args.site_host = site_host_default(args.site_host)
    return plan_site(site_file_path(args.site_file, getattr(args, "site", None)), args.site_host,
                     args.run_dir, instances, with_router=not getattr(args, "no_router", False))


def _policy(args: argparse.Namespace) -> BackoffPolicy:
    first, maximum, reset = args.backoff
    try:
        return BackoffPolicy(initial=first, maximum=maximum, reset_after=reset)
    except ValueError as exc:
        raise CliError(f"--backoff: {exc}") from None


def _check(plan: SitePlan, instances: list[str] | None = None) -> None:
    """Print what is skipped or unused, then refuse with every problem of the instances."""
    if plan.skipped:
        print(f"skipped: {', '.join(f'{k} ({v})' for k, v in plan.skipped.items())}: docker-managed "
              f"instances are started by docker compose (ocs's HostManager), not by ocs-core up",
              flush=True)
    if plan.notes:
        print(f"note: host {plan.site_host!r}: {'; '.join(plan.notes)}: read, not used", flush=True)
    result = check_plan(plan, instances if instances is not None else plan.instances + list(plan.managed))
    for note in result.notes:
        print(f"note: {note}", flush=True)
    if result.problems:
        count = len(result.problems)
        raise CliError(f"{count} problem{'s' if count > 1 else ''} in {plan.site_file} (host "
                       f"{plan.site_host!r}); nothing was started:\n  " + "\n  ".join(result.problems))


def _routed(args: argparse.Namespace, action: str) -> int | None:
    """Hand the named instances that host managers run to them; leave the rest in
    ``args.instances``. Returns an exit status when nothing is left for this host."""
    if not args.instances:
        return None
    args.site_host = site_host_default(args.site_host)
    cfg = load_site_config(site_file_path(args.site_file, getattr(args, "site", None)))
    host = cfg.host(args.site_host)
    routes: Routes = route_instances(cfg, host.name, cfg.hub_for(host), list(args.instances))
    status = 0
    if routes.managers:
        status = control_via_managers(cfg.hub_for(host), routes.managers, action, args.timeout)
    args.instances = routes.local
    return status if not routes.local else None


# -- up ------------------------------------------------------------------------------------
def run_up(args: argparse.Namespace) -> int:
    """Start the site (or, on a running site, the named instances)."""
    policy = _policy(args)
    routed = _routed(args, "up")
    if routed is not None:
        return routed
    plan = _plan(args, args.instances)
    running = supervisor_info(plan)
    if running is not None:
        if not args.instances:
            raise CliError(f"the site is already up (supervisor pid {running['pid']}, run dir "
                           f"{plan.run_dir}); `ocs-core up INSTANCE` starts one more instance, "
                           f"`ocs-core restart INSTANCE` restarts one, `ocs-core down` stops all")
        _check(plan)
        return _control(args, plan, "up")
    if plan.with_router:
        router = plan.router()
        if router.is_running():
            raise CliError(f"a router is already running from {plan.node_dir} (pid {router.pid}); "
                           f"stop it with `ocs-core router stop` or pass --no-router")
    if not args.no_check:
        _check(plan)
    if args.foreground:
        return Supervisor(plan, policy, stop_timeout=args.stop_timeout,
                          router_timeout=min(args.timeout, 30.0)).run()
    return _up_background(args, plan)


def _up_background(args: argparse.Namespace, plan: SitePlan) -> int:
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.log_dir / SUPERVISOR_LOG
    cmd = [sys.executable, "-m", "ocs_core.cli", "up", "--foreground", "--no-check",
           "--site-file", str(plan.site_file), "--site-host", plan.site_host,
           "--run-dir", str(plan.run_dir), "--timeout", str(args.timeout),
           "--stop-timeout", str(args.stop_timeout), "--backoff", *[str(x) for x in args.backoff]]
    cmd += (["--no-router"] if not plan.with_router else []) + list(plan.instances)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(cmd, stdin=null, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                start_new_session=True, close_fds=True)
    print(f"starting: {'router, ' if plan.with_router else ''}{', '.join(plan.instances) or 'no agents'} "
          f"(supervisor pid {proc.pid}, logs in {plan.log_dir})", flush=True)
    try:
        outcome = wait_for_site(plan, plan.instances, args.timeout, with_router=plan.with_router,
                                proc=proc, log_path=log_path, managed=plan.managed)
    except KeyboardInterrupt:
        proc.returncode = 0  # detached on purpose
        print(f"\ninterrupted: the site keeps starting in the background (supervisor pid {proc.pid}); "
              f"`ocs-core down` stops it", file=sys.stderr)
        return 130
    proc.returncode = 0  # detached on purpose: no "still running" warning at exit
    if outcome.pending or outcome.failed:
        return _report(plan, outcome, args.timeout, proc.pid)
    where = (f"router at {plan.hub.wamp_server}" if plan.with_router
             else f"router {plan.hub.wamp_server} not ours")
    state = (read_json(plan.state_path) or {}).get("agents", {})
    parts = [f"{name} (pid {state.get(name, {}).get('pid')})" for name in plan.instances]
    parts += [f"{name} (via {manager})" for name, manager in plan.managed.items()]
    print(f"site up: {where}; agents: {', '.join(parts) or 'none'}; supervisor pid {proc.pid}, "
          f"logs in {plan.log_dir}; `ocs-core down` stops it", flush=True)
    return 0


def _report(plan: SitePlan, outcome: Outcome, timeout: float, pid: int | None) -> int:
    state = read_json(plan.state_path) or {}
    details = []
    for name in outcome.pending:
        info = (state.get("router") if name == "router" else state.get("agents", {}).get(name)) or {}
        extra = f", last exit {info['last_exit']}" if info.get("last_exit") is not None else ""
        extra += f", {info['last_error']}" if info.get("last_error") else ""
        where = plan.log_dir / (SUPERVISOR_LOG if name == "router" else f"{name}.out")
        details.append(f"{name} ({info.get('state', 'unknown')}, {info.get('restarts', 0)} restarts{extra}; "
                       f"see {where})")
    parts = []
    if outcome.failed:
        parts.append(f"failed with a configuration error (not restarted): {', '.join(outcome.failed)}")
    if details:
        parts.append(f"not up within {timeout:g} s: {'; '.join(details)}")
    sup = f"the supervisor (pid {pid})" if pid else "the supervisor"
    print(f"ocs-core: error: {'; '.join(parts)}. {sup} keeps running the rest; fix the site file and "
          f"`ocs-core restart INSTANCE`, or `ocs-core down` stops everything", file=sys.stderr, flush=True)
    return 1


def _control(args: argparse.Namespace, plan: SitePlan, action: str) -> int:
    """Send a request to the running supervisor, print its reply, wait for the instances."""
    try:
        reply = send_request(plan.run_dir, action, list(args.instances))
    except ControlError as exc:
        raise CliError(str(exc)) from None
    for line in reply.get("lines", []):
        print(line, flush=True)
    if not reply.get("ok"):
        return 1
    if action == "down":
        return _wait_stopped(plan, list(args.instances), args.timeout)
    outcome = wait_for_site(plan, list(args.instances), args.timeout)
    if outcome.pending or outcome.failed:
        return _report(plan, outcome, args.timeout, None)
    return 0


def _wait_stopped(plan: SitePlan, names: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        agents = (read_json(plan.state_path) or {}).get("agents", {})
        left = [n for n in names if (agents.get(n) or {}).get("state") not in ("stopped", "failed")]
        if not left:
            print(f"stopped: {', '.join(names)}", flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(f"ocs-core: error: still stopping after {timeout:g} s: {', '.join(left)}", file=sys.stderr)
            return 1
        time.sleep(0.1)


def run_restart(args: argparse.Namespace) -> int:
    """Restart instances of a running site."""
    routed = _routed(args, "restart")
    if routed is not None:
        return routed
    plan = _plan(args, args.instances)
    if supervisor_info(plan) is None:
        raise CliError(f"the site is not up (run dir {plan.run_dir}); `ocs-core up` starts it")
    _check(plan)
    return _control(args, plan, "restart")


# -- down ----------------------------------------------------------------------------------
def run_down(args: argparse.Namespace) -> int:
    """Stop the named instances, or the supervisor and then make sure nothing is left."""
    routed = _routed(args, "down")
    if routed is not None:
        return routed
    if args.instances:
        plan = _plan(args)
        if supervisor_info(plan) is None:
            raise CliError(f"the site is not up (run dir {plan.run_dir}): nothing to stop")
        return _control(args, plan, "down")
    plan = _plan(args)
    state = read_json(plan.state_path) or {}
    sup = supervisor_info(plan)
    done: list[str] = []
    if sup is not None:
        done += _stop_managers(plan, state, args.timeout)
        pid = sup["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while same_process(pid, sup.get("proc_start")) and time.monotonic() < deadline:
            time.sleep(0.05)
        if same_process(pid, sup.get("proc_start")):
            if sup.get("pgid") == pid:
                signal_group(pid, signal.SIGKILL, 5.0)
            else:
                os.kill(pid, signal.SIGKILL)
            done.append(f"supervisor (pid {pid}) killed after {args.timeout:g} s")
        else:
            done.append(f"supervisor (pid {pid}) stopped")
        state = read_json(plan.state_path) or state
    leftovers = _leftover_groups(state, trusted=sup is not None)
    for name, pgid in leftovers:
        if not signal_group(pgid, signal.SIGTERM, 3.0):
            signal_group(pgid, signal.SIGKILL, 5.0)
        done.append(f"{name} (process group {pgid}) was left over: killed")
    if plan.router().stop(timeout=5.0):
        done.append("router was left over: stopped")
    plan.pid_path.unlink(missing_ok=True)
    survivors = [f"{name} (group {pgid})" for name, pgid in _leftover_groups(state, trusted=True)
                 if group_alive(pgid)]
    if survivors:
        print(f"ocs-core: error: still running after down: {', '.join(survivors)}", file=sys.stderr)
        return 1
    print(f"site down: {'; '.join(done)}" if done
          else f"site down: nothing was running (run dir {plan.run_dir})")
    return 0


def _stop_managers(plan: SitePlan, state: dict[str, Any], timeout: float) -> list[str]:
    """Stop the ``manager`` Process of each host manager the supervisor runs, and wait until it
    has brought its agents down (a host manager's agents are not the supervisor's children)."""
    managers = [name for name, info in (state.get("agents") or {}).items()
                if isinstance(info, dict) and info.get("agent_class") in HOST_MANAGER_CLASSES
                and info.get("state") == "running"]
    done = []
    for name in managers:
        try:
            call_bridge(plan.hub, f"{plan.address(name)}.ops", "stop", "manager", {})
        except ConnectionError:
            continue
        deadline = time.monotonic() + timeout
        while manager_view(plan.hub, name).running and time.monotonic() < deadline:
            time.sleep(0.1)
        done.append(f"{name}'s agents stopped")
    return done


def _leftover_groups(state: dict[str, Any], trusted: bool) -> list[tuple[str, int]]:
    """Process groups named in the state file that still have live members.

    A group counts when its leader is the process the state file recorded, or when the
    state file is fresh (``trusted``: written by the supervisor just stopped).
    """
    entries = [("router", state.get("router"))] + list((state.get("agents") or {}).items())
    found = []
    for name, info in entries:
        if not isinstance(info, dict) or not isinstance(info.get("pgid"), int):
            continue
        pgid = info["pgid"]
        if (trusted or same_process(pgid, info.get("proc_start"))) and group_alive(pgid):
            found.append((name, pgid))
    return found
