"""``make demo PORT=9001``: the demo's site file with its ports moved to PORT, PORT+1, PORT+2, ...

The router's port (in the hub's URLs) becomes PORT; every other port the site file names after
``--port`` or ``--tcp-port`` gets the next free number in order of first appearance (an
instrument server and its agent share one). Text in, text out: comments are kept.
"""
from __future__ import annotations

import re

_HUB = re.compile(r"((?:ws|http)s?://[^:/\s]+:)(\d+)")
_AGENT = re.compile(r"(--(?:tcp-)?port,\s*)(\d+)")


def with_ports(text: str, base: int) -> str:
    """``text`` (a site file) with the router on ``base`` and the agents' ports after it."""
    if not 0 < base < 65536:
        raise ValueError(f"PORT must be within 1..65535, got {base}")
    text = _HUB.sub(lambda m: f"{m.group(1)}{base}", text)
    moved: dict[str, int] = {}

    def agent_port(m: re.Match) -> str:
        if m.group(2) not in moved:
            moved[m.group(2)] = base + 1 + len(moved)
            if moved[m.group(2)] > 65535:
                raise ValueError(f"PORT {base} leaves no room for {len(moved)} more port(s)")
        return f"{m.group(1)}{moved[m.group(2)]}"
    return _AGENT.sub(agent_port, text)
