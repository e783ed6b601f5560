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

import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ocs_core.framing.http_signing import signed_params
from ocs_core.router.auth import open_mode_warning
from ocs_core.router.process import Router, RouterError, hub_signing, probe
from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.site.config import HubConfig, SiteConfigError, load_site_config
from ocs_core.site.discovery import find_agent_entry
from ocs_core.supervisor.child import Child, ChildState, Event
from ocs_core.supervisor.process_group import group_alive, same_process, signal_group, start_time

__all__ = ["SitePlan", "plan_site", "Supervisor", "read_json", "supervisor_info",
           "agent_registered", "instance_ready", "is_wamp_agent", "router_answers", "child_env", "PID_FILE", "STATE_FILE",
           "SUPERVISOR_LOG", "DEFAULT_RUN_DIR"]

DEFAULT_RUN_DIR = "run"
PID_FILE = "supervisor.pid"
STATE_FILE = "site-state.json"
SUPERVISOR_LOG = "supervisor.log"
ROUTER = "router"
_TICK = 0.1
_PROBE_EVERY = 0.5
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class SitePlan:
    """What a supervisor runs: resolved paths, the hub, the instance-ids, the router or not."""

    site_file: Path
    site_host: str
    hub: HubConfig
    run_dir: Path
    log_dir: Path
    instances: list[str] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)
    with_router: bool = True
    arguments: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pid_path(self) -> Path:
        """The supervisor's pid file."""
        return self.run_dir / PID_FILE

    @property
    def state_path(self) -> Path:
        """The supervisor's state file."""
        return self.run_dir / STATE_FILE

    @property
    def node_dir(self) -> Path:
        """The router's crossbar node directory."""
        return self.run_dir / "router"

    def router(self) -> Router:
        """A :class:`Router` for this site's hub and node directory."""
        return Router(self.hub, self.node_dir)

    def address(self, instance_id: str) -> str:
        """``<address_root>.<instance_id>``."""
        return f"{self.hub.address_root}.{instance_id}"


def plan_site(site_file: str | os.PathLike, site_host: str | None = None,
              run_dir: str | os.PathLike = DEFAULT_RUN_DIR, instances: list[str] | None = None,
              with_router: bool = True) -> SitePlan:
    """Resolve what to run for this host.

    Without ``instances``, every instance whose ``manage`` is ``host/up`` runs; named
    instances run whatever their ``manage`` (except docker ones). The log directory is the
    host's ``log-dir`` (relative to the current directory), else ``<run-dir>/logs``.

    Raises:
        SiteConfigError: bad site file, unknown host or instance-id.
    """
    path = Path(site_file).resolve()
    cfg = load_site_config(path)
    host = cfg.host(site_host)
    if instances:
        for name in instances:
            inst = host.instance(name)
            if inst is None:
                raise SiteConfigError(f"{path}: host {host.name!r}: unknown instance-id {name!r} "
                                      f"(known: {', '.join(host.instance_ids) or 'none'})")
            if inst.manage.startswith("docker"):
                raise SiteConfigError(f"{path}: instance {name!r} is managed by docker "
                                      f"(manage: {inst.manage}); ocs-core up runs host agents only")
        chosen = list(dict.fromkeys(instances))
    else:
        chosen = [i.instance_id for i in host.agent_instances if i.manage == "host/up"]
    run = Path(run_dir).resolve()
    log_dir = Path(host.log_dir).resolve() if host.log_dir else run / "logs"
    classes = {i.instance_id: i.agent_class for i in host.agent_instances}
    arguments = {i.instance_id: list(i.arguments) for i in host.agent_instances}
    return SitePlan(path, host.name, cfg.hub_for(host), run, log_dir, chosen,
                    {k: classes[k] for k in chosen}, with_router, {k: arguments[k] for k in chosen})


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def supervisor_info(plan: SitePlan) -> dict[str, Any] | None:
    """The pid file's content when that supervisor is alive, else None."""
    info = read_json(plan.pid_path)
    if info is None or not isinstance(info.get("pid"), int):
        return None
    return info if same_process(info["pid"], info.get("proc_start")) else None


def instance_ready(plan: SitePlan, instance_id: str, timeout: float = 1.0) -> bool:
    """Whether an instance is up: a WAMP agent answers ``get_agent_class``; an entry point
    that is not a WAMP agent (``main.wamp_agent = False``) is asked through its
    ``main.ready_probe(arguments)`` (e.g. its TCP port accepts)."""
    probe = _ready_probe(plan.classes.get(instance_id, ""))
    if probe is not None:
        return bool(probe(plan.arguments.get(instance_id, [])))
    return agent_registered(plan.hub, plan.address(instance_id), timeout=timeout)


def is_wamp_agent(agent_class: str) -> bool:
    """False for entry points that declare ``main.wamp_agent = False`` (plain servers)."""
    return _ready_probe(agent_class) is None


@functools.lru_cache(maxsize=None)  # polled every half second: find each class's entry once
def _ready_probe(agent_class: str) -> Callable[[list[str]], bool] | None:
    try:
        main = find_agent_entry(agent_class)
    except Exception:  # unknown class: the agent's own start reports it
        return None
    if getattr(main, "wamp_agent", True):
        return None
    return getattr(main, "ready_probe", None) or (lambda arguments: True)


def agent_registered(hub: HubConfig, address: str, timeout: float = 1.0) -> bool:
    """Whether ``address`` answers ``get_agent_class`` through the HTTP bridge."""
    body = json.dumps({"procedure": address, "args": ["get_agent_class"]}).encode()
    url, signing = hub.wamp_http, hub_signing(hub)
    if signing is not None:  # a signed bridge (hub.http_key)
        url = f"{url}?{urllib.parse.urlencode(signed_params(*signing, body, 1))}"
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            answer = json.loads(reply.read(65536) or b"null")
    except (OSError, ValueError):  # HTTPError (a refused call) is an OSError
        return False
    return isinstance(answer, dict) and "error" not in answer


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


def child_env() -> dict[str, str]:
    """This environment with the ocs-core checkout first on PYTHONPATH (for child processes)."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _PROJECT_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([_PROJECT_ROOT] + paths)
    return env


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
        self.children = {name: Child(name, policy) for name in plan.instances}
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
        """One timestamped line."""
        self._out(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")

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
        _write_json(self.plan.state_path, doc)

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
        _write_json(self.plan.pid_path, {"pid": os.getpid(), "pgid": os.getpgrp(),
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
                if self._tick():
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
                self._kill_group(proc.pid)  # leftovers of the agent's group
                self._emit(child.exited(self._clock(), proc.returncode))
                changed = True
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
            if warning and not getattr(self, "_warned_open", False):
                self._warned_open = True
                self._out(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {warning}")
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


def router_answers(hub: HubConfig) -> bool:
    """Whether a router answers the HTTP bridge probe for ``hub`` right now."""
    return probe(hub.wamp_http, hub.address_root, timeout=1.0,
                 signing=hub_signing(hub)) == "wamp.error.no_such_procedure"
