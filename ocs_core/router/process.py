"""Run crossbar as a child process for a site's hub: start, wait until ready, stop.

crossbar runs in its own process group (``start_new_session``) with its own node directory
holding the rendered ``config.json``, a ``router.pid`` file (so ``ocs-core router stop`` can
find a router another command started) and, by default, its log ``crossbar.log``. It is
stopped by process group: SIGTERM, then SIGKILL after a timeout.

Readiness means a WAMP session is joined to the realm: the HTTP caller bridge answers a call
to ``<root>._crossbar_check_`` with ``wamp.error.no_such_procedure``. Measured here (crossbar
26.10.1, 2 cores): about 3-4.5 s from launch to ready.

Blocking code (subprocess and HTTP polling); call it from a thread in a Twisted program.
"""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ocs_core.router.config import Endpoint, hub_endpoint, render_config
from ocs_core.site.config import HubConfig
from ocs_core.supervisor.process_group import group_alive, same_process, signal_group, start_time

__all__ = ["Router", "RouterError", "CHECK_PROCEDURE", "PID_FILE", "CONFIG_FILE", "LOG_FILE",
           "crossbar_installed", "port_in_use", "probe"]

CHECK_PROCEDURE = "_crossbar_check_"
PID_FILE = "router.pid"
CONFIG_FILE = "config.json"
LOG_FILE = "crossbar.log"
WORKER_WRAPPER = "python-worker"
#: Smallest stack the router worker runs with (KiB). cbor2 encodes nested containers by C
#: recursion with no limit of its own: ~7,000 levels overflow 8 MB, ~800 levels overflow 1 MB,
#: and the decoders of the router let through up to 1,024 (docs/security.md, "Hostile messages").
WORKER_STACK_KB = 8192
_POLL = 0.05
# Loopback probes must not go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RouterError(RuntimeError):
    """The router cannot be started, is not ready in time, or is not running."""


def crossbar_installed() -> bool:
    """Whether the ``crossbar`` package can be imported by this interpreter."""
    return importlib.util.find_spec("crossbar") is not None


