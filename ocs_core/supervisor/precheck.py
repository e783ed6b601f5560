"""Check every instance of a plan before anything starts: its agent class, and that its arguments parse.

``ocs-core up`` calls :func:`check_plan` and refuses to start with all the problems listed at once.
Classes are resolved here (ocs-core's registry, a ``module:function`` / ``file.py:function``
target, or one of ocs's plugins). The arguments of ocs-core's own classes are checked in one
child interpreter (``python -m ocs_core.supervisor.precheck``) that calls each agent's ``main``
with the command line the supervisor would give it and with ``$OCS_CORE_CHECK_ARGUMENTS`` set, so
that the agent stops, once its options are parsed and checked, at ``init_site_agent`` (plain
servers, ``main.wamp_agent = False``: at ``parse_args``). Arguments of ocs's plugins are ocs's
to parse: they are not checked.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from ocs_core.site.args import CHECK_ENV, CHECKED
from ocs_core.site.discovery import AgentEntryError, find_agent_entry, registry_of
from ocs_core.supervisor.plan import SitePlan, child_env

__all__ = ["check_plan", "CheckResult"]


class CheckResult:
    """Problems (one line each, ``<instance>: <what>``) and notes (arguments not checked)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.registries: dict[str, str] = {}


def check_plan(plan: SitePlan, instances: list[str] | None = None, timeout: float = 60.0) -> CheckResult:
    """Check ``instances`` (default: all of the plan's) without starting any of them."""
    result = CheckResult()
    names = list(plan.instances if instances is None else instances)
    ours = []
    for name in names:
        agent_class = plan.classes.get(name, "")
        try:
            result.registries[name] = registry_of(agent_class, plan.site_file.parent)
        except AgentEntryError as exc:
            result.problems.append(f"{name}: {exc}")
            continue
        (ours if result.registries[name] == "ocs-core" else []).append(name)
    if not ours:
        return result
    cmd = [sys.executable, "-m", "ocs_core.supervisor.precheck", str(plan.site_file), plan.site_host,
           str(plan.log_dir), *ours]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(),
                              stdin=subprocess.DEVNULL)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result.notes.append(f"arguments not checked (the check took over {timeout:g} s): {', '.join(ours)}")
        return result
    except (ValueError, IndexError):
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        result.notes.append(f"arguments not checked (the check failed: {tail or 'no output'})")
        return result
    for name in ours:
        problem = found.get(name)
        if problem:
            result.problems.append(f"{name}: {problem}")
    return result


def _last_error_line(text: str) -> str:
    """argparse's ``prog: error: ...`` line (without the prefix), else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if ": error: " in line:
            return line.partition(": error: ")[2]
    return lines[-1] if lines else ""


def _check_one(agent_class: str, argv: list[str], base_dir: Path) -> str | None:
    """Run one ``main`` in check mode here; None when its arguments are fine."""
    try:
        main = find_agent_entry(agent_class, base_dir)
    except AgentEntryError as exc:
        return str(exc)
    os.environ[CHECK_ENV] = "init" if getattr(main, "wamp_agent", True) else "parse"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(argv)
    except SystemExit as exc:
        if exc.code == CHECKED or exc.code in (0, None):
            return None
        return _last_error_line(err.getvalue()) or f"exited with status {exc.code}"
    except Exception as exc:  # a configuration error raised by the agent's own checks
        return f"{type(exc).__name__}: {exc}"
    return None  # returned without starting: nothing to object to


def _main(argv: list[str]) -> int:
    from ocs_core.site.config import load_site_config
    site_file, site_host, log_dir, *names = argv
    host = load_site_config(site_file).host(site_host)
    found = {}
    for name in names:
        inst = host.instance(name)
        args = ["--instance-id", name, "--site-file", site_file, "--site-host", site_host,
                "--log-dir", log_dir]
        found[name] = _check_one(inst.agent_class, args, Path(site_file).parent) if inst else "unknown"
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
