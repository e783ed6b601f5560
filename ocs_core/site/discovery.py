"""Find an agent class's ``main`` through the ``ocs_core.agents`` entry-point group.

A package adds agents by declaring entry points, e.g. in its ``setup.cfg``::

    [options.entry_points]
    ocs_core.agents =
        FakeDataAgent = agents.fake_data.agent:main

Each ``main(args: list[str])`` parses its own command line (see :mod:`ocs_core.site.args`).
Two more sources, for a source checkout and for tests: the environment variable
``OCS_CORE_AGENTS`` (``Class=module:function`` items separated by commas; it wins over
everything), and the entry points listed in the ``setup.cfg`` of the checkout this package was
imported from (they win over installed metadata, which may be stale).
"""
from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import os
from pathlib import Path
from typing import Callable

__all__ = ["ENTRY_POINT_GROUP", "AGENTS_ENV", "AgentEntryError", "agent_entries", "find_agent_entry"]

ENTRY_POINT_GROUP = "ocs_core.agents"
AGENTS_ENV = "OCS_CORE_AGENTS"
_SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"  # the checkout root


class AgentEntryError(LookupError):
    """No agent class of that name, or its entry point cannot be loaded."""


def _parse_pairs(text: str, sep: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.split(sep):
        if "=" in item:
            name, target = (part.strip() for part in item.split("=", 1))
            if name and target:
                pairs.setdefault(name, target)
    return pairs


def _from_checkout() -> dict[str, str]:
    """Entry points declared in the setup.cfg beside this ocs_core package, if it is a checkout.

    They win over installed metadata, which can be stale for an editable install (a class added
    to setup.cfg since ``pip install -e``) or belong to another checkout of the project.
    """
    if not _SETUP_CFG.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(_SETUP_CFG, encoding="utf-8")
        text = parser.get("options.entry_points", ENTRY_POINT_GROUP, fallback="")
    except configparser.Error:
        return {}
    return _parse_pairs(text, "\n")


def agent_entries() -> dict[str, str]:
    """Every known agent class, mapped to its ``module:function`` target."""
    entries = _parse_pairs(os.environ.get(AGENTS_ENV, ""), ",")
    for name, target in _from_checkout().items():
        entries.setdefault(name, target)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entries.setdefault(ep.name, ep.value)
    return entries


def find_agent_entry(agent_class: str) -> Callable[[list[str]], None]:
    """Load the ``main(args)`` of an agent class.

    Raises:
        AgentEntryError: unknown class (the message lists the known ones), or its module or
            function cannot be loaded.
    """
    entries = agent_entries()
    target = entries.get(agent_class)
    if target is None:
        known = ", ".join(sorted(entries)) or "none"
        raise AgentEntryError(f"unknown agent-class {agent_class!r} (known: {known}); agent "
                              f"classes come from the {ENTRY_POINT_GROUP!r} entry points")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise AgentEntryError(f"agent-class {agent_class!r}: cannot import {module_name!r}: {exc}") from None
    func = module
    for part in (attr.strip() or "main").split("."):
        func = getattr(func, part, None)
        if func is None:
            raise AgentEntryError(f"agent-class {agent_class!r}: {target!r} has no {part!r}")
    if not callable(func):
        raise AgentEntryError(f"agent-class {agent_class!r}: {target!r} is not callable")
    return func
