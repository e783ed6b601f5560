"""Router: rendered crossbar config (pure) and a real crossbar's lifecycle."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import time
import warnings

import pytest

from ocs_core.router import process as router_mod
from ocs_core.supervisor.process_group import group_members
from ocs_core.router.process import Router, RouterError, port_in_use, probe
from ocs_core.router.config import (AGENT_ROLE, CONTROLLER_ROLE, MAX_MESSAGE_SIZE, hub_endpoint,
                                    render_config)
from ocs_core.site.config import HubConfig, SiteConfigError
from ocs_core.testing import free_port, http_call
from ci import need_module

HUB = HubConfig(wamp_server="ws://127.0.0.1:8001/ws", wamp_http="http://127.0.0.1:8001/call",
                wamp_realm="test_realm", address_root="observatory")


def hub_on(port: int, host: str = "127.0.0.1") -> HubConfig:
    return dataclasses.replace(HUB, wamp_server=f"ws://{host}:{port}/ws",
                               wamp_http=f"http://{host}:{port}/call")


# --- rendered config ------------------------------------------------------------------------

def roles(config):
    realm = config["workers"][0]["realms"][0]
    return realm, {r["name"]: r["permissions"] for r in realm["roles"]}


def test_config_realm_and_roles():
    config = render_config(HUB)
    assert config["version"] == 2 and len(config["workers"]) == 1
    assert config["workers"][0]["type"] == "router"
    realm, perms = roles(config)
    assert realm["name"] == "test_realm"
    assert set(perms) == {AGENT_ROLE, CONTROLLER_ROLE}
    for role in perms.values():
        assert len(role) == 1
        assert role[0]["uri"] == "observatory." and role[0]["match"] == "prefix"
        assert role[0]["disclose"] == {"caller": False, "publisher": False}
    assert perms[AGENT_ROLE][0]["allow"] == {"call": True, "register": True, "publish": True, "subscribe": True}
    # clients (the HTTP bridge's role) must never register: they cannot pose as agents
    assert perms[CONTROLLER_ROLE][0]["allow"] == {"call": True, "register": False, "publish": True,
                                                  "subscribe": True}


def test_config_transport_paths_and_options():
    transport = render_config(HUB)["workers"][0]["transports"][0]
    assert transport["type"] == "web"
    assert transport["endpoint"] == {"type": "tcp", "port": 8001, "interface": "127.0.0.1"}
    paths = transport["paths"]
    assert set(paths) == {"ws", "call", "info"}
    ws = paths["ws"]
    assert ws["type"] == "websocket"
    assert ws["auth"] == {"anonymous": {"type": "static", "role": AGENT_ROLE}}
    opts = ws["options"]
    assert (opts["open_handshake_timeout"], opts["close_handshake_timeout"]) == (2500, 1000)
    assert (opts["auto_ping_interval"], opts["auto_ping_timeout"]) == (10000, 5000)
    assert opts["auto_ping_size"] >= 12  # crossbar 26 rejects smaller
    assert opts["max_message_size"] == MAX_MESSAGE_SIZE > 0
    assert paths["call"]["type"] == "caller" and paths["call"]["role"] == CONTROLLER_ROLE
    assert paths["call"]["realm"] == "test_realm"
    assert 0 < paths["call"]["options"]["post_body_limit"] <= 2 ** 20
    assert paths["info"] == {"type": "nodeinfo"}
    json.dumps(render_config(HUB))  # JSON-ready


def test_paths_and_port_come_from_the_hub_urls():
    hub = dataclasses.replace(HUB, wamp_server="ws://localhost:18001/wamp",
                              wamp_http="http://localhost:18001/rpc/")
    ep = hub_endpoint(hub)
    assert (ep.interface, ep.port, ep.ws_path, ep.http_path) == ("127.0.0.1", 18001, "wamp", "rpc")
    assert set(render_config(hub)["workers"][0]["transports"][0]["paths"]) == {"wamp", "rpc", "info"}


@pytest.mark.parametrize("host, interface", [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"),
                                             ("0.0.0.0", "0.0.0.0"), ("10.1.2.3", "10.1.2.3")])
def test_bind_address_follows_the_hub(host, interface):
    endpoint = render_config(hub_on(8001, host))["workers"][0]["transports"][0]["endpoint"]
    assert endpoint["interface"] == interface and "version" not in endpoint


def test_ipv6_interface():
    endpoint = render_config(hub_on(8001, "[::1]"))["workers"][0]["transports"][0]["endpoint"]
    assert endpoint["interface"] == "::1" and endpoint["version"] == 6


@pytest.mark.parametrize("server, http, fragment", [
    ("ws://127.0.0.1:8001/ws", "http://127.0.0.1:8002/call", "must use the same port"),
    ("ws://127.0.0.1:8001/a/b", "http://127.0.0.1:8001/call", "one-level paths only"),
    ("ws://127.0.0.1:8001/x", "http://127.0.0.1:8001/x", "must differ"),
    ("ws://127.0.0.1:8001", "http://127.0.0.1:8001/call", r"needs a path in 'ws://127.0.0.1:8001', such as /ws"),
    ("ws://127.0.0.1:8001/ws", "http://127.0.0.1:8001/", "such as /call"),
])
def test_inconsistent_hub_urls_are_refused(server, http, fragment):
    with pytest.raises(SiteConfigError, match=fragment):
        hub_endpoint(dataclasses.replace(HUB, wamp_server=server, wamp_http=http))


def test_worker_python_option():
    config = render_config(HUB, worker_python="/x/python-worker")
    assert config["workers"][0]["options"] == {"python": "/x/python-worker"}


# --- process handling without crossbar ------------------------------------------------------

class FakeCommandRouter(Router):
    def __init__(self, *args, argv, **kwargs):
        super().__init__(*args, **kwargs)
        self.argv = argv

    def command(self):
        return self.argv

    def wait_ready(self, timeout=20):
        self.started_pid = self._proc.pid
        if self.skip_wait:
            return None
        return super().wait_ready(timeout)

    skip_wait = False


def test_missing_crossbar_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(router_mod, "crossbar_installed", lambda: False)
    with pytest.raises(RouterError, match=r"crossbar is not installed: pip install 'ocs-core\[router\]'"):
        Router(hub_on(free_port()), tmp_path).start()


def test_early_exit_reports_the_log_tail(tmp_path):
    r = FakeCommandRouter(hub_on(free_port()), tmp_path,
                          argv=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"])
    with pytest.raises(RouterError, match=r"crossbar exited with status 3 during startup; log .*boom: bad config"):
        r.start(timeout=10)
    assert not r.is_running() and not r.pid_path.exists()


def test_not_ready_in_time_stops_the_whole_group(tmp_path):
    r = FakeCommandRouter(hub_on(free_port()), tmp_path,
                          argv=["sh", "-c", "sleep 60 & sleep 60; wait"])
    with pytest.raises(RouterError, match=r"router not ready within 0.5 s"):
        r.start(timeout=0.5)
    assert not r.is_running() and r.started_pid > 0
    assert group_members(r.started_pid) == []


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path):
    r = FakeCommandRouter(hub_on(free_port()), tmp_path,
                          argv=["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"])
    r.skip_wait = True
    pid = r.start()
    assert r.is_running() and r.pid == pid
    # the shell and its sleeps form one group (members appear once the shell has forked)
    assert r.stop(timeout=0.5) is True
    assert group_members(pid) == [] and not r.is_running()
    assert r.stop() is False


def test_stop_kills_workers_left_by_a_dead_controller(tmp_path):
    r = FakeCommandRouter(hub_on(free_port()), tmp_path, argv=["sh", "-c", "sleep 60 & sleep 60 & wait"])
    r.skip_wait = True
    pid = r.start()
    deadline = time.monotonic() + 5
    while len(group_members(pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)  # the "controller" dies, its children stay in the group
    r._proc.wait()
    assert len(group_members(pid)) == 2
    fresh = Router(hub_on(r.port), tmp_path)  # another command, finding the pid file
    assert not fresh.is_running()
    assert fresh.stop() is True and group_members(pid) == []
    assert fresh.stop() is False


def test_port_in_use_detection():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", free_port())


def test_second_start_on_a_taken_port_fails_clearly(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RouterError, match=rf"port {port} on 127.0.0.1 is already in use"):
            Router(hub_on(port), tmp_path).start()


# --- a real crossbar ------------------------------------------------------------------------

def test_session_router_fixture_answers(router):
    assert router.is_running()
    reply = router.call(f"{router.address_root}._crossbar_check_")
    assert reply["error"] == "wamp.error.no_such_procedure"
    assert router.ws_url == f"ws://127.0.0.1:{router.port}/ws"
    assert router.http_url == f"http://127.0.0.1:{router.port}/call"


def test_real_router_lifecycle(tmp_path):
    port = free_port()
    r = Router(hub_on(port), tmp_path / "node")
    pid = r.start(timeout=30)
    try:
        assert r.is_running() and r.pid == pid
        assert json.loads(r.pid_path.read_text())["pid"] == pid
        assert r.status()["ready"] is True
        assert probe(r.http_url, "observatory") == "wamp.error.no_such_procedure"
        other = http_call(r.http_url, "elsewhere.proc")
        assert other["error"] == "wamp.error.not_authorized"
        assert "controller" in other["args"][0]
        # a second router on the same port: clear message, first one untouched
        with pytest.raises(RouterError, match=rf"port {port} on 127.0.0.1 is already in use"):
            Router(hub_on(port), tmp_path / "other").start()
        # the same node directory, found through the pid file by another object
        twin = Router(hub_on(port), tmp_path / "node")
        assert twin.is_running() and twin.pid == pid
        with pytest.raises(RouterError, match="a router is already running from"):
            twin.start()
        assert len(group_members(pid)) >= 2  # controller and router worker
        assert twin.stop() is True  # through the pid file, as `ocs-core router stop` does
        assert group_members(pid) == []
    finally:
        assert r.stop() is False  # already stopped by the twin: nothing left to do
    assert group_members(pid) == []
    assert not r.is_running() and not r.pid_path.exists()
    assert not port_in_use("127.0.0.1", port)
    assert r.stop() is False  # idempotent
    log = r.log_path.read_text()
    for bad in ("Traceback", "ARRAY_API", "Warning", "ERROR"):
        assert bad not in log, log


def test_restart_on_the_same_port_after_a_client_was_connected(tmp_path):
    """The outage pattern: stop the router under a connected agent, start it again."""
    from support_agents import subprocess_env

    from ocs_core.testing import AgentProcess, running_router

    with running_router(tmp_path, instances=[{"agent-class": "MiniAgent", "instance-id": "m1"}]) as fixture:
        agent = AgentProcess("m1", fixture.site_file, env=subprocess_env())
        try:
            agent.wait_registered(timeout=20)
            assert fixture.stop() is True
            assert agent.proc.wait(10) == 0  # this test agent exits when its router goes
            fixture.start(timeout=30)  # same port, right away
            assert fixture.call("observatory._crossbar_check_")["error"] == "wamp.error.no_such_procedure"
        finally:
            agent.terminate()
    assert not fixture.is_running()


@pytest.mark.parametrize("hub", [HUB, hub_on(18001, "[::1]"), hub_on(18001, "0.0.0.0"),
                                 dataclasses.replace(HUB, wamp_server="ws://127.0.0.1:8001/wamp",
                                                     wamp_http="http://127.0.0.1:8001/rpc")])
def test_rendered_config_passes_crossbars_own_check(hub):
    need_module("crossbar")
    with warnings.catch_warnings():  # crossbar's imports raise DeprecationWarnings of its own
        warnings.simplefilter("ignore", DeprecationWarning)
        from crossbar.common.checkconfig import InvalidConfigException
        from crossbar.personality import Personality

    config = render_config(hub, worker_python=sys.executable)
    Personality.check_config(Personality, config)
    ws_path = hub_endpoint(hub).ws_path
    config["workers"][0]["transports"][0]["paths"][ws_path]["options"]["auto_ping_size"] = 4
    with pytest.raises(InvalidConfigException, match="auto_ping_size"):  # ocs's own value
        Personality.check_config(Personality, config)
