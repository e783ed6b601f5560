"""Shared fixtures: ``router`` (session-wide real crossbar) and ``start_agent`` (agent factory)."""
import os
import sys

import pytest

from ci import in_ci
from ocs_core.pytest_plugin import router, start_agent  # noqa: F401  (pytest fixtures)

# tests import their helper modules (support_agents) by plain name
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def shots(tmp_path_factory, request):
    """The folder of the dashboard tests' screenshots (every view and the login form), named in
    the test log (also without -s)."""
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # past the output capture, into the log
            reporter.write_line(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every part is installed, so a test that skips (any skip, marker or call) fails."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {report.longrepr}"
