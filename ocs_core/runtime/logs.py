"""Logging for agents and tools: one line per event on stderr and in the agent's log file.

Events below ``level`` are dropped; libraries (autobahn, twisted) are held to warnings. A logged
failure prints one summary line on stderr; its traceback goes to the log file only.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

import txaio
from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            formatEvent, globalLogBeginner)

from ocs_core.runtime.log_format import format_line

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error, "critical": LogLevel.critical}
_started = False


def _format(event: dict) -> str:
    """The event's text: plain ``str.format_map`` when the format allows it (a few times faster
    than Twisted's ``formatEvent``), else ``formatEvent`` (call syntax ``{f()}``, missing keys)."""
    fmt = event.get("log_format")
    if isinstance(fmt, str):
        try:
            return fmt.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


class _LineObserver:
    def __init__(self, stream: IO[str] | None, file: IO[str] | None, prefix: str) -> None:
        self.stream = stream
        self.file = file
        self.prefix = prefix

    def __call__(self, event: dict) -> None:
        text = _format(event).replace("\n", " | ")
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}: {failure.type.__name__}: {failure.value}"
        level = event.get("log_level", LogLevel.info).name.upper()
        line = format_line(text, level, event.get("log_time", time.time()), self.prefix) + "\n"
        for out in (self.stream, self.file):
            if out is not None:
                out.write(line)
        if self.file is not None:
            if failure is not None:
                self.file.write(failure.getTraceback())
            self.file.flush()


def start_logging(level: str = "info", log_file: str | Path | None = None, prefix: str = "",
                  stream: IO[str] | None = sys.stderr, namespaces: tuple[str, ...] = ()) -> None:
    """Send Twisted and autobahn logging to ``stream`` and ``log_file``, one line per event.

    Every process of ocs-core (agents, instrument servers, tools) logs through this, so every
    line has one format: ``2026-12-01T07:16:29.664 INFO  <prefix><text>``.

    Args:
        level: lowest level shown for ocs-core's own messages.
        log_file: appended to (its directory is created); None for no file.
        prefix: put before every message, e.g. the instance-id.
        stream: where lines are printed (None: file only).
        namespaces: more logger namespaces shown at ``level`` (others are held to warnings).
    """
    global _started
    if _started:
        return
    _started = True
    txaio.use_twisted()
    txaio.set_global_log_level("warn")
    file = None
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a", encoding="utf-8", buffering=1)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    for namespace in ("ocs_core", "agents", "clients", "__main__", *namespaces):
        predicate.setLogLevelForNamespace(namespace, _LEVELS.get(level, LogLevel.info))
    observer = FilteringLogObserver(_LineObserver(stream, file, prefix), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
