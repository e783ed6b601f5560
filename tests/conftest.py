"""Shared fixtures: ``router`` (session-wide real crossbar) and ``start_agent`` (agent factory)."""
import os
import sys

from ocs_core.pytest_plugin import router, start_agent  # noqa: F401  (pytest fixtures)

# tests import their helper modules (support_agents) by plain name
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
