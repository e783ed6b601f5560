"""``ocs-core agent INSTANCE_ID``: instance resolution, agent discovery, argument passing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ocs_core.site import discovery
from ocs_core.site.discovery import AgentEntryError, agent_entries, find_agent_entry
from ocs_core.testing import AgentProcess, free_port, project_env, write_site_config
from support_agents import subprocess_env


def run_agent(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", "agent", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd,
                          env=project_env({**subprocess_env(), **(env or {})}))


@pytest.fixture
def site_file(tmp_path):
    return write_site_config(tmp_path, free_port(), [
        {"agent-class": "ArgsDump", "instance-id": "dump1", "arguments": ["--mode", "acq", "--num", "-4"]},
        {"agent-class": "NoSuchAgent", "instance-id": "ghost"},
    ])


def test_agent_gets_site_args_merged_with_the_command_line(site_file, tmp_path):
    dump = tmp_path / "dump.json"
    result = run_agent("dump1", "--site-file", str(site_file), "--num", "-2.5", env={"DUMP_FILE": str(dump)})
    assert result.returncode == 0, result.stderr
    ns = json.loads(dump.read_text())
    assert (ns["mode"], ns["num"], ns["instance_id"]) == ("acq", -2.5, "dump1")
    assert ns["address"] == "observatory.dump1" and ns["site_file"] == str(site_file.resolve())
    assert ns["argv"][:4] == ["--instance-id", "dump1", "--site-file", str(site_file.resolve())]


def test_site_options_before_the_instance_id(site_file, tmp_path):
    dump = tmp_path / "dump.json"
    result = run_agent("--site-file", str(site_file), "--site-host", "localhost", "dump1",
                       env={"DUMP_FILE": str(dump)})
    assert result.returncode == 0, result.stderr
    assert json.loads(dump.read_text())["site_host"] == "localhost"


def test_unknown_instance_lists_the_known_ones(site_file):
    result = run_agent("nope", "--site-file", str(site_file))
    assert result.returncode == 78 and "Traceback" not in result.stderr  # a configuration error
    assert result.stderr.strip() == (f"ocs-core: error: {site_file.resolve()}: host 'localhost': "
                                     f"unknown instance-id 'nope' (known: dump1, ghost)")


def test_unknown_agent_class_lists_the_known_ones(site_file):
    result = run_agent("ghost", "--site-file", str(site_file))
    assert result.returncode == 78 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("ocs-core: error: unknown agent-class 'NoSuchAgent' (ocs-core's: ")
    assert "ArgsDump" in line and "MiniAgent" in line and "FakeDataAgent" in line
    assert "ocs's plugins: " in line and "RegistryAgent" in line  # ocs 0.12.1 is installed


def test_discovery_sources(monkeypatch):
    monkeypatch.setenv(discovery.AGENTS_ENV, "Mine=json:dumps, Broken=nope_module:main,Bad=json:nothing")
    entries = agent_entries()
    assert entries["Mine"] == "json:dumps"
    assert entries["FakeDataAgent"] == "agents.fake_data.agent:main"  # setup.cfg of the checkout
    assert find_agent_entry("Mine") is json.dumps
    with pytest.raises(AgentEntryError, match="cannot import 'nope_module'"):
        find_agent_entry("Broken")
    with pytest.raises(AgentEntryError, match="has no 'nothing'"):
        find_agent_entry("Bad")
    with pytest.raises(AgentEntryError, match=r"unknown agent-class 'Zzz' \(known: .*Mine"):
        find_agent_entry("Zzz")


ONE_FILE_AGENT = """\
import json, os, sys
def start(args):
    json.dump({"argv": args, "name": __name__}, open(os.environ["DUMP_FILE"], "w"))
    return 0
