"""``ocs-core up`` / ``ocs-core down`` and the site form of ``ocs-core status``.

``up`` starts a supervisor (:mod:`ocs_core.supervisor.launcher`) that runs the router and this host's
agents; in the background by default (detached, returns once everything answers), or in
the foreground with ``--foreground`` (Ctrl-C stops everything). ``down`` stops it and
makes sure nothing is left. ``ocs-core status`` without an INSTANCE (registered by
:mod:`clients.cli_commands`, which gathers heartbeats) calls :func:`site_status`.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ocs_core.cli.main import CliError
from ocs_core.supervisor.launcher import (DEFAULT_RUN_DIR, SUPERVISOR_LOG, SitePlan, Supervisor, instance_ready, is_wamp_agent,
                               child_env, plan_site, read_json, router_answers, supervisor_info)
from ocs_core.supervisor.process_group import group_alive, same_process, signal_group
from ocs_core.site.args import site_file_path, site_host_default
from ocs_core.site.config import load_site_config
from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["register", "run_up", "run_down", "site_status", "add_run_dir"]

_POLL = 0.2


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--run-dir`` option (supervisor pid and state files, router node directory)."""
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, metavar="DIR",
                        help=f"pid file, state file and router node dir (default: ./{DEFAULT_RUN_DIR})")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``up`` and ``down``."""
    up = subparsers.add_parser(
        "up", parents=[common], help="start the router and this host's agents, supervised",
        description="Start the router and every agent instance of this host (or the named ones), "
                    "restarting agents that die. Returns once all answer, unless --foreground.")
    up.add_argument("instances", nargs="*", metavar="INSTANCE",
                    help="instance-ids to run (default: every 'manage: host/up' instance of the host)")
    add_run_dir(up)
    up.add_argument("--foreground", action="store_true", help="supervise in this process until Ctrl-C")
    up.add_argument("--no-router", action="store_true", help="do not run a router (it runs elsewhere)")
    up.add_argument("--timeout", type=float, default=60.0, metavar="S",
                    help="seconds to wait for the router and agents to answer (default: 60)")
    up.add_argument("--stop-timeout", type=float, default=10.0, metavar="S",
                    help="seconds between SIGTERM and SIGKILL when stopping an agent (default: 10)")
    up.add_argument("--backoff", type=float, nargs=3, default=(1.0, 30.0, 60.0),
                    metavar=("FIRST", "MAX", "RESET"),
                    help="restart delay: first, maximum (it doubles), and the uptime that resets it "
                         "(default: 1 30 60)")
    up.set_defaults(func=run_up, launcher=True)
    down = subparsers.add_parser("down", parents=[common], help="stop what `ocs-core up` started")
    add_run_dir(down)
    down.add_argument("--timeout", type=float, default=30.0, metavar="S",
                      help="seconds to wait for a clean stop before SIGKILL (default: 30)")
    down.set_defaults(func=run_down, launcher=True)


def _plan(args: argparse.Namespace, instances: list[str] | None = None) -> SitePlan:
    args.site_host = site_host_default(args.site_host)
    return plan_site(site_file_path(args.site_file, getattr(args, "site", None)), args.site_host, args.run_dir, instances,
                     with_router=not getattr(args, "no_router", False))


def _policy(args: argparse.Namespace) -> BackoffPolicy:
    first, maximum, reset = args.backoff
    try:
        return BackoffPolicy(initial=first, maximum=maximum, reset_after=reset)
    except ValueError as exc:
        raise CliError(f"--backoff: {exc}") from None


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


# -- up ------------------------------------------------------------------------------------
def run_up(args: argparse.Namespace) -> int:
    """Start the site: supervise in the foreground, or detach a supervisor and wait for it."""
    plan = _plan(args, args.instances)
    policy = _policy(args)
    running = supervisor_info(plan)
    if running is not None:
        raise CliError(f"the site is already up (supervisor pid {running['pid']}, run dir "
                       f"{plan.run_dir}); run `ocs-core down` first")
    if plan.with_router:
        router = plan.router()
        if router.is_running():
            raise CliError(f"a router is already running from {plan.node_dir} (pid {router.pid}); "
                           f"stop it with `ocs-core router stop` or pass --no-router")
    if args.foreground:
        return Supervisor(plan, policy, stop_timeout=args.stop_timeout,
                          router_timeout=min(args.timeout, 30.0)).run()
    return _up_background(args, plan)


def _up_background(args: argparse.Namespace, plan: SitePlan) -> int:
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.log_dir / SUPERVISOR_LOG
    cmd = [sys.executable, "-m", "ocs_core.cli", "up", "--foreground", "--site-file", str(plan.site_file),
           "--site-host", plan.site_host, "--run-dir", str(plan.run_dir), "--timeout", str(args.timeout),
           "--stop-timeout", str(args.stop_timeout), "--backoff", *[str(x) for x in args.backoff]]
    cmd += (["--no-router"] if not plan.with_router else []) + list(plan.instances)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen(cmd, stdin=null, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                start_new_session=True, close_fds=True)
    try:
        return _wait_up(args, plan, proc, log_path)
    except KeyboardInterrupt:
        proc.returncode = 0  # detached on purpose
        print(f"\ninterrupted: the site keeps starting in the background (supervisor pid {proc.pid}); "
              f"`ocs-core down` stops it", file=sys.stderr)
        return 130


def _wait_up(args: argparse.Namespace, plan: SitePlan, proc: subprocess.Popen, log_path: Path) -> int:
    deadline = time.monotonic() + args.timeout
    pending = (["router"] if plan.with_router else []) + list(plan.instances)
    while pending:
        if proc.poll() is not None:
            raise CliError(f"the supervisor exited with status {proc.returncode}; "
                           f"log {log_path}: {_tail(log_path)}")
        if pending[0] == "router":
            if router_answers(plan.hub):
                pending.pop(0)
            else:
                _fail_fast_on_router_error(plan, proc)
        else:
            pending = [name for name in pending if not instance_ready(plan, name, timeout=1.0)]
        if pending and time.monotonic() >= deadline:
            return _report_not_up(plan, pending, proc.pid, log_path, args.timeout)
        if pending:
            time.sleep(_POLL)
    proc.returncode = 0  # detached on purpose: no "still running" warning at exit
    state = read_json(plan.state_path) or {}
    agents = state.get("agents", {})
    parts = [f"{name} (pid {agents.get(name, {}).get('pid')})" for name in plan.instances]
    where = (f"router at {plan.hub.wamp_server}" if plan.with_router
             else f"router {plan.hub.wamp_server} not ours")
    print(f"site up: {where}; agents: {', '.join(parts) or 'none'}; supervisor pid {proc.pid}, "
          f"logs in {plan.log_dir}; `ocs-core down` stops it", flush=True)
    return 0


def _fail_fast_on_router_error(plan: SitePlan, proc: subprocess.Popen) -> None:
    """The router could not even be started (port taken, crossbar missing): retrying cannot
    help a user waiting on ``up``, so stop the supervisor and say why at once."""
    info = (read_json(plan.state_path) or {}).get("router") or {}
    error = info.get("last_error")
    if not error or info.get("state") != "backoff":
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    raise CliError(f"the router did not start: {error}; nothing was left running")


def _report_not_up(plan: SitePlan, pending: list[str], pid: int, log_path: Path, timeout: float) -> int:
    state = read_json(plan.state_path) or {}
    details = []
    for name in pending:
        info = (state.get("router") if name == "router" else state.get("agents", {}).get(name)) or {}
        extra = f", last exit {info['last_exit']}" if info.get("last_exit") is not None else ""
        extra += f", {info['last_error']}" if info.get("last_error") else ""
        where = log_path if name == "router" else plan.log_dir / f"{name}.out"
        details.append(f"{name} ({info.get('state', 'unknown')}, {info.get('restarts', 0)} restarts{extra}; "
                       f"see {where})")
    print(f"ocs-core: error: not up within {timeout:g} s: {'; '.join(details)}. The supervisor "
          f"(pid {pid}) keeps retrying; `ocs-core down` stops everything", file=sys.stderr, flush=True)
    return 1


# -- down ----------------------------------------------------------------------------------
def run_down(args: argparse.Namespace) -> int:
    """Stop the supervisor, then make sure no agent or router process is left."""
    plan = _plan(args)
    state = read_json(plan.state_path) or {}
    sup = supervisor_info(plan)
    done: list[str] = []
    if sup is not None:
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


# -- status --------------------------------------------------------------------------------
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
    for inst in host.agent_instances:
        seen = beats.get(plan.address(inst.instance_id))
        if is_wamp_agent(inst.agent_class):
            alive = seen is not None and now - seen[0] <= live_window
        else:  # a plain server (no heartbeat): ask its own readiness probe
            alive = up and instance_ready(replace(plan, arguments={inst.instance_id: list(inst.arguments)},
                                                  classes={inst.instance_id: inst.agent_class}),
                                          inst.instance_id)
        info = agents.get(inst.instance_id) or {}
        if inst.instance_id in agents and not alive:
            ok = False
        rows.append((inst.instance_id, inst.agent_class, "yes" if alive else "no",
                     info.get("state", "-"), info.get("pid") or "-",
                     info.get("restarts", "-") if info else "-"))
    _table(["instance", "class", "alive", "supervised", "pid", "restarts"], rows)
    return 0 if ok else 1


def _table(header: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*[str(x) for x in row]))
