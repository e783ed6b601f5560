"""`ocs-core web`'s user errors: one line each, exit status 1."""
from __future__ import annotations

import socket
import subprocess
import sys

from ocs_core.testing import project_env, write_site_config


def web(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", "web", *args], capture_output=True,
                          text=True, timeout=60, env=project_env(), cwd=cwd)


def test_missing_site_file_is_one_line(tmp_path):
    result = web("--site-file", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.startswith("ocs-core: error: ") and result.stderr.count("\n") == 1
    assert "nope.yaml" in result.stderr


def test_port_taken_and_bad_port(tmp_path):
    site = write_site_config(tmp_path, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = web("--site-file", str(site), "--port", str(port))
    assert result.returncode == 1
    assert f"ocs-core: error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    result = web("--site-file", str(site), "--port", "70000")
    assert result.returncode == 1 and "--port 70000 is not a TCP port" in result.stderr


def test_key_file_readable_by_others_is_refused(tmp_path):
    site = write_site_config(tmp_path, 1)
    key = tmp_path / "dashboard-key"
    key.write_text("k" * 43 + "\n")
    key.chmod(0o644)
    result = web("--site-file", str(site), "--key-file", str(key), "--port", "0")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"ocs-core: error: {key}: readable by group or others (mode 0644); run: chmod 600" in result.stderr
    assert "k" * 43 not in result.stderr
