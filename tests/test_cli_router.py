"""``ocs-core router start|status|stop`` as subprocesses, on a real crossbar."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ocs_core.supervisor.process_group import group_members
from ocs_core.router.process import Router, port_in_use, probe
from ocs_core.site.config import load_site_config
from ocs_core.testing import free_port, project_env, write_site_config


def ocs_core(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=project_env())


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocs-core: error: "), result.stderr
    assert fragment in lines[0]


@pytest.fixture
def site(tmp_path):
    port = free_port()
    return write_site_config(tmp_path, port), port


def test_background_start_status_stop(site, tmp_path):
    site_file, port = site
    node = ["--site-file", str(site_file), "--node-dir", str(tmp_path / "node")]
    status = ocs_core("router", "status", *node)
    assert status.returncode == 1 and "router not running" in status.stdout

    start = ocs_core("router", "start", *node)
    assert start.returncode == 0, start.stderr
    assert f"router ready: ws://127.0.0.1:{port}/ws and http://127.0.0.1:{port}/call" in start.stdout
    assert start.stderr.strip() == (  # open mode (no hub.auth): one warning line saying what it allows
        f"warning: router in open mode (hub.auth: none): anyone who reaches ws://127.0.0.1:{port}/ws "
        "can register, publish and call as any agent under 'observatory.' (set hub.auth: "
        "cryptosign, see docs/security.md)")
    try:
        # the command returned, the router stays (detached) and answers
        assert probe(f"http://127.0.0.1:{port}/call", "observatory") == "wamp.error.no_such_procedure"
        status = ocs_core("router", "status", *node)
        assert status.returncode == 0 and "router running: pid" in status.stdout
        again = ocs_core("router", "start", *node)
        assert_one_line_error(again, "a router is already running from")
        elsewhere = ocs_core("router", "start", "--site-file", str(site_file), "--node-dir", str(tmp_path / "n2"))
        assert_one_line_error(elsewhere, f"port {port} on 127.0.0.1 is already in use")
    finally:
        stop = ocs_core("router", "stop", *node)
    assert stop.returncode == 0 and f"router stopped (port {port})" in stop.stdout
    assert not port_in_use("127.0.0.1", port)
    stop = ocs_core("router", "stop", *node)
    assert stop.returncode == 0 and "no router running" in stop.stdout
    log = (tmp_path / "node" / "crossbar.log").read_text()
    assert "Traceback" not in log and "Warning" not in log, log


def test_foreground_runs_until_sigterm(site, tmp_path):
    site_file, port = site
    proc = subprocess.Popen([sys.executable, "-m", "ocs_core.cli", "router", "start", "--foreground",
                             "--site-file", str(site_file), "--node-dir", str(tmp_path / "node")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env())
    try:
        first = proc.stdout.readline()  # the command gives up by itself after --timeout
        assert first.startswith("router ready"), (first, proc.stderr.read())
        assert probe(f"http://127.0.0.1:{port}/call", "observatory") == "wamp.error.no_such_procedure"
        pid = int((tmp_path / "node" / "router.pid").read_text().split('"pid": ')[1].split(",")[0])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Router(load_site_config(site_file).hub, tmp_path / "node").stop()  # never leave it behind
    assert proc.returncode == 0, err
    assert "router stopped" in out
    assert err.splitlines() == [next(l for l in err.splitlines() if l.startswith("warning: router in open mode"))]
    assert group_members(pid) == [] and not port_in_use("127.0.0.1", port)


def test_user_errors_are_one_line(tmp_path):
    assert_one_line_error(ocs_core("router", "status", "--site-file", str(tmp_path / "missing.yaml")),
                          "missing.yaml: site file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hub: {wamp_server: 'ws://127.0.0.1:1/ws', wamp_realm: r}\nhosts: {}\n")
    assert_one_line_error(ocs_core("router", "start", "--site-file", str(bad)), "hub: missing 'address_root'")


def test_site_file_from_environment_and_default(tmp_path, monkeypatch):
    port = free_port()
    write_site_config(tmp_path, port)
    monkeypatch.delenv("OCS_SITE_FILE", raising=False)
    status = ocs_core("router", "status", cwd=tmp_path)  # ./site-config.yaml
    assert status.returncode == 1 and f"port {port})" in status.stdout
    other_port = free_port()
    env_site = write_site_config(tmp_path / "env", other_port)
    monkeypatch.setenv("OCS_SITE_FILE", str(env_site))
    status = ocs_core("router", "status", cwd=tmp_path)  # $OCS_SITE_FILE wins over ./
    assert status.returncode == 1 and f"port {other_port})" in status.stdout


def test_help_lists_subcommands():
    result = ocs_core("--help")
    assert result.returncode == 0 and "router" in result.stdout and "agent" in result.stdout
