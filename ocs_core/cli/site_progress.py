"""What ``ocs-core up`` / ``restart`` print while a site starts: one line per child as it becomes
ready, and the last lines of a child's output when it fails.

Progress comes from the supervisor's state file (``running`` means its readiness probe, e.g.
``get_agent_class`` through the HTTP bridge, answered); lines go to stdout, failures to stderr.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocs_core.cli.main import CliError
from ocs_core.supervisor.plan import SitePlan, instance_ready, read_json, router_answers, supervisor_info

__all__ = ["tail_lines", "Outcome", "wait_for_site"]

_POLL = 0.2
TAIL = 8


def tail_lines(path: Path, lines: int = TAIL) -> list[str]:
    """The last non-empty lines of a log file ([] when missing)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.rstrip() for line in text if line.strip()][-lines:]


def _print_tail(name: str, path: Path) -> None:
    lines = tail_lines(path)
    if lines:
        print(f"  last lines of {path}:", file=sys.stderr)
        for line in lines:
            print(f"    | {line}", file=sys.stderr)
    else:
        print(f"  ({name} wrote nothing to {path})", file=sys.stderr)


@dataclass
class Outcome:
    """Which children became ready, failed for good, or were still pending at the deadline."""

    ready: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def wait_for_site(plan: SitePlan, names: list[str], timeout: float, with_router: bool = False,
                  proc: subprocess.Popen | None = None, log_path: Path | None = None,
                  managed: dict[str, str] | None = None) -> Outcome:
    """Wait until the router (``with_router``) and ``names`` are ready, printing progress.

    Args:
        managed: instances a host manager of the plan starts (instance -> manager): ready when
            they answer ``get_agent_class``, after their manager.
        proc: the supervisor just started (its exit ends the wait with an error).
        log_path: the supervisor's log (shown when it exits).

    Raises:
        CliError: the supervisor exited, or the router cannot be started at all.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    outcome = Outcome(pending=list(names))
    managed = dict(managed or {})
    router_pending = with_router
    agents = (read_json(plan.state_path) or {}).get("agents") or {}
    # a restart count already seen: an exit asked for (restart, down then up) is not news
    exits_shown = {name: (agents.get(name) or {}).get("restarts") for name in names}

    def say(name: str, text: str) -> None:
        print(f"  {name}: {text} ({time.monotonic() - t0:.1f} s)", flush=True)

    while router_pending or outcome.pending or managed:
        if proc is not None and proc.poll() is not None:
            tail = " | ".join(tail_lines(log_path, 6)) if log_path else ""
            raise CliError(f"the supervisor exited with status {proc.returncode}; log {log_path}: {tail}")
        if proc is None and supervisor_info(plan) is None:
            raise CliError(f"the supervisor of {plan.run_dir} is not running")
        state = read_json(plan.state_path) or {}
        if router_pending:
            info = state.get("router") or {}
            if info.get("state") == "running" and router_answers(plan.hub):
                say("router", f"ready at {plan.hub.wamp_server}")
                router_pending = False
            elif info.get("state") == "backoff" and info.get("last_error") and proc is not None:
                _stop(proc)
                raise CliError(f"the router did not start: {info['last_error']}; nothing was left running")
        else:
            agents = state.get("agents") or {}
            for name in list(outcome.pending):
                info = agents.get(name) or {}
                log = plan.log_dir / f"{name}.out"
                if info.get("state") == "running":
                    say(name, f"callable, pid {info.get('pid')}")
                    outcome.pending.remove(name)
                    outcome.ready.append(name)
                elif info.get("state") == "failed":
                    print(f"  {name}: FAILED, not restarted: {info.get('last_error')}", file=sys.stderr)
                    _print_tail(name, log)
                    outcome.pending.remove(name)
                    outcome.failed.append(name)
                elif info.get("state") == "backoff" and info.get("last_exit") is not None \
                        and exits_shown.get(name) != info.get("restarts"):
                    exits_shown[name] = info.get("restarts")
                    print(f"  {name}: exited with code {info['last_exit']}, restarting in "
                          f"{info.get('next_start_in')} s", file=sys.stderr)
                    _print_tail(name, log)
            for name, manager in list(managed.items()):
                if manager in outcome.pending or manager in outcome.failed:
                    continue
                if instance_ready(plan, name, timeout=1.0):
                    say(name, f"callable via {manager}")
                    del managed[name]
                    outcome.ready.append(name)
        if time.monotonic() >= deadline:
            if router_pending:
                outcome.pending.insert(0, "router")
            outcome.pending += list(managed)
            break
        if router_pending or outcome.pending or managed:
            time.sleep(_POLL)
    return outcome


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