def port_in_use(interface: str, port: int) -> bool:
    """Whether a listening socket on ``(interface, port)`` cannot be bound right now."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise RouterError(f"cannot listen on {interface}:{port}: {exc.strerror}") from None
    return False


def probe(http_url: str, address_root: str, timeout: float = 2.0) -> str | None:
    """Call ``<root>._crossbar_check_`` through the HTTP bridge; return the error URI.

    ``wamp.error.no_such_procedure`` means the bridge's session is joined and the config is
    consistent; ``wamp.error.not_authorized`` means a realm or root mismatch. None means
    no answer (connection refused, timeout, not JSON).
    """
    body = json.dumps({"procedure": f"{address_root}.{CHECK_PROCEDURE}"}).encode()
    request = urllib.request.Request(http_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            answer = json.loads(reply.read(65536) or b"null")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read(65536) or b"null")
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    return answer.get("error") if isinstance(answer, dict) else None


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    tail = [line.strip() for line in text if line.strip()][-lines:]
    return " | ".join(tail)


class Router:
    """A crossbar router for one hub, run from its own node directory.

    Args:
        hub: the site's hub (realm, address root, URLs).
        node_dir: crossbar's node directory (created; config, pid file and log go there).
        log_path: crossbar's log file (default ``<node_dir>/crossbar.log``).
        loglevel: crossbar's log level (``warn`` keeps the log to problems only).
    """

    def __init__(self, hub: HubConfig, node_dir: str | os.PathLike, log_path: str | os.PathLike | None = None,
                 loglevel: str = "warn"):
        self.hub = hub
        self.node_dir = Path(node_dir).resolve()
        self.log_path = Path(log_path).resolve() if log_path else self.node_dir / LOG_FILE
        self.loglevel = loglevel
        self.endpoint: Endpoint = hub_endpoint(hub)
        self._proc: subprocess.Popen | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port the router listens on."""
        return self.endpoint.port

    @property
    def _connect_host(self) -> str:
        iface = self.endpoint.interface
        if iface in ("0.0.0.0", ""):
            return "127.0.0.1"
        if iface == "::":
            return "[::1]"
        return f"[{iface}]" if ":" in iface else iface

    @property
    def http_url(self) -> str:
        """The HTTP caller bridge URL, as reachable from this machine."""
        return f"http://{self._connect_host}:{self.port}/{self.endpoint.http_path}"

    @property
    def ws_url(self) -> str:
        """The websocket URL, as reachable from this machine."""
        return f"ws://{self._connect_host}:{self.port}/{self.endpoint.ws_path}"

    @property
    def pid_path(self) -> Path:
        """The pid file of a router started from this node directory."""
        return self.node_dir / PID_FILE

    # -- state -------------------------------------------------------------------------------
    def _read_pid(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.pid_path.read_text())
            int(info["pid"]), int(info["pgid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info

    def _running_info(self) -> dict[str, Any] | None:
        """The pid file's content if that router is still alive, else None."""
        info = self._read_pid()
        if self._proc is not None:  # started by this object: ask the child itself
            if self._proc.poll() is not None:
                return None
            if info is None or info["pid"] != self._proc.pid:
                return {"pid": self._proc.pid, "pgid": self._proc.pid, "port": self.port}
            return info
        if info is None:
            return None
        if not same_process(int(info["pid"]), info.get("proc_start")):
            return None  # gone, or the pid was reused by another program
        return info

    @property
    def pid(self) -> int | None:
        """The crossbar controller's pid while it runs, else None."""
        info = self._running_info()
        return int(info["pid"]) if info else None

    def is_running(self) -> bool:
        """Whether crossbar (started by this object or found by pid file) is alive."""
        return self._running_info() is not None

    def is_ready(self) -> bool:
        """Whether the HTTP bridge answers with a joined session right now."""
        return probe(self.http_url, self.hub.address_root, timeout=1.0) == "wamp.error.no_such_procedure"

    def status(self) -> dict[str, Any]:
        """``running``, ``ready``, ``pid``, ``port``, ``http_url``, ``ws_url``, ``node_dir``."""
        pid = self.pid
        return {"running": pid is not None, "ready": pid is not None and self.is_ready(),
                "pid": pid, "port": self.port, "http_url": self.http_url, "ws_url": self.ws_url,
                "node_dir": str(self.node_dir)}

    # -- start -------------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Render the node config into the node directory; return its path."""
        self.node_dir.mkdir(parents=True, exist_ok=True)
        wrapper = self.node_dir / WORKER_WRAPPER
        wrapper.write_text(
            "#!/bin/sh\n"
            "# crossbar runs its worker as: <this> -u -m crossbar.worker.main ARGS;\n"
            "# run it through ocs_core.router._crossbar_worker (quiet imports) instead.\n"
            f"# cbor2 encodes nesting by C recursion: give it a stack of at least {WORKER_STACK_KB // 1024} MB.\n"
            'stack=$(ulimit -S -s)\n'
            f'if [ "$stack" != unlimited ] && [ "$stack" -lt {WORKER_STACK_KB} ]; then\n'
            f"    ulimit -S -s {WORKER_STACK_KB} 2>/dev/null || true\n"
            "fi\n"
            'if [ "$1" = "-u" ] && [ "$2" = "-m" ] && [ "$3" = "crossbar.worker.main" ]; then\n'
            "    shift 3\n"
            f'    exec {shlex.quote(sys.executable)} -u -m ocs_core.router._crossbar_worker "$@"\n'
            "fi\n"
            f'exec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
        config = render_config(self.hub, self.endpoint, worker_python=str(wrapper))
        path = self.node_dir / CONFIG_FILE
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return path

    def command(self) -> list[str]:
        """The command line that runs crossbar for this router."""
        return [sys.executable, "-m", "ocs_core.router._crossbar", "start", "--cbdir", str(self.node_dir),
                "--config", str(self.node_dir / CONFIG_FILE), "--loglevel", self.loglevel,
                "--color", "false", "--logformat", "standard"]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([package_root] + paths)
        env.pop("CROSSBAR_DIR", None)
        return env

    def start(self, timeout: float = 20) -> int:
        """Launch crossbar and wait until it is ready; return its pid.

        Raises:
            RouterError: crossbar missing, port taken, a router already running from this
                node directory, crossbar died, or not ready within ``timeout`` seconds.
        """
        if not crossbar_installed():
            raise RouterError("crossbar is not installed: pip install 'ocs-core[router]'")
        running = self._running_info()
        if running is not None:
            raise RouterError(f"a router is already running from {self.node_dir} "
                              f"(pid {running['pid']}, port {running.get('port')})")
        iface, port = self.endpoint.interface, self.port
        if port_in_use(iface, port):
            raise RouterError(f"port {port} on {iface} is already in use (another router? "
                              f"see 'ocs-core router status')")
        self.write_config()
        (self.node_dir / "node.pid").unlink(missing_ok=True)  # crossbar's own, maybe stale
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            self._proc = subprocess.Popen(self.command(), stdin=devnull, stdout=log, stderr=log,
                                          cwd=self.node_dir, env=self._environment(),
                                          start_new_session=True, close_fds=True)
        info = {"pid": self._proc.pid, "pgid": self._proc.pid, "port": port, "interface": iface,
                "http_url": self.http_url, "started": time.time(),
                "proc_start": start_time(self._proc.pid)}
        self.pid_path.write_text(json.dumps(info) + "\n", encoding="utf-8")
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self._proc.pid

    def wait_ready(self, timeout: float = 20) -> None:
        """Block until a WAMP session is joined to the realm (HTTP bridge probe).

        Raises:
            RouterError: crossbar exited (with the tail of its log), the router refuses the
                probe (realm or root mismatch), or it is not ready within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RouterError(f"crossbar exited with status {self._proc.returncode} during "
                                  f"startup; log {self.log_path}: {_log_tail(self.log_path)}")
            if self._proc is None and not self.is_running():
                raise RouterError(f"no router is running from {self.node_dir}")
            answer = probe(self.http_url, self.hub.address_root, timeout=1.0)
            if answer == "wamp.error.no_such_procedure":
                return
            if answer == "wamp.error.not_authorized":
                raise RouterError(f"the router on port {self.port} refuses calls under "
                                  f"{self.hub.address_root!r}: realm or address_root mismatch")
            if time.monotonic() >= deadline:
                raise RouterError(f"router not ready within {timeout:g} s at {self.http_url}; "
                                  f"log {self.log_path}: {_log_tail(self.log_path)}")
            time.sleep(_POLL)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, timeout: float = 5) -> bool:
        """Stop crossbar by process group: SIGTERM, then SIGKILL after ``timeout`` seconds.

        Idempotent. Returns True when something was running (the router, or workers left
        behind by a dead controller) and has been stopped.
        """
        info = self._running_info()
        proc, self._proc = self._proc, None
        if info is not None:
            pgid: int | None = int(info["pgid"])
        elif proc is not None:
            pgid = proc.pid
        else:  # a dead controller's group can only hold its own leftovers (pgids stay reserved)
            stale = self._read_pid()
            pgid = int(stale["pgid"]) if stale else None
        running = info is not None or (pgid is not None and group_alive(pgid))
        if running and pgid is not None:
            if not signal_group(pgid, signal.SIGTERM, timeout, proc):
                signal_group(pgid, signal.SIGKILL, 5.0, proc)
        if proc is not None:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.pid_path.unlink(missing_ok=True)
        (self.node_dir / "node.pid").unlink(missing_ok=True)
        return running

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for a router this object started to exit; return its status (None: running)."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 8) -> str:
        """The last non-empty lines of crossbar's log, joined with `` | ``."""
        return _log_tail(self.log_path, lines)

    def __enter__(self) -> "Router":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
