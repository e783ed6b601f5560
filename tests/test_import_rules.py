"""The layering rules of docs/architecture.md, checked in fresh interpreters and on the source.

* ``ocs_core`` imports neither ``agents`` nor ``clients``;
* the OBE engine package loads neither Twisted, sqlite3 nor the run store;
* the sans-IO modules (framings, pure state machines and checks) load no Twisted;
* no two modules of ours import each other, directly or round a longer circle (lazy imports
  inside functions count too).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ocs_core.testing import project_env

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ocs_core", "agents", "clients")

#: Modules that hold pure logic: importing any of them must not load Twisted.
SANS_IO = [
    "ocs_core.framing.length_prefixed", "ocs_core.framing.lines", "ocs_core.framing.http_signing",
    "ocs_core.runtime.cryptosign", "ocs_core.site.credentials", "ocs_core.router.auth",
    "ocs_core.router.replay_guard", "ocs_core.runtime.access",
    "ocs_core.runtime.backoff", "ocs_core.runtime.codes", "ocs_core.runtime.log_format",
    "ocs_core.runtime.feeds", "ocs_core.runtime.feed_history",
    "ocs_core.runtime.lock", "ocs_core.runtime.params", "ocs_core.runtime.param_specs", "ocs_core.runtime.session",
    "ocs_core.runtime.text",
    "ocs_core.site.config", "ocs_core.site.args", "ocs_core.router.config",
    "ocs_core.supervisor.child", "ocs_core.supervisor.control", "ocs_core.supervisor.plan",
    "ocs_core.supervisor.precheck", "ocs_core.supervisor.managers", "ocs_core.site.ocs_plugins",
    "ocs_core.site.discovery", "agents.host_manager.children", "agents.ocs_plugin",
    "agents.obe.classic.commands", "agents.obe.newrun", "agents.obe.inline_budget", "agents.access.config",
    "agents.access.director",
    "agents.instrument.commands", "agents.instrument.signatures", "agents.instrument.profiles",
    "agents.rig.events", "agents.rig.messages", "agents.rig.feed_format", "agents.rig.state",
    "clients.dashboard.model", "clients.dashboard.login",
    "ocs_core.archive.downsample", "ocs_core.archive.series", "ocs_core.archive.sqlite_reader",
    "agents.archive.events", "agents.archive.tracker", "agents.archive.store",
    "agents.archive.line_protocol", "clients.archive",
]


def modules_of(package: str) -> list[str]:
    """Every module of ``package`` (a top-level folder of the repository), by dotted name."""
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def loaded_after_import(modules: list[str]) -> set[str]:
    """The top-level and dotted names in ``sys.modules`` after importing ``modules`` afresh."""
    probe = ("import importlib, json, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, env=project_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_ocs_core_imports_neither_agents_nor_clients():
    loaded = loaded_after_import(modules_of("ocs_core"))
    assert {"agents", "clients"} & {name.split(".")[0] for name in loaded} == set()


def test_obe_engine_loads_neither_twisted_sqlite_nor_the_run_store():
    loaded = loaded_after_import([m for m in modules_of("agents") if m.startswith("agents.obe.engine")])
    assert "agents.obe.engine.obe_engine" in loaded
    assert not {"twisted", "sqlite3", "_sqlite3", "agents.obe.run_store", "agents.obe.service"} & loaded


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_module_loads_no_twisted(module):
    loaded = loaded_after_import([module])
    assert module in loaded
    assert not {name for name in loaded if name.split(".")[0] in ("twisted", "autobahn")}


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules of ours that ``path`` (module ``module``) imports anywhere in its source
    (lazy imports included; imports under ``if TYPE_CHECKING:`` are for annotations only)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []  # typing-only imports: dropped before the walk below
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # ``from pkg import mod`` names a module when pkg.mod is one of ours
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    return found


def test_no_import_circles():
    known: dict[str, Path] = {}
    for package in PACKAGES:
        for name in modules_of(package):
            path = ROOT.joinpath(*name.split("."))
            known[name] = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    # A package's __init__ re-exporting its own modules is not a circle: skip edges into parents.
    graph = {name: {t for t in _imports(path, name, set(known)) if not name.startswith(t + ".")}
             for name, path in known.items()}
    circles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_paths_derived_from_module_files_name_the_checkout():
    """Modules that find the checkout from their own file still do from inside subpackages."""
    from ocs_core.router.process import Router
    from ocs_core.site import discovery
    from ocs_core.supervisor import plan

    assert discovery._SETUP_CFG == ROOT / "setup.cfg"
    assert Path(plan._PROJECT_ROOT) == ROOT
    env = Router.__new__(Router)._environment()
    assert Path(env["PYTHONPATH"].split(":")[0]) == ROOT
