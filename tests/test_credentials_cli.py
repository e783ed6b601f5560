"""``ocs-core credentials``: create, rotate, revoke, export, list (no router needed)."""
from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import yaml

from ocs_core.runtime.cryptosign import public_key
from ocs_core.site.credentials import load_credentials
from ocs_core.testing import project_env, write_site_config


def ocs(*argv):
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", *argv], capture_output=True,
                          text=True, timeout=60, env=project_env())


@pytest.fixture
def site(tmp_path):
    path = write_site_config(tmp_path, 8001, [{"agent-class": "FakeDataAgent", "instance-id": "a1"}],
                             hub_extra={"auth": "cryptosign", "http_key": "web"})
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["lab2"] = {"agent-instances": [{"agent-class": "FakeDataAgent", "instance-id": "b1"}]}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_create_rotate_revoke_export(site, tmp_path):
    creds_path = tmp_path / "ocs-credentials.yaml"
    made = ocs("credentials", "create", "--site-file", str(site))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"{creds_path}: 2 new agent key(s) and the HTTP secret 'web'")
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    creds = load_credentials(creds_path)
    assert set(creds.agents) == {"a1", "b1"} and len(creds.http["web"]) >= 32
    assert public_key(creds.agents["a1"].private_key) == creds.agents["a1"].public_key
    for secret in [k.private_key for k in creds.agents.values()] + [creds.http["web"]]:
        assert secret not in made.stdout + made.stderr
    again = ocs("credentials", "create", "--site-file", str(site))
    assert "0 new agent key(s)" in again.stdout and load_credentials(creds_path) == creds

    assert ocs("credentials", "rotate", "a1", "--http", "--site-file", str(site)).returncode == 0
    rotated = load_credentials(creds_path)
    assert rotated.agents["a1"] != creds.agents["a1"] and rotated.agents["b1"] == creds.agents["b1"]
    assert rotated.http["web"] != creds.http["web"]

    out = tmp_path / "lab2.yaml"
    exported = ocs("credentials", "export", "--site-file", str(site), "--site-host", "lab2", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    lab2 = load_credentials(out)  # only its own agent, no HTTP secret
    assert set(lab2.agents) == {"b1"} and lab2.http == {} and stat.S_IMODE(out.stat().st_mode) == 0o600

    assert ocs("credentials", "revoke", "b1", "--site-file", str(site)).returncode == 0
    assert set(load_credentials(creds_path).agents) == {"a1"}
    listing = ocs("credentials", "list", "--site-file", str(site)).stdout
    assert "a1" in listing and "private key here" in listing and rotated.agents["a1"].private_key not in listing


def test_refuses_a_readable_file_with_one_line(site, tmp_path):
    assert ocs("credentials", "create", "--site-file", str(site)).returncode == 0
    (tmp_path / "ocs-credentials.yaml").chmod(0o644)
    result = ocs("credentials", "list", "--site-file", str(site))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ocs-core: error: {tmp_path / 'ocs-credentials.yaml'}: readable by group or others "
        f"(mode 0644); run: chmod 600 {tmp_path / 'ocs-credentials.yaml'}"]
    agent = ocs("agent", "a1", "--site-file", str(site))  # an agent refuses to start, too:
    assert agent.returncode == 78 and "readable by group or others" in agent.stderr  # a config error
    assert "Traceback" not in agent.stderr


def test_open_site_needs_no_keys(tmp_path):
    site = write_site_config(tmp_path, 8001, [{"agent-class": "FakeDataAgent", "instance-id": "a1"}])
    result = ocs("credentials", "create", "--site-file", str(site))
    assert result.returncode == 0 and "runs open" in result.stdout
    assert not (tmp_path / "ocs-credentials.yaml").exists()
