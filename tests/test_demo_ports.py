"""`make demo PORT=...`: the demo's site file moved to other ports; the first install shows progress."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "examples"))

from demo_ports import with_ports  # noqa: E402

from ocs_core.site.config import load_site_config  # noqa: E402


def test_the_site_file_moves_to_the_ports_asked_for(tmp_path):
    moved = tmp_path / "site-config.yaml"
    moved.write_text(with_ports((ROOT / "site-config.yaml").read_text(), 9001))
    cfg = load_site_config(moved)
    hub = cfg.hub_for(cfg.host("localhost"))
    assert hub.wamp_server == "ws://127.0.0.1:9001/ws" and hub.wamp_http == "http://127.0.0.1:9001/call"
    args = {i.instance_id: i.arguments for i in cfg.host("localhost").agent_instances}
    # the instrument server and its agent share a port; the OBE agent's TCP port follows
    assert args["sim-1"][:2] == ["--port", "9002"] and args["instrument-1"][:2] == ["--port", "9002"]
    assert args["obe-1"][:2] == ["--tcp-port", "9003"]
    text = moved.read_text()
    assert "8001" not in text and "50731" not in text and "# " in text  # comments kept
    with pytest.raises(ValueError, match="PORT must be within 1..65535"):
        with_ports("", 70000)


def test_makefile_passes_port_and_shows_install_progress():
    plan = subprocess.run(["make", "-n", "-B", "demo", "PORT=9100"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60).stdout
    assert "clients/examples/demo.py --site-file site-config.yaml --port 9100" in plan
    commands = plan.replace("\\\n", " ").splitlines()
    project = next(c for c in commands if "-e '.[test,router,plot,web]'" in c)
    assert "pip install" in project and "--quiet" not in project
    plain = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "--port" not in plain
