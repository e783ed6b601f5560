"""Child agent processes of the host manager, through the reactor (never blocking it).

Each instance runs as ``python -m ocs_core.cli agent ID --site-file F --site-host H --log-dir L``
(so classes of both registries run, ocs's through ``ocs-agent-cli``) in a session of its own,
stdout and stderr appended to ``<log-dir>/<instance-id>.out``. Children are not tied to the host
manager's life: if it dies they keep running (ocs's behaviour), and are reported as unmanaged.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Callable

from twisted.internet import protocol
from twisted.python.failure import Failure

from ocs_core.supervisor.plan import child_env
from ocs_core.supervisor.process_group import same_process, start_time

__all__ = ["ChildProcess", "AdoptedProcess", "spawn_agent", "agent_command", "find_agent_process"]

#: Run the command in a new session (its own process group), then exec it.
_SETSID_EXEC = "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])"


def agent_command(instance_id: str, site_file: str, site_host: str, log_dir: str) -> list[str]:
    """The command line of one managed instance."""
    return [sys.executable, "-m", "ocs_core.cli", "agent", instance_id, "--site-file", site_file,
            "--site-host", site_host, "--log-dir", log_dir]


class ChildProcess(protocol.ProcessProtocol):
    """One child; ``on_exit(code)`` is called once when it ends (negative code: killed by signal)."""

    def __init__(self, on_exit: Callable[[int | None], None]):
        self.on_exit = on_exit
        self.pid: int | None = None
        self.ended = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        self.pid = self.transport.pid

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.ended = True
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        self.on_exit(-sig if code is None and sig else code)

    def signal_group(self, sig: int) -> None:
        """Signal the child's whole process group (it leads its own session)."""
        if self.pid is None or self.ended:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def spawn_agent(reactor, command: list[str], log_path: Path,
                on_exit: Callable[[int | None], None]) -> ChildProcess:
    """Start ``command`` in its own session with output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proto = ChildProcess(on_exit)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    try:
        reactor.spawnProcess(proto, sys.executable, [sys.executable, "-c", _SETSID_EXEC, *command],
                             env=child_env(), childFDs={0: null_fd, 1: log_fd, 2: log_fd})
    finally:
        os.close(log_fd)
        os.close(null_fd)
    return proto


def find_agent_process(instance_id: str, site_file: str) -> int | None:
    """The pid of a running ``ocs-core agent INSTANCE --site-file F`` (one a host manager left
    running when it died), from /proc; None when there is none. Blocking: run it in a thread."""
    wanted = ["-m", "ocs_core.cli", "agent", instance_id, "--site-file", site_file]
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[1:1 + len(wanted)] == wanted and int(entry) != os.getpid():
            return int(entry)
    return None


class AdoptedProcess:
    """A child found running (not spawned by this manager): watched by polling /proc."""

    def __init__(self, pid: int, on_exit: Callable[[int | None], None]):
        self.pid = pid
        self.on_exit = on_exit
        self.ended = False
        self._started = start_time(pid)

    def poll(self) -> None:
        """Report the exit once the process is gone (its exit code is not ours to know)."""
        if not self.ended and not same_process(self.pid, self._started):
            self.ended = True
            self.on_exit(None)

    def signal_group(self, sig: int) -> None:
        """Signal the process's group (it leads its own session)."""
        if self.ended:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


SIGTERM, SIGKILL = signal.SIGTERM, signal.SIGKILL
