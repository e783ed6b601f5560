"""ocs's agent classes (its ``ocs.plugins`` registry), found and launched without importing ocs.

When the ``ocs`` package is installed, ``ocs-core up`` and ``ocs-core agent`` run the agent classes
of ocs's plugins (RegistryAgent, AggregatorAgent, InfluxDBAgent, other packages' plugins) through
ocs's own launcher, ``python -m ocs.agent_cli``, in a child process: ocs-core itself never imports
ocs. The list of classes comes from ocs's own ``build_agent_list()``, run once per process in a
child interpreter (about a second) and only when a site file names a class ocs-core does not know.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["PLUGIN_GROUP", "OUR_PLUGIN", "ocs_installed", "ocs_plugin_classes", "ocs_agent_command"]

PLUGIN_GROUP = "ocs.plugins"
#: The name of ocs-core's own entry in ocs's registry (agents/ocs_plugin.py): skipped here.
OUR_PLUGIN = "ocs-core"
_LIST = ("import contextlib, io, json, warnings\n"
         "warnings.simplefilter('ignore')\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    from ocs.agent_cli import build_agent_list\n"
         "    found = build_agent_list()\n"
         "print(json.dumps({k: v.get('module') for k, v in found.items()}))\n")


def ocs_installed() -> bool:
    """Whether this interpreter has the ``ocs`` package (read from its metadata, not imported)."""
    try:
        importlib.metadata.distribution("ocs")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def ocs_plugin_classes(timeout: float = 60.0) -> dict[str, str]:
    """ocs's agent classes (name -> module), other than ocs-core's own; {} without ocs.

    Raises nothing: a registry that cannot be listed counts as empty (the caller then reports
    the class as unknown, listing the classes it does know).
    """
    if not ocs_installed():
        return {}
    if not [ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP) if ep.name != OUR_PLUGIN]:
        return {}
    try:
        done = subprocess.run([sys.executable, "-c", _LIST], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {}
    ours = _our_plugin_modules()
    return {name: module for name, module in found.items()
            if isinstance(module, str) and module.split(".")[0] not in ours}


def _our_plugin_modules() -> set[str]:
    """Top-level packages of ocs-core's own plugin entry (its classes are ours already)."""
    return {ep.value.split(".")[0] for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP)
            if ep.name == OUR_PLUGIN}


def ocs_agent_command(instance_id: str, site_file: str | os.PathLike, site_host: str | None,
                      extra: list[str] | None = None) -> list[str]:
    """The command ocs's HostManager runs for an instance: ``python -m ocs.agent_cli ...``."""
    argv = [sys.executable, "-m", "ocs.agent_cli", "--instance-id", instance_id,
            "--site-file", str(Path(site_file).resolve())]
    if site_host:
        argv += ["--site-host", site_host]
    return argv + ["--working-dir", os.getcwd()] + list(extra or [])
