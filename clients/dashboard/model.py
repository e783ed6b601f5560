"""What the dashboard knows of the site, from heartbeats and recorded feeds (pure: no Twisted).

:class:`SiteModel` keeps every agent seen on a heartbeat (class, host, op codes, heartbeat age,
alive or lost) and the recent samples of every recorded feed, and tells what changed so the
server can push it to the browsers.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LOST_AFTER", "AgentEntry", "FeedBuffer", "SiteModel", "decode_feed_event",
           "FeedEventError"]

#: An agent whose last heartbeat is older than this (seconds) is lost (ocs's Registry: 5 s).
LOST_AFTER = 5.0
#: Samples kept per field of a recorded feed.
DEFAULT_KEEP = 20_000
#: Fields kept per feed, and feeds kept per agent (bounds what a misbehaving agent can cost).
MAX_FIELDS = 64
MAX_FEEDS = 32
#: Agents kept (heartbeats from further addresses are ignored: a bound on what forged beats cost).
MAX_AGENTS = 1000


class FeedEventError(ValueError):
    """A feed event that is not ``[payload, feed_info]``."""


def decode_feed_event(args: tuple) -> tuple[Any, dict[str, Any]]:
    """``(payload, feed_info)`` of a feed event's positional args (``[[payload, feed_info]]``)."""
    if len(args) != 1 or not isinstance(args[0], (list, tuple)) or len(args[0]) != 2:
        raise FeedEventError("a feed event is one [payload, feed_info] pair")
    payload, info = args[0]
    if not isinstance(info, dict) or not isinstance(info.get("agent_address"), str):
        raise FeedEventError("feed_info has no agent_address")
    return payload, info


