"""A real ``influxd`` (InfluxDB 1.x, Debian's ``influxdb`` package) in a temporary directory.

HTTP on 127.0.0.1 and a free port; reporting, the monitor store, subscriptions, continuous
queries and every other listener off. Outside CI a missing ``influxd`` skips the tests that
need it (with the reason); in CI (``CI=true``) it fails them: ``.ci/run`` installs the package.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ci import unavailable
from ocs_core.testing import free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
"""


def influxd_binary() -> str:
    """The path of ``influxd``; skips (outside CI) or fails (in CI) when it is missing."""
    found = shutil.which("influxd")
    if found:
        return found
    unavailable("influxd (Debian package influxdb) is not installed")


class Influxd:
    """One influxd process on ``port`` with its data under ``root``."""

    def __init__(self, root: Path) -> None:
        self.binary = influxd_binary()
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "influxdb.conf"
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(root=self.root, port=self.port, rpc_port=free_port()))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.root / "influxd.log", "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-config", str(self.config)], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {(self.root / 'influxd.log').read_text()[-2000:]}")
            try:
                with _OPENER.open(self.url + "/ping", timeout=1) as reply:
                    if reply.status == 204:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"influxd not answering on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, q: str, db: str | None = None) -> dict:
        params = urllib.parse.urlencode({"q": q, "epoch": "ns", **({"db": db} if db else {})})
        with _OPENER.open(f"{self.url}/query?{params}", timeout=10) as reply:
            return json.loads(reply.read())
