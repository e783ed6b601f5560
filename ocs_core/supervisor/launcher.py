"""Site supervisor: run the router and a host's agents as supervised child processes.

Process handling on top of :mod:`ocs_core.supervisor.child`: plain ``subprocess`` and a polling
loop (no reactor). Each agent runs as ``python -m ocs_core.cli agent ID --site-file F
--site-host H --log-dir L`` in its own process group (session), stdout and stderr appended
to ``<log-dir>/<instance-id>.out``; the router runs through :class:`ocs_core.router.process.Router`
from ``<run-dir>/router``. The supervisor writes ``<run-dir>/supervisor.pid`` and keeps
``<run-dir>/site-state.json`` up to date (pids, states, restart counts) for ``ocs-core
status`` and ``ocs-core down``. SIGTERM, SIGINT or SIGHUP stops everything: agents first
(SIGTERM to each group, SIGKILL after ``stop_timeout``), then the router. Should the
supervisor itself be killed, its agents get SIGTERM from the kernel (Linux parent-death
signal) and ``ocs-core down`` cleans up the router and any leftover from the state files.

Blocking code; one supervisor per run directory.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable

from ocs_core.router.auth import open_mode_warning
from ocs_core.router.process import RouterError
from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.runtime.log_format import format_line
from ocs_core.site.config import SiteConfigError
from ocs_core.supervisor.child import Child, ChildState, Event
from ocs_core.supervisor.control import take_requests, write_reply
from ocs_core.supervisor.plan import (DEFAULT_RUN_DIR, PID_FILE, STATE_FILE, SUPERVISOR_LOG, SitePlan,
                                      agent_registered, child_env, instance_ready, is_wamp_agent,
                                      plan_site, read_json, router_answers, supervisor_info, write_json)
from ocs_core.supervisor.process_group import group_alive, signal_group, start_time

__all__ = ["SitePlan", "plan_site", "Supervisor", "read_json", "supervisor_info",
           "agent_registered", "instance_ready", "is_wamp_agent", "router_answers", "child_env", "PID_FILE",
           "STATE_FILE", "SUPERVISOR_LOG", "DEFAULT_RUN_DIR"]

ROUTER = "router"
_TICK = 0.1
_PROBE_EVERY = 0.5


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGTERM the child when the supervisor dies
    (Linux ``PR_SET_PDEATHSIG``), or None where that is unavailable. libc is loaded here, in
    the parent: the hook itself only makes one system call between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)
    return lambda: prctl(1, term, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class _Stop(BaseException):
    """Raised by the signal handler to interrupt a blocking router start."""


class Supervisor:
    """Run a :class:`SitePlan` until SIGTERM/SIGINT; log one line per event to ``out``.

    Args:
        plan: what to run.
        policy: the restart backoff of every child.
        stop_timeout: seconds between SIGTERM and SIGKILL when stopping agents.
        router_timeout: seconds the router may take to be ready.
        out: where log lines go (default: stdout, flushed).
        clock: monotonic time source.
    """

    def __init__(self, plan: SitePlan, policy: BackoffPolicy | None = None, stop_timeout: float = 10.0,
                 router_timeout: float = 30.0, out: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.plan = plan
        self.stop_timeout = stop_timeout
        self.router_timeout = router_timeout
        self._out = out or (lambda line: print(line, flush=True))
        self._clock = clock
        self.policy = policy
        self.children = {name: Child(name, policy) for name in plan.instances}
        self._restart_after_stop: set[str] = set()
        self._warned_open = False  # the open-mode warning, once per supervisor
        self._stop_deadlines: dict[str, float] = {}
        self.router_child = Child(ROUTER, policy) if plan.with_router else None
        self.router = plan.router() if plan.with_router else None
        self._procs: dict[str, subprocess.Popen] = {}
        self._probed: dict[str, float] = {}
        self._proc_start: dict[str, str | None] = {}
        self._preexec = _parent_death_hook()
        self._stopping = False
        self._blocking = False
        self._started = time.time()
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        plan.log_dir.mkdir(parents=True, exist_ok=True)

    # -- logging and files -------------------------------------------------------------------
    def log(self, line: str | Event) -> None:
        """One line, in the format of every ocs-core log (``ocs_core.runtime.log_format``)."""
        self._out(format_line(str(line)))

    def _emit(self, events: list[Event] | Event | None) -> None:
        for event in [events] if isinstance(events, Event) else (events or []):
            self.log(event)

    def write_state(self) -> None:
        """Write the state file (atomically)."""
        now = self._clock()
        doc = {"supervisor": {"pid": os.getpid(), "started": self._started,
                              "stopping": self._stopping},
               "site_file": str(self.plan.site_file), "site_host": self.plan.site_host,
               "log_dir": str(self.plan.log_dir), "updated": time.time(),
               "router": None, "agents": {}}
        if self.router_child is not None:
            info = read_json(self.plan.node_dir / "router.pid") if self.router_child.alive else None
            doc["router"] = dict(self.router_child.snapshot(now), pgid=info.get("pgid") if info else None,
                                 proc_start=info.get("proc_start") if info else None)
        for name, child in self.children.items():
            doc["agents"][name] = dict(child.snapshot(now), pgid=child.pid if child.alive else None,
                                       proc_start=self._proc_start.get(name) if child.alive else None,
                                       agent_class=self.plan.classes.get(name),
                                       log=str(self.plan.log_dir / f"{name}.out"))
        write_json(self.plan.state_path, doc)

    # -- signals -----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if not self._stopping:
            self._stopping = True
            self.log(f"supervisor: {signal.Signals(signum).name} received, stopping")
        if self._blocking:
            raise _Stop()

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until asked to stop; return the exit status (0 after a clean stop)."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        write_json(self.plan.pid_path, {"pid": os.getpid(), "pgid": os.getpgrp(),
                                         "proc_start": start_time(os.getpid()),
                                         "site_file": str(self.plan.site_file), "started": self._started})
        self.log(f"supervisor: pid {os.getpid()}, site {self.plan.site_file}, host {self.plan.site_host}, "
                 f"agents {', '.join(self.plan.instances) or 'none'}, logs in {self.plan.log_dir}")
        try:
            now = self._clock()
            for child in self._all_children():
                child.want(now)
            self.write_state()
            while not self._stopping:
                if self._tick() | self._handle_requests():
                    self.write_state()
                time.sleep(_TICK)
        except _Stop:
            pass
        finally:
            for sig in previous:  # a second signal must not interrupt the cleanup
                signal.signal(sig, signal.SIG_IGN)
            try:
                self.shutdown()
            finally:
                self.plan.pid_path.unlink(missing_ok=True)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return 0

    def _all_children(self) -> list[Child]:
        return ([self.router_child] if self.router_child else []) + list(self.children.values())

    def _tick(self) -> bool:
        """One pass: reap exits, start due children, probe starting ones. Returns 'changed'."""
        changed = False
        now = self._clock()
        if self.router_child is not None:
            changed |= self._tick_router(now)
        for name, child in self.children.items():
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                del self._procs[name]
                self._stop_deadlines.pop(name, None)
                self._kill_group(proc.pid)  # leftovers of the agent's group
                self._emit(child.exited(self._clock(), proc.returncode))
                if name in self._restart_after_stop:
                    self._restart_after_stop.discard(name)
                    child.want(self._clock())
                changed = True
            elif proc is not None and now >= self._stop_deadlines.get(name, float("inf")):
                self.log(f"{name}: still running after {self.stop_timeout:g} s, SIGKILL")
                self._stop_deadlines.pop(name)
                self._kill_group(proc.pid)
            if self.router_child is not None and self.router_child.state is not ChildState.RUNNING:
                continue  # agents start once the router answers
            if child.due(now) and not self._stopping:
                self._spawn_agent(name, child)
                changed = True
            elif child.state is ChildState.STARTING and now - self._probed.get(name, 0.0) >= _PROBE_EVERY:
                self._probed[name] = now
                if instance_ready(self.plan, name, timeout=1.0):
                    self._emit(child.ready(self._clock()))
                    changed = True
        return changed

    def _tick_router(self, now: float) -> bool:
        child, router = self.router_child, self.router
        if child.alive and router.wait(0) is not None:
            code = router.wait(0)
            router.stop(timeout=2.0)  # clear workers left by the dead controller
            self._emit(child.exited(self._clock(), code))
            return True
        if child.due(now):
            self._blocking = True
            try:
                pid = router.start(timeout=self.router_timeout)
            except (RouterError, SiteConfigError) as exc:  # a credentials problem, too
                self._emit(child.spawn_failed(self._clock(), str(exc)))
                return True
            finally:
                self._blocking = False
            self._emit(child.spawned(self._clock(), pid))
            self._emit(child.ready(self._clock()))
            warning = open_mode_warning(self.plan.hub)
            if warning and not self._warned_open:
                self._warned_open = True
                self.log(warning)
            return True
        return False

    def agent_command(self, name: str) -> list[str]:
        """The command line of an agent instance."""
        return [sys.executable, "-m", "ocs_core.cli", "agent", name,
                "--site-file", str(self.plan.site_file), "--site-host", self.plan.site_host,
                "--log-dir", str(self.plan.log_dir)]

    def _spawn_agent(self, name: str, child: Child) -> None:
        env = child_env()
        try:
            with open(self.plan.log_dir / f"{name}.out", "ab") as log, open(os.devnull, "rb") as null:
                proc = subprocess.Popen(self.agent_command(name), stdin=null, stdout=log, stderr=log,
                                        env=env, start_new_session=True, close_fds=True,
                                        preexec_fn=self._preexec)
        except OSError as exc:
            self._emit(child.spawn_failed(self._clock(), str(exc)))
            return
        self._procs[name] = proc
        self._proc_start[name] = start_time(proc.pid)
        self._probed[name] = self._clock()
        self._emit(child.spawned(self._clock(), proc.pid))

    # -- requests (ocs-core up|down|restart INSTANCE on a running site) -----------------------
    def _handle_requests(self) -> bool:
        replies = []
        for request_id, action, names in take_requests(self.plan.run_dir):
            ok, lines = self.control(action, names)
            for line in lines:
                self.log(f"request {action}: {line}")
            replies.append((request_id, ok, lines))
        if replies:
            self.write_state()  # before the replies: the requester then reads the new states
        for request_id, ok, lines in replies:
            write_reply(self.plan.run_dir, request_id, ok, lines)
        return bool(replies)

    def control(self, action: str, names: list[str]) -> tuple[bool, list[str]]:
        """Start (``up``), stop (``down``) or ``restart`` instances; an instance of the site
        file this supervisor does not run yet is added (``up``, ``restart``)."""
        ok, lines, now = True, [], self._clock()
        for name in names:
            child = self.children.get(name)
            if child is None and action != "down":
                try:
                    self._add_instance(name)
                except SiteConfigError as exc:
                    ok = False
                    lines.append(f"{name}: {exc}")
                    continue
                child = self.children[name]
            if child is None:
                ok = False
                lines.append(f"{name}: not run by this supervisor (running: "
                             f"{', '.join(self.children) or 'none'})")
            elif action == "up" and (child.alive or child.state is ChildState.BACKOFF):
                lines.append(f"{name}: already {child.state.value}")
            elif action == "down":
                self._stop_child(name, now)
                lines.append(f"{name}: stopping")
            elif action == "restart" and child.alive:
                self._restart_after_stop.add(name)
                self._stop_child(name, now)
                lines.append(f"{name}: restarting")
            else:
                child.want(now)
                lines.append(f"{name}: starting")
        return ok, lines

    def _add_instance(self, name: str) -> None:
        extra = plan_site(self.plan.site_file, self.plan.site_host, self.plan.run_dir, [name],
                          with_router=self.plan.with_router)
        self.plan = replace(self.plan, instances=self.plan.instances + [name],
                            classes={**self.plan.classes, **extra.classes},
                            arguments={**self.plan.arguments, **extra.arguments})
        self.children[name] = Child(name, self.policy)

    def _stop_child(self, name: str, now: float) -> None:
        proc = self._procs.get(name)
        if self.children[name].request_stop(now) and proc is not None:
            self.log(f"{name}: stopping (SIGTERM to pid {proc.pid})")
            self._stop_deadlines[name] = now + self.stop_timeout
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # -- stop --------------------------------------------------------------------------------
    @staticmethod
    def _kill_group(pgid: int) -> None:
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL, 2.0)

    def shutdown(self) -> None:
        """Stop every agent (SIGTERM, SIGKILL after ``stop_timeout``), then the router."""
        self._stopping = True
        now = self._clock()
        for name, child in self.children.items():
            proc = self._procs.get(name)
            if child.request_stop(now) and proc is not None:
                self.log(f"{name}: stopping (SIGTERM to pid {proc.pid})")
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.write_state()
        deadline = time.monotonic() + self.stop_timeout
        while self._procs and time.monotonic() < deadline:
            for name, proc in list(self._procs.items()):
                if proc.poll() is not None and not group_alive(proc.pid):
                    del self._procs[name]
                    self._emit(self.children[name].exited(self._clock(), proc.returncode))
            time.sleep(0.05)
        for name, proc in list(self._procs.items()):
            self.log(f"{name}: still running after {self.stop_timeout:g} s, SIGKILL")
            signal_group(proc.pid, signal.SIGKILL, 5.0, proc)
            proc.wait(5)
            del self._procs[name]
            self._emit(self.children[name].exited(self._clock(), proc.returncode))
        if self.router_child is not None:
            running = self.router_child.request_stop(self._clock())
            if self.router.stop(timeout=self.stop_timeout) or running:
                self._emit(self.router_child.exited(self._clock(), self.router.wait(0)))
        self.write_state()
        self.log("supervisor: everything stopped")