@dataclass
class AgentEntry:
    """One agent as seen on its heartbeat feed (and, once asked, its ``get_api``)."""

    address: str
    agent_class: str | None = None
    session_id: str | None = None
    last_beat: float = 0.0
    op_codes: dict[str, int] = field(default_factory=dict)
    lost: bool = False
    host: str | None = None
    pid: int | None = None
    feeds: list[str] = field(default_factory=list)

    def summary(self, now: float) -> dict[str, Any]:
        """The JSON the site view shows."""
        return {"address": self.address, "instance_id": self.address.rsplit(".", 1)[-1],
                "agent_class": self.agent_class, "host": self.host, "pid": self.pid,
                "op_codes": dict(self.op_codes), "lost": self.lost,
                "age": round(max(0.0, now - self.last_beat), 3), "last_beat": self.last_beat,
                "feeds": list(self.feeds)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class FeedBuffer:
    """The latest samples of one recorded feed: per field, times and values (numbers only)."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.keep = keep
        self.fields: dict[str, tuple[deque, deque]] = {}

    def add_payload(self, payload: Any) -> dict[str, tuple[list[float], list[float]]]:
        """Take a recorded feed's payload (``{block: {"data", "timestamps"}}``); return the new
        points per field. Non-numeric values and malformed blocks are skipped."""
        new: dict[str, tuple[list[float], list[float]]] = {}
        if not isinstance(payload, dict):
            return new
        for block in payload.values():
            if not isinstance(block, dict):
                continue
            times, data = block.get("timestamps"), block.get("data")
            if not isinstance(times, list) or not isinstance(data, dict):
                continue
            for name, values in data.items():
                if not isinstance(values, list) or len(values) != len(times):
                    continue
                if name not in self.fields:
                    if len(self.fields) >= MAX_FIELDS:
                        continue
                    self.fields[name] = (deque(maxlen=self.keep), deque(maxlen=self.keep))
                ts, vs = self.fields[name]
                out_t, out_v = new.setdefault(name, ([], []))
                for t, v in zip(times, values):
                    t, v = _number(t), _number(v)
                    if t is None or v is None:
                        continue
                    ts.append(t)
                    vs.append(v)
                    out_t.append(t)
                    out_v.append(v)
        return {k: v for k, v in new.items() if v[0]}

    def points(self, max_points: int | None = None) -> dict[str, tuple[list[float], list[float]]]:
        """Every kept point per field (the latest ``max_points`` of each, if given)."""
        out = {}
        for name, (ts, vs) in self.fields.items():
            t, v = list(ts), list(vs)
            if max_points is not None:
                t, v = t[-max_points:], v[-max_points:]
            out[name] = (t, v)
        return out


class SiteModel:
    """Every agent seen on a heartbeat, and the recorded feeds' recent samples.

    Args:
        address_root: the site's URI root (``observatory``).
        lost_after: heartbeat age (s) beyond which an agent is lost.
        keep: samples kept per feed field.
    """

    def __init__(self, address_root: str, lost_after: float = LOST_AFTER, keep: int = DEFAULT_KEEP) -> None:
        self.root = address_root
        self.lost_after = lost_after
        self.keep = keep
        self.agents: dict[str, AgentEntry] = {}
        self.feeds: dict[tuple[str, str], FeedBuffer] = {}

    def heartbeat(self, codes: Any, info: dict[str, Any], now: float) -> tuple[AgentEntry | None, bool, bool]:
        """Record a heartbeat; return ``(entry, changed, new_run)``: ``changed`` when the site
        view must be updated, ``new_run`` when the agent is new or restarted (ask its get_api).
        ``entry`` is None for a new agent beyond :data:`MAX_AGENTS` or a malformed address."""
        address = info["agent_address"]
        if address not in self.agents and (len(self.agents) >= MAX_AGENTS or len(address) > 255
                                           or not address.startswith(self.root + ".")):
            return None, False, False
        if not isinstance(codes, dict):  # very old agents publish 0 (no op codes)
            codes = {"old_agent_no_opcodes": 7}
        codes = {str(k): int(v) for k, v in codes.items() if isinstance(v, int)}
        entry = self.agents.get(address)
        session_id = info.get("session_id")
        new_run = entry is None or entry.session_id != session_id
        if entry is None:
            entry = self.agents[address] = AgentEntry(address)
        changed = new_run or entry.lost or entry.op_codes != codes
        entry.agent_class = info.get("agent_class") or entry.agent_class
        entry.session_id = session_id
        entry.op_codes = codes
        entry.last_beat = now
        entry.lost = False
        return entry, changed, new_run

    def set_api(self, address: str, api: Any) -> AgentEntry | None:
        """Fill host, pid and feed names from a ``get_api`` reply."""
        entry = self.agents.get(address)
        if entry is None or not isinstance(api, dict):
            return entry
        entry.host = api.get("instance_hostname")
        entry.pid = api.get("instance_pid")
        entry.agent_class = api.get("agent_class") or entry.agent_class
        entry.feeds = [f[0] for f in api.get("feeds") or [] if isinstance(f, list) and f]
        return entry

    def expire(self, now: float) -> list[AgentEntry]:
        """Mark agents whose heartbeat is older than ``lost_after``; return the newly lost."""
        lost = []
        for entry in self.agents.values():
            if not entry.lost and now - entry.last_beat > self.lost_after:
                entry.lost = True
                lost.append(entry)
        return lost

    def recorded(self, payload: Any, info: dict[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
        """Take a recorded feed event; return its new points per field."""
        key = (info["agent_address"], str(info.get("feed_name")))
        buf = self.feeds.get(key)
        if buf is None:
            if sum(1 for k in self.feeds if k[0] == key[0]) >= MAX_FEEDS:
                return {}
            buf = self.feeds[key] = FeedBuffer(self.keep)
        return buf.add_payload(payload)

    def find_class(self, agent_class: str) -> AgentEntry | None:
        """A live agent of ``agent_class`` (the first by address), or None."""
        for address in sorted(self.agents):
            entry = self.agents[address]
            if entry.agent_class == agent_class and not entry.lost:
                return entry
        return None

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """Every agent's summary, by address."""
        return [self.agents[a].summary(now) for a in sorted(self.agents)]
