"""Site file schema, host matching, argument merging and instance resolution (no network)."""
from __future__ import annotations

import argparse
import re
import socket

import pytest

from ocs_core.site import args as site_args
from ocs_core.site.args import merge_arguments, parse_args, split_groups
from ocs_core.site.config import SiteConfigError, load_site_config, parse_site_config

HUB = """\
hub:
  wamp_server: ws://127.0.0.1:8001/ws
  wamp_http: http://127.0.0.1:8001/call
  wamp_realm: test_realm
  address_root: observatory
"""

SITE = HUB + """\
hosts:
  localhost:
    log-dir: logs
    agent-instances:
      - agent-class: FakeDataAgent
        instance-id: faker1
        arguments: [--mode, acq, [--num, -5], --flag]
      - agent-class: FakeDataAgent
        instance-id: faker2
      - agent-class: OtherAgent
        instance-id: other1
        arguments: [[--num, 2.5]]
        manage: no
  labhost:
    crossbar_timeout: 30
    wamp_server: ws://10.0.0.1:8001/ws
    wamp_realm: lab_realm
    agent-instances:
      - agent-class: LabAgent
        instance-id: lab1
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in list(site_args.ENV_FLAGS) + ["OCS_SITE_FILE", "OCS_CONFIG_DIR"]:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def site_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


def agent_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="idle")
    parser.add_argument("--num", type=float, default=1.0)
    parser.add_argument("--flag", action="store_true")
    return parser


# --- schema ---------------------------------------------------------------------------------

def test_valid_file_loads(site_file):
    cfg = load_site_config(site_file)
    assert cfg.hub.wamp_realm == "test_realm" and cfg.hub.address_root == "observatory"
    assert cfg.hub.access_policy is None
    local = cfg.hosts["localhost"]
    assert local.instance_ids == ["faker1", "faker2", "other1"]
    assert local.instance("faker1").arguments == ["--mode", "acq", "--num", "-5", "--flag"]
    assert local.instance("other1").arguments == ["--num", "2.5"]
    assert local.instance("other1").manage == "ignore"  # YAML 'no' is False
    assert local.instance("faker2").manage == "host/up"
    assert cfg.hosts["labhost"].crossbar_timeout == 30.0
    assert cfg.path == site_file


@pytest.mark.parametrize("text, fragment", [
    ("", "the file is empty"),
    ("hosts: {}\n", "missing 'hub'"),
    (HUB, "missing 'hosts'"),
    ("hub: {wamp_server: 'ws://h:1/ws', wamp_realm: r}\nhosts: {}\n", "hub: missing 'address_root'"),
    ("hub: [1, 2]\nhosts: {}\n", "hub: expected a mapping, got a list"),
    (HUB.replace("ws://127.0.0.1:8001/ws", "http://127.0.0.1:8001/ws") + "hosts: {}\n",
     "hub.wamp_server: expected a ws:// or wss://HOST:PORT/PATH URL"),
    (HUB.replace("ws://127.0.0.1:8001/ws", "ws://127.0.0.1/ws") + "hosts: {}\n", "hub.wamp_server"),
    (HUB.replace("address_root: observatory", "address_root: 'has space'") + "hosts: {}\n",
     "hub.address_root: expected a WAMP URI prefix"),
    (HUB + "  wamp-server: x\nhosts: {}\n", "hub: unknown key 'wamp-server'"),
    (HUB + "hosts:\n  h1: {agent-instances: {a: 1}}\n", "hosts.h1.agent-instances: expected a list"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {instance-id: x}\n",
     "hosts.h1.agent-instances[0]: missing 'agent-class'"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A}\n",
     "hosts.h1.agent-instances[0]: missing 'instance-id'"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A, instance-id: a.b}\n",
     "instance-id: expected an instance-id without dots or spaces"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A, instance-id: x}\n"
           "      - {agent-class: B, instance-id: x}\n",
     "hosts.h1.agent-instances[1]: duplicate instance-id 'x' (already used by agent-instances[0])"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A, instance-id: x, arguments: --mode}\n",
     "hosts.h1.agent-instances[0] (x).arguments: expected a list"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A, instance-id: x, arguments: [{a: 1}]}\n",
     "arguments: expected strings, numbers or nested lists"),
    (HUB + "hosts:\n  h1:\n    agent-instances:\n      - {agent-class: A, instance-id: x, manage: sometimes}\n",
     "manage: expected one of host/up"),
    (HUB + "hosts:\n  h1: {crossbar_timeout: -1}\n", "hosts.h1.crossbar_timeout: expected a number of seconds >= 0"),
    (HUB + "hosts:\n  h1: {crossbar_timeout: yes}\n", "hosts.h1.crossbar_timeout"),
    (HUB + "hosts:\n  h1: {}\n  h1: {}\n", "duplicate key 'h1' (line"),
    (HUB + "hosts:\n  h1: {log-dir: [a]}\n", "hosts.h1.log-dir: expected a directory path"),
    ("hub: {wamp_server: 'ws://h:1/ws'\n", "not valid YAML (line"),
])
def test_schema_errors_are_one_clear_line(text, fragment):
    with pytest.raises(SiteConfigError) as info:
        parse_site_config(text, "site.yaml")
    message = str(info.value)
    assert message.startswith("site.yaml: ")
    assert fragment in message
    assert "\n" not in message


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(SiteConfigError, match=r"nope\.yaml: site file not found"):
        load_site_config(tmp_path / "nope.yaml")


def test_wamp_http_is_derived_when_absent():
    cfg = parse_site_config("hub: {wamp_server: 'wss://h:9/ws', wamp_realm: r, address_root: a}\n"
                            "hosts: {}\n")
    assert cfg.hub.wamp_http == "https://h:9/call"


def test_hyphenated_crossbar_timeout_is_accepted_once():
    cfg = parse_site_config(HUB + "hosts:\n  h: {crossbar-timeout: 4}\n")
    assert cfg.hosts["h"].crossbar_timeout == 4.0
    with pytest.raises(SiteConfigError, match="only once"):
        parse_site_config(HUB + "hosts:\n  h: {crossbar-timeout: 4, crossbar_timeout: 5}\n")


# --- host matching --------------------------------------------------------------------------

def test_host_matching_and_localhost_fallback(site_file):
    cfg = load_site_config(site_file)
    assert cfg.host("labhost").name == "labhost"
    assert cfg.host("elsewhere").name == "localhost"
    assert cfg.host(None).name in ("localhost", socket.gethostname())


def test_no_matching_host_is_an_error():
    cfg = parse_site_config(HUB + "hosts:\n  only: {}\n", "s.yaml")
    with pytest.raises(SiteConfigError, match=r"no entry for host 'x' and no 'localhost' entry \(known hosts: only\)"):
        cfg.host("x")


def test_host_wamp_keys_override_the_hub(site_file):
    cfg = load_site_config(site_file)
    hub = cfg.hub_for(cfg.host("labhost"))
    assert hub.wamp_server == "ws://10.0.0.1:8001/ws" and hub.wamp_realm == "lab_realm"
    assert hub.wamp_http == cfg.hub.wamp_http and hub.address_root == "observatory"
    assert cfg.hub_for(cfg.host("localhost")) == cfg.hub


# --- argument groups ------------------------------------------------------------------------

def test_split_groups_keeps_negative_numbers_as_values():
    assert split_groups(["--num", "-5", "-x", "-1e3", "--a=1", "-.5", "pos"]) == [
        ("--num", ["--num", "-5"]), ("-x", ["-x", "-1e3"]), ("--a", ["--a=1", "-.5", "pos"])]
    assert split_groups(["lead", "--b"]) == [(None, ["lead"]), ("--b", ["--b"])]


def test_merge_command_line_replaces_same_flag():
    config = ["--mode", "acq", "--num", "-5", "--flag"]
    assert merge_arguments(config, ["--num", "-7"]) == ["--mode", "acq", "--flag", "--num", "-7"]
    assert merge_arguments(config, ["--num=3"]) == ["--mode", "acq", "--flag", "--num=3"]
    assert merge_arguments(config, []) == config
    assert merge_arguments(["a", "--x", "1"], ["b"]) == ["b", "--x", "1"]


# --- parse_args -----------------------------------------------------------------------------

def test_parse_args_by_instance_id_merges_and_fills(site_file, tmp_path):
    args = parse_args("FakeDataAgent", agent_parser(),
                      ["--site-file", str(site_file), "--instance-id", "faker1", "--num", "-7",
                       "--working-dir", str(tmp_path)])
    assert (args.mode, args.num, args.flag) == ("acq", -7.0, True)
    assert args.instance_id == "faker1" and args.site_host == "localhost"
    assert args.site_hub == "ws://127.0.0.1:8001/ws"
    assert args.site_http == "http://127.0.0.1:8001/call"
    assert (args.site_realm, args.address_root) == ("test_realm", "observatory")
    assert args.site_file == str(site_file.resolve())
    assert args.log_dir == str(tmp_path / "logs")
    assert args.crossbar_timeout == 0.0  # default: retry forever
    assert site_args.agent_address(args) == "observatory.faker1"
    assert args.agent_class == "FakeDataAgent"


def test_config_negative_number_stays_a_value(site_file):
    args = parse_args("FakeDataAgent", agent_parser(),
                      ["--site-file", str(site_file), "--instance-id", "faker1"])
    assert args.num == -5.0


def test_instance_by_unique_class_adds_instance_id(site_file):
    args = parse_args("OtherAgent", agent_parser(), ["--site-file", str(site_file)])
    assert args.instance_id == "other1" and args.num == 2.5


def test_several_instances_of_a_class_need_instance_id(site_file):
    with pytest.raises(SiteConfigError, match=r"several instances of agent-class 'FakeDataAgent' "
                                              r"\(faker1, faker2\); pass --instance-id"):
        parse_args("FakeDataAgent", agent_parser(), ["--site-file", str(site_file)])


def test_unknown_instance_lists_known_ones_for_the_host(site_file):
    with pytest.raises(SiteConfigError) as info:
        parse_args("FakeDataAgent", agent_parser(), ["--site-file", str(site_file), "--instance-id", "nope"])
    assert "unknown instance-id 'nope' (known: faker1, faker2, other1)" in str(info.value)
    with pytest.raises(SiteConfigError, match=r"unknown instance-id 'nope' \(known: lab1\)"):
        parse_args("X", agent_parser(), ["--site-file", str(site_file), "--site-host", "labhost",
                                         "--instance-id", "nope"])


def test_host_overrides_and_timeout_reach_the_agent(site_file):
    args = parse_args("LabAgent", agent_parser(), ["--site-file", str(site_file), "--site-host", "labhost"])
    assert args.site_hub == "ws://10.0.0.1:8001/ws" and args.site_realm == "lab_realm"
    assert args.crossbar_timeout == 30.0 and args.log_dir is None


def test_environment_overrides_and_command_line_wins(site_file, monkeypatch):
    monkeypatch.setenv("OCS_SITE_FILE", str(site_file))
    monkeypatch.setenv("INSTANCE_ID", "faker2")
    monkeypatch.setenv("SITE_HUB", "ws://127.0.0.1:9/ws")
    monkeypatch.setenv("CROSSBAR_TIMEOUT", "12")
    args = parse_args("FakeDataAgent", agent_parser(), [])
    assert args.instance_id == "faker2" and args.site_hub == "ws://127.0.0.1:9/ws"
    assert args.crossbar_timeout == 12.0 and args.mode == "idle"
    args = parse_args("FakeDataAgent", agent_parser(), ["--instance-id", "faker1", "--crossbar-timeout", "0"])
    assert args.instance_id == "faker1" and args.crossbar_timeout == 0.0 and args.mode == "acq"


def test_site_host_from_environment(site_file, monkeypatch):
    monkeypatch.setenv("SITE_HOST", "labhost")
    args = parse_args("LabAgent", agent_parser(), ["--site-file", str(site_file)])
    assert args.instance_id == "lab1" and args.site_host == "labhost"


def test_default_site_file_is_in_the_current_directory(site_file, monkeypatch):
    monkeypatch.chdir(site_file.parent)
    site_file.rename(site_file.parent / "site-config.yaml")
    args = parse_args("OtherAgent", agent_parser(), [])
    assert args.site_file == str((site_file.parent / "site-config.yaml").resolve())


def test_control_client_needs_no_instance_or_host(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HUB + "hosts:\n  somewhere: {}\n")
    args = parse_args(None, None, ["--site-file", str(path)])
    assert args.instance_id is None and args.site_http == "http://127.0.0.1:8001/call"
    args = parse_args("*control*", None, ["--site-hub", "ws://h:1/ws", "--site-http", "http://h:1/call",
                                          "--site-realm", "r", "--address-root", "a",
                                          "--site-file", str(tmp_path / "absent.yaml")])
    assert (args.site_realm, args.address_root) == ("r", "a")


def test_parse_args_adds_site_options_once():
    parser = site_args.add_arguments(agent_parser())
    assert site_args._has_site_options(parser)
    with pytest.raises(SystemExit):  # a bad option value is argparse's usual error
        parse_args(None, parser, ["--crossbar-timeout", "-3"])


# The precedence table of docs/site-and-router.md, row by row:
# (--site-file, --site, $OCS_CONFIG_DIR, $OCS_SITE_FILE, ./site-config.yaml exists) -> file
RESOLUTION = [
    ("given.yaml", None, "/etc/ocs", "/x/env.yaml", True, "given.yaml"),
    (None, "lab", "/etc/ocs", "/x/env.yaml", True, "/etc/ocs/lab.yaml"),
    (None, None, "/etc/ocs", "/x/env.yaml", True, "/etc/ocs/default.yaml"),
    (None, None, "/etc/ocs", None, True, "/etc/ocs/default.yaml"),
    (None, None, None, "/x/env.yaml", True, "/x/env.yaml"),
    (None, None, None, None, True, "site-config.yaml"),
    (None, None, None, None, False, "site-config.yaml"),
]


@pytest.mark.parametrize("site_file,site,config_dir,env_file,local,expected", RESOLUTION)
def test_site_file_precedence(tmp_path, monkeypatch, site_file, site, config_dir, env_file, local,
                              expected):
    monkeypatch.chdir(tmp_path)
    if local:
        (tmp_path / "site-config.yaml").write_text("")
    for var, value in (("OCS_CONFIG_DIR", config_dir), ("OCS_SITE_FILE", env_file)):
        if value:
            monkeypatch.setenv(var, value)
    assert str(site_args.site_file_path(site_file, site)) == expected


@pytest.mark.parametrize("site_file,site,config_dir,message", [
    ("a.yaml", "lab", "/etc/ocs", "give --site or --site-file, not both"),
    (None, "lab", None, "--site lab: $OCS_CONFIG_DIR is not set"),
    (None, "none", "/etc/ocs", "--site none (no site file) is not supported"),
])
def test_site_file_precedence_errors(monkeypatch, site_file, site, config_dir, message):
    if config_dir:
        monkeypatch.setenv("OCS_CONFIG_DIR", config_dir)
    with pytest.raises(SiteConfigError) as info:
        site_args.site_file_path(site_file, site)
    assert message in str(info.value)


def test_site_name_reaches_agents_and_clients(site_file, monkeypatch):
    monkeypatch.setenv("OCS_CONFIG_DIR", str(site_file.parent))
    site_file.rename(site_file.parent / "lab.yaml")
    args = parse_args("FakeDataAgent", agent_parser(), ["--site", "lab", "--instance-id", "faker2"])
    assert args.site_file == str((site_file.parent / "lab.yaml").resolve())
    args = parse_args(None, None, ["--site", "lab"])
    assert args.site_realm == "test_realm"


# Which host: (--site-host, $SITE_HOST, who asks) -> host entry
HOSTS = [
    ("labhost", "other", "LabAgent", "labhost"),
    (None, "labhost", "LabAgent", "labhost"),      # agents take $SITE_HOST, as ocs-agent-cli
    (None, "labhost", None, "localhost"),          # clients do not, as ocs's clients
    ("labhost", None, None, "labhost"),
]


@pytest.mark.parametrize("given,env,agent_class,expected", HOSTS)
def test_site_host_precedence(site_file, monkeypatch, given, env, agent_class, expected):
    monkeypatch.setattr(socket, "gethostname", lambda: "not-in-the-file")
    if env:
        monkeypatch.setenv("SITE_HOST", env)
    argv = ["--site-file", str(site_file)] + (["--site-host", given] if given else [])
    args = parse_args(agent_class, agent_parser(), argv)
    assert args.site_host == expected


def test_launcher_commands_take_site_host_from_the_environment(monkeypatch):
    monkeypatch.setenv("SITE_HOST", "labhost")
    assert site_args.site_host_default(None) == "labhost"
    assert site_args.site_host_default("given") == "given"
    monkeypatch.delenv("SITE_HOST")
    assert site_args.site_host_default(None) is None


def test_help_needs_no_site_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        parse_args("FakeDataAgent", agent_parser(), ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--mode" in out and "--site-file" in out


def test_an_unmodified_ocs_site_file_loads():
    from pathlib import Path
    cfg = load_site_config(Path(__file__).parent / "data" / "ocs-site.yaml")
    local = cfg.hosts["localhost"]
    assert local.agent_paths == ("/home/ocs/git/socs/agents",)
    assert local.crossbar.config_dir == "./dot_crossbar/" and local.crossbar.bin is None
    assert [i.manage for i in local.agent_instances] == [
        "ignore", "host/up", "host/up", "host/up", "docker/up", "host/down"]
    notes = local.unused_settings()
    assert len(notes) == 2 and notes[0].startswith("agent-paths") and "crossbar config-dir" in notes[1]
    assert cfg.hosts["ocs-docker"].unused_settings() == []


@pytest.mark.parametrize("host_text,message", [
    ("crossbar: {config-dir: x, port: 1}", "hosts.h.crossbar: unknown key 'port'"),
    ("crossbar: {bin: 3}", "hosts.h.crossbar.bin: expected a path"),
    ("agent-paths: {a: b}", "hosts.h.agent-paths: expected a list of directories"),
])
def test_ocs_host_keys_are_checked(host_text, message):
    with pytest.raises(SiteConfigError, match=re.escape(message)):
        parse_site_config(HUB + f"hosts:\n  h:\n    {host_text}\n")


def test_explicit_null_manage_is_ocs_default():
    cfg = parse_site_config(HUB + "hosts:\n  h:\n    agent-instances:\n"
                                  "      - {agent-class: A, instance-id: a, manage: null}\n")
    assert cfg.hosts["h"].instance("a").manage == "host/up"
