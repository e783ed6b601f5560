"""What a site supervisor runs, and how to tell that it is up (no processes started here).

:func:`plan_site` resolves a host's instances from the site file into a :class:`SitePlan`;
:func:`instance_ready` and :func:`router_answers` probe through the router's HTTP bridge (or an
entry point's own ``ready_probe``); the pid and state files are JSON, written atomically.
"""
from __future__ import annotations

import functools
import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ocs_core.framing.http_signing import signed_params
from ocs_core.router.process import Router, hub_signing, probe
from ocs_core.site.config import HubConfig, SiteConfigError, load_site_config
from ocs_core.site.discovery import find_agent_entry
from ocs_core.supervisor.process_group import same_process

__all__ = ["HOST_MANAGER_CLASSES", "SitePlan", "plan_site", "read_json", "write_json", "supervisor_info", "agent_registered",
           "instance_ready", "is_wamp_agent", "readiness_probe", "router_answers", "child_env", "PID_FILE", "STATE_FILE",
           "SUPERVISOR_LOG", "DEFAULT_RUN_DIR"]

DEFAULT_RUN_DIR = "run"
#: Agent classes that are host managers: ``ocs-core up`` leaves a host's other instances to them.
HOST_MANAGER_CLASSES = ("HostManager", "OcsCoreHostManager")
PID_FILE = "supervisor.pid"
STATE_FILE = "site-state.json"
SUPERVISOR_LOG = "supervisor.log"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent.parent)


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
    #: instances of the host not run, with why (docker-managed ones)
    skipped: dict[str, str] = field(default_factory=dict)
    #: the host's ocs keys that are read but not acted on (HostConfig.unused_settings)
    notes: list[str] = field(default_factory=list)
    #: instances left to a host manager the plan runs: instance-id -> the manager's instance-id
    managed: dict[str, str] = field(default_factory=dict)

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

    Without ``instances``, every instance whose ``manage`` is ``host/up`` runs, except that when
    one of them is a host manager (:data:`HOST_MANAGER_CLASSES`), it alone runs and the host's
    other instances are its own (``managed``); named instances run whatever their ``manage``
    (except docker ones). The log directory is the host's ``log-dir`` (relative to the current
    directory), else ``<run-dir>/logs``.

    Raises:
        SiteConfigError: bad site file, unknown host or instance-id.
    """
    path = Path(site_file).resolve()
    cfg = load_site_config(path)
    host = cfg.host(site_host)
    managed: dict[str, str] = {}
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
        skipped = {}
    else:
        chosen = [i.instance_id for i in host.agent_instances if i.manage == "host/up"]
        skipped = {i.instance_id: f"manage: {i.manage}" for i in host.agent_instances
                   if i.manage == "docker/up"}
        managers = [i for i in chosen if host.instance(i).agent_class in HOST_MANAGER_CLASSES]
        if managers:
            managed = {i: managers[0] for i in chosen if i not in managers}
            chosen = managers
    run = Path(run_dir).resolve()
    log_dir = Path(host.log_dir).resolve() if host.log_dir else run / "logs"
    classes = {i.instance_id: i.agent_class for i in host.agent_instances}
    arguments = {i.instance_id: list(i.arguments) for i in host.agent_instances}
    known = chosen + list(managed)
    return SitePlan(path, host.name, cfg.hub_for(host), run, log_dir, chosen,
                    {k: classes[k] for k in known}, with_router, {k: arguments[k] for k in known},
                    skipped, host.unused_settings(), managed)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_json(path: Path, doc: dict[str, Any]) -> None:
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


def readiness_probe(agent_class: str) -> Callable[[list[str]], bool] | None:
    """A plain server's ``main.ready_probe(arguments)`` (blocking), or None for WAMP agents."""
    return _ready_probe(agent_class)


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


def bridge_url(hub: HubConfig, body: bytes) -> str:
    """The HTTP bridge's URL for one request of ``body``: signed when the hub names an ``http_key``."""
    signing = hub_signing(hub)
    if signing is None:
        return hub.wamp_http
    return f"{hub.wamp_http}?{urllib.parse.urlencode(signed_params(*signing, body, 1))}"


def agent_registered(hub: HubConfig, address: str, timeout: float = 1.0) -> bool:
    """Whether ``address`` answers ``get_agent_class`` through the HTTP bridge."""
    body = json.dumps({"procedure": address, "args": ["get_agent_class"]}).encode()
    request = urllib.request.Request(bridge_url(hub, body), data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            answer = json.loads(reply.read(65536) or b"null")
    except (OSError, ValueError):  # HTTPError (a refused call) is an OSError
        return False
    return isinstance(answer, dict) and "error" not in answer


def child_env() -> dict[str, str]:
    """This environment with the ocs-core checkout first on PYTHONPATH (for child processes)."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _PROJECT_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([_PROJECT_ROOT] + paths)
    return env


def router_answers(hub: HubConfig) -> bool:
    """Whether a router answers the HTTP bridge probe for ``hub`` right now."""
    return probe(hub.wamp_http, hub.address_root, timeout=1.0,
                 signing=hub_signing(hub)) == "wamp.error.no_such_procedure"
