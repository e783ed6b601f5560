"""The main job end to end with a small N: the site from site-config.yaml (on free ports) comes
up, the three adaptive-scan examples run, the site goes down and leaves no process behind."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ocs_core.testing import free_port, project_env

ROOT = Path(__file__).resolve().parent.parent


def test_demo_end_to_end(tmp_path):
    text = (ROOT / "site-config.yaml").read_text()
    router, sim, tcp = free_port(), free_port(), free_port()
    text = text.replace(":8001/", f":{router}/").replace("50731", str(sim)).replace("61981", str(tcp))
    assert f":{router}/ws" in text and str(sim) in text
    (tmp_path / "site-config.yaml").write_text(text)
    shutil.copy(ROOT / "obe-run.yaml", tmp_path / "obe-run.yaml")
    result = subprocess.run(
        [sys.executable, str(ROOT / "clients" / "examples" / "demo.py"), "--steps", "8",
         "--particles", "3000", "--site-file", str(tmp_path / "site-config.yaml"),
         "--run-dir", str(tmp_path / "run"), "--png", str(tmp_path / "out" / "scan.png")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, env=project_env())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert re.search(r"step +8 +x = [\d.]+ +value = +-?[\d.]+ +centre = [\d.]+ \+- [\d.]+", out)
    assert re.search(r"OBE \(adaptive\) +8 ", out) and re.search(r"uniform sweep +8 ", out)
    assert re.search(r"random settings +8 ", out)
    assert re.search(r"per step \(optset \+ measure \+ newdat, three Task calls\): median [\d.]+ ms", out)
    assert re.search(r"step +8 .*\([\d.]+ ms\)", out)
    assert "adaptive_scan ended: adaptive_scan: reached max_steps" in out
    assert "site down" in out and "demo finished" in out
    # the dashboard's address carries its key, kept private in the run directory
    key = re.search(r"=== dashboard: http://127\.0\.0\.1:\d+/\?key=([A-Za-z0-9_-]+) ", out).group(1)
    key_file = tmp_path / "run" / "dashboard-key"
    assert key_file.read_text().strip() == key and key_file.stat().st_mode & 0o077 == 0
    # the project's site runs authenticated: one line says so; keys created private
    assert len([l for l in out.splitlines() if "router authenticated (cryptosign), HTTP bridge signed" in l]) == 1
    assert (tmp_path / "ocs-credentials.yaml").stat().st_mode & 0o077 == 0
    assert re.search(r"archive: \S+archive.sqlite: \d+ samples", out), out[-2000:]
    assert (tmp_path / "out" / "scan.png").stat().st_size > 10_000
    assert "Traceback" not in result.stderr, result.stderr
    # nothing left: the supervisor and every agent that `up` reported are gone
    pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
    assert len(pids) >= 6, out[:2000]  # supervisor, router and the agents of the site
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (nothing reaps orphans in some containers)
