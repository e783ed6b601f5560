"""Process groups on POSIX: find live members, identify a process, signal a group and wait.

Zombies do not count as alive: in containers whose PID 1 does not reap orphans, a dead
crossbar controller can linger as a zombie forever.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

__all__ = ["start_time", "same_process", "group_members", "group_alive", "signal_group"]

_POLL = 0.05


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot) from /proc; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def same_process(pid: int, started: str | None) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``started``."""
    if started is not None and Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        fields = stat[stat.rfind(")") + 2:].split()
        return len(fields) > 19 and fields[0] not in ("Z", "X") and fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) pids of a process group from /proc; None when /proc is unavailable."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group."""
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Send ``sig`` to a process group; return whether it is gone within ``timeout`` s."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()  # reap the controller so it does not linger as a zombie
        if not group_alive(pgid):
            return True
        time.sleep(_POLL)
    return not group_alive(pgid)
