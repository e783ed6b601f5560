"""The one log line format of every ocs-core process (agents, servers, the supervisor); pure.

``2026-12-01T07:16:29.664 INFO  <prefix><text>``: UTC time to the millisecond, the level padded
to five characters, then the text.
"""
from __future__ import annotations

import time


def format_line(text: str, level: str = "INFO", when: float | None = None, prefix: str = "") -> str:
    """One log line (without its newline) for ``text`` logged at ``when`` (default: now)."""
    when = time.time() if when is None else when
    seconds = int(when)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int((when - seconds) * 1000):03d} {level:5} {prefix}{text}"
