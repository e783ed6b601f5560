"""Find an agent class's ``main``: entry points, ``OCS_CORE_AGENTS``, or a target in the site file.

A package adds agents by declaring entry points, e.g. in its ``setup.cfg``::

    [options.entry_points]
    ocs_core.agents =
        FakeDataAgent = agents.fake_data.agent:main

Each ``main(args: list[str])`` parses its own command line (see :mod:`ocs_core.site.args`).
Two more sources, for a source checkout and for tests: the environment variable
``OCS_CORE_AGENTS`` (``Class=module:function`` items separated by commas; it wins over
everything), and the entry points listed in the ``setup.cfg`` of the checkout this package was
imported from (they win over installed metadata, which may be stale).

An ``agent-class`` with a colon is a target itself, no registration needed:
``package.module:function`` (imported) or ``path/to/file.py:function`` (loaded from that file,
relative to the site file's directory, with the file's directory first on ``sys.path``).
docs/agents.md describes all of this for users.
"""
from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

from ocs_core.site.ocs_plugins import ocs_installed, ocs_plugin_classes

__all__ = ["ENTRY_POINT_GROUP", "AGENTS_ENV", "AgentEntryError", "agent_entries", "find_agent_entry",
           "is_target", "load_target", "registry_of"]

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


def is_target(agent_class: str) -> bool:
    """Whether an agent-class names its function itself (``module:function``, ``file.py:function``)."""
    return ":" in agent_class


def registry_of(agent_class: str, base_dir: str | os.PathLike | None = None) -> str:
    """Which launcher runs an agent class: ``'ocs-core'`` (ours, or a target) or ``'ocs'`` (one
    of ocs's plugins, run through ``ocs-agent-cli``); ours win where both have the name.

    Raises:
        AgentEntryError: neither knows it (the message lists both registries' classes), or
            ours has it but cannot load it.
    """
    if is_target(agent_class) or agent_class in agent_entries():
        find_agent_entry(agent_class, base_dir)
        return "ocs-core"
    ocs = ocs_plugin_classes()
    if agent_class in ocs:
        return "ocs"
    known = ", ".join(sorted(agent_entries())) or "none"
    theirs = (f"; ocs's plugins: {', '.join(sorted(ocs))}" if ocs
              else "" if ocs_installed() else "; ocs is not installed")
    raise AgentEntryError(f"unknown agent-class {agent_class!r} (ocs-core's: {known}{theirs}); "
                          f"or give module:function or path/to/file.py:function")


def find_agent_entry(agent_class: str, base_dir: str | os.PathLike | None = None
                     ) -> Callable[[list[str]], None]:
    """Load the ``main(args)`` of an agent class, or of a ``module:function`` or
    ``file.py:function`` target (a relative file is under ``base_dir``, default the current one).

    Raises:
        AgentEntryError: unknown class (the message lists the known ones), or its module or
            function cannot be loaded.
    """
    if is_target(agent_class):
        return load_target(agent_class, agent_class, base_dir)
    entries = agent_entries()
    target = entries.get(agent_class)
    if target is None:
        known = ", ".join(sorted(entries)) or "none"
        raise AgentEntryError(f"unknown agent-class {agent_class!r} (known: {known}); agent "
                              f"classes come from the {ENTRY_POINT_GROUP!r} entry points")
    return load_target(agent_class, target)


def _load_file(agent_class: str, path: Path):
    if not path.is_file():
        raise AgentEntryError(f"agent-class {agent_class!r}: no file {str(path)!r}")
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else \
        f"_ocs_core_agent_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AgentEntryError(f"agent-class {agent_class!r}: cannot load {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # sibling modules import, as with ocs-agent-cli --agent
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AgentEntryError(f"agent-class {agent_class!r}: {path} failed to load: "
                              f"{type(exc).__name__}: {exc}") from None
    return module


def load_target(agent_class: str, target: str, base_dir: str | os.PathLike | None = None
                ) -> Callable[[list[str]], None]:
    """Load ``module:function`` or ``file.py:function`` (see :func:`find_agent_entry`)."""
    module_name, _, attr = target.rpartition(":") if ":" in target else (target, "", "")
    module_name = module_name.strip()
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).expanduser()
        if not path.is_absolute():
            path = Path(base_dir or os.getcwd()) / path
        module = _load_file(agent_class, path.resolve())
    else:
        try:
            module = importlib.import_module(module_name)
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
