"""Test helpers: a real crossbar router on a free loopback port, agents as real subprocesses.

For ocs-core's own tests and for authors of third-party agents::

    from ocs_core.testing import running_router, AgentProcess

    with running_router(tmp_path, instances=[{"agent-class": "FakeDataAgent",
                                              "instance-id": "faker1"}]) as router:
        with AgentProcess("faker1", router.site_file) as agent:
            agent.wait_registered()
            reply = router.call("observatory.faker1", "get_agent_class")

pytest fixtures built on these live in :mod:`ocs_core.pytest_plugin`. Blocking code (no
Twisted); everything binds to 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from ocs_core.framing.http_signing import new_secret, signed_params
from ocs_core.router.process import Router, hub_signing
from ocs_core.runtime.cryptosign import new_private_key, public_key
from ocs_core.site.config import HubConfig, InstanceConfig, load_site_config
from ocs_core.site.credentials import AgentKey, Credentials, load_credentials, save_credentials

__all__ = ["free_port", "wait_listening", "write_site_config", "http_call", "RouterFixture",
           "running_router", "AgentProcess", "project_env"]

_POLL = 0.05
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0, *, alive: Any = None, host: str = "127.0.0.1") -> None:
    """Poll until something accepts TCP connections on ``host:port``.

    Args:
        alive: the process that should open the port (an :class:`AgentProcess` or a
            ``subprocess.Popen``): its exit ends the wait early, with its output when it has one.

    Raises:
        RuntimeError: the process exited, or nothing listens after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            pass
        output = getattr(alive, "log_text", lambda: "")
        running = alive is None or (alive.is_running() if hasattr(alive, "is_running") else alive.poll() is None)
        if not running:
            raise RuntimeError(f"the process that should listen on {port} exited: {output()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s: {output()[-2000:]}")
        time.sleep(_POLL)


