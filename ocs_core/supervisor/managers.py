"""Talking to a site's host managers through the router's HTTP bridge (blocking; for the CLI).

A host manager is an instance whose agent-class is one of :data:`HOST_MANAGER_CLASSES` (ocs-core's
``HostManager``, or ocs's, which speaks the same ops): its ``manager`` Process session lists the
host's instances (``child_states``) and its ``update`` Task sets their target states.
"""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from ocs_core.site.config import HostConfig, HubConfig, SiteConfig
from ocs_core.supervisor.plan import HOST_MANAGER_CLASSES, bridge_url

__all__ = ["ManagerView", "host_manager_of", "find_instance_host", "manager_view", "request_update",
           "call_bridge"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_MAX_REPLY = 4 * 1024 * 1024


def call_bridge(hub: HubConfig, procedure: str, *args: Any, http_timeout: float = 5.0, **kwargs: Any) -> Any:
    """One call through the HTTP bridge; the result, or raise ``ConnectionError`` with the reason."""
    body = json.dumps({"procedure": procedure, "args": list(args), "kwargs": kwargs}).encode()
    request = urllib.request.Request(bridge_url(hub, body), data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=http_timeout) as reply:
            doc = json.loads(reply.read(_MAX_REPLY) or b"null")
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read(_MAX_REPLY) or b"null")
        except ValueError:
            doc = None
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"the router at {hub.wamp_http} did not answer: {exc}") from None
    if not isinstance(doc, dict) or "error" in doc:
        error = doc.get("error") if isinstance(doc, dict) else "no reply"
        raise ConnectionError(f"{procedure}: {error}")
    args_ = doc.get("args") or [None]
    return args_[0]


def host_manager_of(host: HostConfig) -> str | None:
    """The instance-id of the host's host manager (the first, when several), or None."""
    for inst in host.agent_instances:
        if inst.agent_class in HOST_MANAGER_CLASSES:
            return inst.instance_id
    return None


def find_instance_host(cfg: SiteConfig, instance_id: str) -> HostConfig | None:
    """The host entry that lists ``instance_id``."""
    for host in cfg.hosts.values():
        if host.instance(instance_id) is not None:
            return host
    return None


@dataclass
class ManagerView:
    """What a host manager says: whether it answers, whether ``manager`` runs, its children."""

    instance_id: str
    answers: bool
    running: bool
    child_states: list[dict[str, Any]]
    error: str | None = None


def manager_view(hub: HubConfig, instance_id: str, timeout: float = 5.0) -> ManagerView:
    """Ask a host manager for its ``manager`` session."""
    address = f"{hub.address_root}.{instance_id}"
    try:
        reply = call_bridge(hub, f"{address}.ops", "status", "manager", {}, http_timeout=timeout)
    except ConnectionError as exc:
        return ManagerView(instance_id, False, False, [], str(exc))
    session = reply[2] if isinstance(reply, list) and len(reply) == 3 and isinstance(reply[2], dict) else {}
    running = session.get("status") == "running"
    children = (session.get("data") or {}).get("child_states") or [] if running else []
    return ManagerView(instance_id, True, running, [c for c in children if isinstance(c, dict)])


def request_update(hub: HubConfig, instance_id: str, requests: list[list[str]],
                   timeout: float = 10.0) -> tuple[bool, str]:
    """Start the manager's ``update`` Task with ``requests`` (and a site-file reload) and wait
    for it; returns (ok, message)."""
    address = f"{hub.address_root}.{instance_id}.ops"
    try:
        started = call_bridge(hub, address, "start", "update",
                              {"requests": requests, "reload_config": True}, http_timeout=timeout)
        if not isinstance(started, list) or started[0] != 0:
            return False, f"{instance_id}: update refused: {started[1] if isinstance(started, list) else started}"
        done = call_bridge(hub, address, "wait", "update", {}, http_timeout=timeout + 5, timeout=timeout)
    except ConnectionError as exc:
        return False, f"{instance_id}: {exc}"
    session = done[2] if isinstance(done, list) and len(done) == 3 else {}
    if not session.get("success"):
        messages = [m[1] for m in session.get("messages") or [] if isinstance(m, list) and len(m) == 2]
        return False, f"{instance_id}: update failed: {'; '.join(messages[-3:]) or done}"
    return True, f"{instance_id}: {session.get('messages', [[0, 'done']])[-1][1]}"
