"""ocs 0.12.1's launchers start ocs-core's agents (the ``ocs.plugins`` entry point ``ocs-core``).

* ``ocs-agent-cli`` starts our FakeDataAgent under its registry name ``OcsCoreFakeDataAgent``;
* ocs's own HostManager starts it (and stops it when its ``manager`` Process stops);
* ``ocs-core agent`` runs one of ocs's plugins (BarebonesAgent) through ``ocs-agent-cli``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ocs_core.testing import project_env, write_site_config

pytestmark = pytest.mark.interop


def _ocs_env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _spawn(cmd, log_path, env=None):
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env or _ocs_env(), start_new_session=True)
    finally:
        log.close()


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({proc.returncode}): "
                                 f"{log.read_text()[-2000:] if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: "
                                 f"{log.read_text()[-2000:] if log else ''}")
        time.sleep(0.1)


def agent_class_of(router, instance_id):
    reply = router.call(router.address(instance_id), "get_agent_class", timeout=2)
    return None if "error" in reply else (reply.get("args") or [None])[0]


def test_ocs_agent_cli_starts_our_fake_data_agent(router):
    router.add_instance("OcsCoreFakeDataAgent", "via-ocs-cli", ["--mode", "idle"])
    log = router.directory / "via-ocs-cli.out"
    proc = _spawn([sys.executable, "-m", "ocs.agent_cli", "--instance-id", "via-ocs-cli",
                   "--site-file", str(router.site_file), "--site-host", "localhost"], log)
    try:
        wait_for(lambda: agent_class_of(router, "via-ocs-cli") == "FakeDataAgent", 30,
                 "our agent, started by ocs-agent-cli", proc, log)
        assert "Installed OCS Plugins" in log.read_text() and "ocs-core" in log.read_text()
    finally:
        _stop(proc)


def test_ocs_host_manager_starts_and_stops_our_agent(router, tmp_path):
    # a site file of its own (the session's router): ocs's HostManager runs every instance listed
    site = write_site_config(tmp_path, router.port, [
        {"agent-class": "OcsCoreFakeDataAgent", "instance-id": "hm-child", "arguments": ["--mode", "idle"]},
        {"agent-class": "HostManager", "instance-id": "ocs-hm", "arguments": ["--initial-state", "up"]},
    ], log_dir=str(tmp_path / "logs"))
    log = tmp_path / "ocs-hm.out"
    proc = _spawn([sys.executable, "-m", "ocs.agents.host_manager.agent", "--instance-id", "ocs-hm",
                   "--site-file", str(site), "--site-host", "localhost"], log)
    try:
        wait_for(lambda: agent_class_of(router, "hm-child") == "FakeDataAgent", 45,
                 "our agent, started by ocs's HostManager", proc, log)
        status = router.call(router.address("ocs-hm") + ".ops", "status", "manager", {}, timeout=5)
        children = {c["instance_id"]: c for c in status["args"][0][2]["data"]["child_states"]}
        assert children["hm-child"]["agent_class"] == "OcsCoreFakeDataAgent"
        assert children["hm-child"]["operable"] is True
        router.call(router.address("ocs-hm") + ".ops", "stop", "manager", {}, timeout=5)
        wait_for(lambda: agent_class_of(router, "hm-child") is None, 30,
                 "our agent stopped with the manager Process", proc, log)
    finally:
        _stop(proc)


def test_ocs_core_agent_runs_an_ocs_plugin_through_ocs_agent_cli(router):
    router.add_instance("BarebonesAgent", "ocs-bare")
    log = router.directory / "ocs-bare.out"
    proc = _spawn([sys.executable, "-m", "ocs_core.cli", "agent", "ocs-bare",
                   "--site-file", str(router.site_file), "--crossbar-timeout", "20"], log,
                  env=project_env())
    try:
        wait_for(lambda: agent_class_of(router, "ocs-bare") == "BarebonesAgent", 45,
                 "ocs's BarebonesAgent through ocs-core agent", proc, log)
        assert "Renaming this process to" in log.read_text()  # ocs-agent-cli's own line
    finally:
        _stop(proc)


def test_an_unmodified_ocs_site_file_runs_under_ocs_core_up(tmp_path):
    """agent-paths, crossbar config-dir, a docker instance, ocs's own agents: up runs what it can."""
    from pathlib import Path
    from ocs_core.testing import free_port, http_call

    port = free_port()
    text = (Path(__file__).parent / "data" / "ocs-site.yaml").read_text().replace("8001", str(port))
    (tmp_path / "default.yaml").write_text(text)
    env = project_env({"OCS_CONFIG_DIR": str(tmp_path)})  # ocs's way: no --site-file needed

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "ocs_core.cli", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    try:
        up = cli("up", "--timeout", "90")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "skipped: faker-in-docker (manage: docker/up): docker-managed" in up.stdout
        assert "note: host 'localhost': agent-paths" in up.stdout and "crossbar config-dir" in up.stdout
        for iid in ("registry", "barebones1", "faker1"):
            assert f"  {iid}: callable, pid " in up.stdout
        http = f"http://127.0.0.1:{port}/call"
        classes = {iid: http_call(http, f"observatory.{iid}", "get_agent_class", timeout=5)["args"][0]
                   for iid in ("registry", "barebones1", "faker1")}
        assert classes == {"registry": "RegistryAgent", "barebones1": "BarebonesAgent",
                           "faker1": "FakeDataAgent"}
        assert "hm-localhost" not in up.stdout and "influxagent" not in up.stdout  # ignore, down
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