def _instance_doc(inst: InstanceConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(inst, InstanceConfig):
        return {"agent-class": inst.agent_class, "instance-id": inst.instance_id,
                "arguments": list(inst.arguments), "manage": inst.manage}
    return dict(inst)


def write_site_config(tmp_path: str | os.PathLike, port: int,
                      instances: Iterable[InstanceConfig | Mapping[str, Any]] = (), *,
                      realm: str = "test_realm", address_root: str = "observatory",
                      host: str = "localhost", log_dir: str | None = None,
                      name: str = "site-config.yaml", hub_extra: Mapping[str, Any] | None = None) -> Path:
    """Write a site file for a loopback router on ``port``; return its path.

    Args:
        tmp_path: directory for the file.
        port: the router's port.
        instances: agent instances, as site-file mappings (``{"agent-class": ...,
            "instance-id": ..., "arguments": [...]}``) or :class:`InstanceConfig`.
        realm, address_root: the hub's realm and URI root.
        host: the host entry the instances go under.
        log_dir: the host's ``log-dir``.
        name: the file name.
        hub_extra: more hub keys (``auth``, ``credentials``, ``http_key``, ``anonymous``).
    """
    host_doc: dict[str, Any] = {"agent-instances": [_instance_doc(i) for i in instances]}
    if log_dir is not None:
        host_doc["log-dir"] = str(log_dir)
    doc = {
        "hub": {"wamp_server": f"ws://127.0.0.1:{port}/ws",
                "wamp_http": f"http://127.0.0.1:{port}/call",
                "wamp_realm": realm, "address_root": address_root, **(hub_extra or {})},
        "hosts": {host: host_doc},
    }
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    os.replace(partial, path)  # readers (agents starting up) never see half a file
    return path


def http_call(http_url: str, procedure: str, *args: Any, timeout: float = 10.0,
              signing: tuple[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """POST one call to crossbar's HTTP caller bridge; return the decoded reply body.

    The body is ``{"args": [result]}`` on success, ``{"error": uri, "args": [...], ...}``
    when the callee or the router refused. ``signing`` is ``(key, secret)`` for a bridge
    that requires signed requests.
    """
    body = json.dumps({"procedure": procedure, "args": list(args), "kwargs": kwargs}).encode()
    if signing is not None:
        http_url = f"{http_url}?{urllib.parse.urlencode(signed_params(*signing, body, 1))}"
    request = urllib.request.Request(http_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def project_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with the ocs-core checkout on PYTHONPATH (for subprocesses)."""
    env = dict(os.environ)
    env.update(extra or {})
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PROJECT_ROOT not in paths:
        env["PYTHONPATH"] = os.pathsep.join(paths + [_PROJECT_ROOT])
    return env


class RouterFixture:
    """A site file plus a real router for it, in one directory.

    Attributes:
        directory: where the site file, crossbar's node directory and logs live.
        port: the router's port. ``hub``: the site's :class:`HubConfig`. ``site_file``: path.
        http_url, ws_url: the router's HTTP bridge and websocket URLs.
        router: the :class:`~ocs_core.router.process.Router`.

    With ``auth=True`` the site is authenticated (``hub.auth: cryptosign``, a credentials file
    in ``directory`` with a key for every instance, a signed HTTP bridge unless
    ``sign_http=False``); instances added later need a router restart (:meth:`restart`).
    """

    def __init__(self, directory: str | os.PathLike, port: int | None = None,
                 instances: Iterable[InstanceConfig | Mapping[str, Any]] = (), *,
                 realm: str = "test_realm", address_root: str = "observatory",
                 loglevel: str = "warn", auth: bool = False, sign_http: bool = True,
                 anonymous: str = "controller"):
        self.directory = Path(directory)
        self.port = port or free_port()
        self._instances = [_instance_doc(i) for i in instances]
        self._realm, self._root = realm, address_root
        self.log_dir = self.directory / "logs"
        self._hub_extra: dict[str, Any] = {}
        if auth:
            self._hub_extra = {"auth": "cryptosign", "credentials": "credentials.yaml",
                               "anonymous": anonymous}
            if sign_http:
                self._hub_extra["http_key"] = "test-http"
            self.credentials_path = self.directory / "credentials.yaml"
            creds = Credentials(http={"test-http": new_secret()} if sign_http else {})
            save_credentials(creds, self.credentials_path)
            for inst in self._instances:
                self._add_key(inst["instance-id"])
        self.site_file = self._write()
        self.hub: HubConfig = load_site_config(self.site_file).hub
        self.router = Router(self.hub, self.directory / "router", loglevel=loglevel)
        self.http_url, self.ws_url = self.router.http_url, self.router.ws_url

    def _write(self) -> Path:
        return write_site_config(self.directory, self.port, self._instances, realm=self._realm,
                                 address_root=self._root, log_dir=str(self.log_dir),
                                 hub_extra=self._hub_extra)

    def _add_key(self, instance_id: str) -> None:
        creds = load_credentials(self.credentials_path)
        if instance_id not in creds.agents:
            private = new_private_key()
            creds.agents[instance_id] = AgentKey(public_key(private), private)
            save_credentials(creds, self.credentials_path)

    @property
    def signing(self) -> tuple[str, str] | None:
        """``(key, secret)`` of a signed HTTP bridge, else None."""
        return hub_signing(self.hub)

    def restart(self, timeout: float = 30) -> int:
        """Stop and start the router (an authenticated router reads the keys when it starts)."""
        self.stop()
        return self.start(timeout=timeout)

    @property
    def address_root(self) -> str:
        """The hub's URI root."""
        return self.hub.address_root

    @property
    def log_path(self) -> Path:
        """crossbar's log file."""
        return self.router.log_path

    def add_instance(self, agent_class: str, instance_id: str,
                     arguments: Iterable[Any] = (), **extra: Any) -> None:
        """Add (or replace) an agent instance in the site file."""
        doc = {"agent-class": agent_class, "instance-id": instance_id,
               "arguments": [str(a) for a in arguments], **extra}
        self._instances = [i for i in self._instances if i.get("instance-id") != instance_id] + [doc]
        if self._hub_extra:
            self._add_key(instance_id)
        self._write()

    def address(self, instance_id: str) -> str:
        """``<address_root>.<instance_id>``."""
        return f"{self.hub.address_root}.{instance_id}"

    def call(self, procedure: str, *args: Any, timeout: float = 10.0, **kwargs: Any) -> dict[str, Any]:
        """Call ``procedure`` through the HTTP bridge (see :func:`http_call`)."""
        return http_call(self.http_url, procedure, *args, timeout=timeout, signing=self.signing,
                         **kwargs)

    def start(self, timeout: float = 30) -> int:
        """Start (or restart, on the same port) the router; return its pid once ready."""
        return self.router.start(timeout=timeout)

    def stop(self, timeout: float = 5) -> bool:
        """Stop the router (idempotent)."""
        return self.router.stop(timeout=timeout)

    def is_running(self) -> bool:
        """Whether crossbar is alive."""
        return self.router.is_running()

    def agent(self, instance_id: str, args: Iterable[str] = (), **kwargs: Any) -> "AgentProcess":
        """An (unstarted) :class:`AgentProcess` for an instance of this site file."""
        kwargs.setdefault("log_path", self.log_dir / f"{instance_id}.out")
        return AgentProcess(instance_id, self.site_file, args=args, **kwargs)


@contextlib.contextmanager
def running_router(directory: str | os.PathLike, port: int | None = None,
                   instances: Iterable[InstanceConfig | Mapping[str, Any]] = (), *,
                   timeout: float = 30, **kwargs: Any) -> Iterator[RouterFixture]:
    """Run a real router on a free loopback port (or ``port``) for the ``with`` block."""
    fixture = RouterFixture(directory, port, instances, **kwargs)
    fixture.start(timeout=timeout)
    try:
        yield fixture
    finally:
        fixture.stop()


class AgentProcess:
    """``python -m ocs_core.cli agent INSTANCE_ID --site-file F [args]`` as a subprocess.

    Its stdout and stderr go to ``log_path`` (default ``<site dir>/<instance_id>.out``).

    Args:
        instance_id: the instance in the site file.
        site_file: the site file.
        args: extra agent arguments (they replace site-file arguments of the same flag).
        log_path: where the output goes.
        env: extra environment variables.
        start: launch now (default) or later with :meth:`start`.
    """

    def __init__(self, instance_id: str, site_file: str | os.PathLike, args: Iterable[str] = (), *,
                 log_path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                 start: bool = True):
        self.instance_id = instance_id
        self.site_file = Path(site_file).resolve()
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path) if log_path else self.site_file.parent / f"{instance_id}.out"
        self.env = dict(env or {})
        hub = load_site_config(self.site_file).hub
        self.http_url, self.address = hub.wamp_http, f"{hub.address_root}.{instance_id}"
        self._signing = hub_signing(hub)
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def command(self) -> list[str]:
        """The command line of the agent process."""
        return [sys.executable, "-m", "ocs_core.cli", "agent", self.instance_id,
                "--site-file", str(self.site_file)] + self.args

    def start(self) -> int:
        """Launch the agent; return its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            self.proc = subprocess.Popen(self.command(), stdin=devnull, stdout=log, stderr=log,
                                         env=project_env(self.env), start_new_session=True)
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        """The agent's pid once started."""
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.proc.poll() if self.proc else None

    def is_running(self) -> bool:
        """Whether the agent process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the agent printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def wait_registered(self, timeout: float = 10.0) -> float:
        """Poll the HTTP bridge until the agent answers ``get_agent_class``; return seconds taken.

        Raises:
            RuntimeError: the agent exited (with its output) or did not answer in time.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        last: Any = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.instance_id} exited with status "
                                   f"{self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                last = http_call(self.http_url, self.address, "get_agent_class", timeout=2.0,
                                 signing=self._signing)
                if "error" not in last:
                    return time.monotonic() - t0
            except (OSError, ValueError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise RuntimeError(f"agent {self.instance_id} not registered within {timeout:g} s "
                                   f"(last reply {last!r}); output: {self.log_text()[-2000:]}")
            time.sleep(_POLL)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the agent and reap it; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(5)

    def __enter__(self) -> "AgentProcess":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()