"""


def test_agent_class_as_a_module_or_a_file_target(tmp_path):
    (tmp_path / "agents_here").mkdir()
    (tmp_path / "agents_here" / "my_agent.py").write_text(ONE_FILE_AGENT)
    site = tmp_path / "site.yaml"
    write_site_config(tmp_path, 8001, [
        {"agent-class": "agents_here/my_agent.py:start", "instance-id": "by-file"},
        {"agent-class": "json:dumps", "instance-id": "by-module"},
        {"agent-class": "agents_here/absent.py:start", "instance-id": "missing"}], name="site.yaml")
    dump = tmp_path / "dump.json"
    elsewhere = tmp_path / "agents_here"  # a relative file is under the site file's directory
    result = run_agent("by-file", "--site-file", str(site), env={"DUMP_FILE": str(dump)}, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert json.loads(dump.read_text())["argv"][:2] == ["--instance-id", "by-file"]
    assert find_agent_entry("json:dumps") is json.dumps
    result = run_agent("missing", "--site-file", str(site))
    assert result.returncode == 78 and "no file" in result.stderr and "absent.py" in result.stderr


def test_agent_process_registers_and_terminates(router):
    router.add_instance("MiniAgent", "mini1")
    with AgentProcess("mini1", router.site_file, env=subprocess_env(),
                      log_path=router.directory / "mini1.out") as agent:
        elapsed = agent.wait_registered(timeout=20)
        assert elapsed < 20
        assert router.call("observatory.mini1", "get_agent_class") == {"args": ["MiniAgent"]}
        assert agent.terminate() == 0
    assert not agent.is_running()
    assert router.call("observatory.mini1", "get_agent_class")["error"] == "wamp.error.no_such_procedure"
    assert "Traceback" not in agent.log_text()


def test_wait_registered_reports_an_agent_that_exits(router):
    router.add_instance("NoSuchAgent", "ghost2")
    agent = AgentProcess("ghost2", router.site_file, env=subprocess_env())
    with pytest.raises(RuntimeError, match=r"agent ghost2 exited with status 78: .*unknown agent-class"):
        agent.wait_registered(timeout=20)


def test_start_agent_fixture(start_agent, router):
    agent = start_agent("mini2", agent_class="MiniAgent", env=subprocess_env())
    assert agent.is_running()
    assert router.call(router.address("mini2"), "get_agent_class") == {"args": ["MiniAgent"]}


def test_help_after_the_instance_id_is_the_agents_own(tmp_path):
    site = write_site_config(tmp_path, free_port(), [
        {"agent-class": "InstrumentAgent", "instance-id": "instrument-1", "arguments": ["--port", "7001"]}])
    result = run_agent("instrument-1", "--help", "--site-file", str(site))
    assert result.returncode == 0, result.stderr
    assert "InstrumentAgent options:" in result.stdout
    # every option with a default says it
    flat = " ".join(result.stdout.split())
    for text in ("--timeout TIMEOUT seconds to wait for a reply", "(default: 15.0)",
                 "seconds between polls (default: 1.0)", "(default: idle)"):
        assert text in flat, result.stdout
    assert "(default: None)" not in flat and "(default: False)" not in flat
    # without an instance id: the subcommand's own help
    result = run_agent("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: ocs-core agent ")
    assert "INSTANCE_ID --help` shows the agent's own options" in " ".join(result.stdout.split())
    result = run_agent()
    assert result.returncode == 2 and "required: INSTANCE_ID" in result.stderr


def test_ocs_plugin_registry_names_every_agent_distinctly():
    """agents/ocs_plugin.py lists our classes for ocs, renamed where ocs 0.12.1 ships the name."""
    from agents import ocs_plugin
    from ocs_core.site.ocs_plugins import ocs_plugin_classes

    ours = {name: target for name, target in discovery._from_checkout().items()
            if not name.startswith("OcsCore")}
    for name, target in ours.items():
        plugin_name = ocs_plugin.RENAMED.get(name, name)
        assert ocs_plugin.agents[plugin_name]["module"] == target.partition(":")[0], name
    theirs = ocs_plugin_classes()  # ocs's own classes, as its build_agent_list() sees them
    assert {"RegistryAgent", "HostManager", "FakeDataAgent"} <= set(theirs)
    assert not set(ocs_plugin.agents) & set(theirs)  # no name ocs picks in hash order
    for name, plugin_name in ocs_plugin.RENAMED.items():
        assert name in ours
        assert discovery.agent_entries()[plugin_name] == discovery.agent_entries()[name]
