"""Helpers for the browser tests: headless Chromium through WebDriver, and `ocs-core web` as a process.

Chromium and its driver are Debian's (`chromium`, `chromium-driver`; `.ci/run` installs them);
selenium is told where the driver is, so it never downloads one. Outside CI the tests skip with
the reason when they are missing; in CI (CI=true) they fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from ci import unavailable
from ocs_core.testing import free_port, project_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1400"]


def need_browser() -> None:
    """Skip (outside CI) or fail (in CI) when Chromium, its driver or selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        unavailable(f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)")


def start_chromium() -> Any:
    """A headless Chromium WebDriver session with a fresh profile (``.profile_dir`` is removed
    by :func:`quit_chromium`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ocs-core-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.profile_dir = profile
    driver.set_script_timeout(60)
    return driver


def quit_chromium(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


class WebProcess:
    """``ocs-core web`` for a site file, on a free loopback port (``args``: more options)."""

    def __init__(self, site_file: Path, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ocs_core.cli", "web", "--site-file", str(site_file),
                 "--site-host", "localhost", "--port", str(self.port), *args],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=project_env())
        until(self._answers, 20, lambda: f"ocs-core web did not answer: {self.log_text()[-2000:]}")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, f"ocs-core web exited: {self.log_text()[-2000:]}"
        try:
            with urllib.request.urlopen(self.url + "api/site", timeout=2) as reply:
                return reply.status == 200
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # a dashboard with a key: it answers, logged out
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def until(predicate: Callable[[], Any], timeout: float, message: Any = "condition not met",
          poll: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(poll)
