"""Shared fixtures: ``router`` (session-wide real crossbar) and ``start_agent`` (agent factory)."""
from ocs_core.pytest_plugin import router, start_agent  # noqa: F401  (pytest fixtures)
