"""The client subcommands of ``ocs-core`` (scan, status, call, stop, abort, listen) as subprocesses
against the real router and a real FakeDataAgent."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clients.cli_commands import UsageError, parse_params, parse_value
from helpers_clients import start_agents
from ocs_core.testing import free_port, project_env, write_site_config

FAKER = "cli-faker"


@pytest.fixture(scope="module")
def faker(router):
    started = start_agents(router, [("FakeDataAgent", FAKER)])
    yield started[0]
    for agent in started:
        agent.terminate()


def _cmd(site_file, *args):
    return [sys.executable, "-m", "ocs_core.cli", *args, "--site-file", str(site_file)]


def ocs(router, *args, timeout=60):
    return subprocess.run(_cmd(router.site_file, *args), capture_output=True, text=True,
                          timeout=timeout, env=project_env(), stdin=subprocess.DEVNULL)


def _one_line_error(result, *fragments):
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocs-core: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- value parsing (no network) -------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("1", 1), ("1.5", 1.5), ("-2e3", -2000.0), ("true", True), ("false", False), ("null", None),
    ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}), ('"quoted"', "quoted"), ("hello", "hello"),
    ("", ""), ("1,2", "1,2"), ("NaNs", "NaNs"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_parse_params():
    assert parse_params(["delay=1", "succeed=false", "name=x=y", "tags=[1,\"a\"]"]) == \
        {"delay": 1, "succeed": False, "name": "x=y", "tags": [1, "a"]}
    for bad in ("delay", "=1"):
        with pytest.raises(UsageError, match="not key=value"):
            parse_params([bad])


# -- commands ------------------------------------------------------------------------------------
def test_scan_lists_live_agent(router, faker):
    result = ocs(router, "scan")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Live agents: ")
    assert lines[1].split() == ["instance-id", "class", "host", "ops"]
    row = next(line for line in lines if line.startswith(FAKER + " "))
    assert "FakeDataAgent" in row
    for op in ("acq=", "count=", "set_heartbeat=", "delay_task="):
        assert op in row
    assert all(line == line.rstrip() for line in lines), "rows padded with trailing spaces"


def test_status_of_agent_and_op(router, faker):
    result = ocs(router, "status", FAKER)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{FAKER}: FakeDataAgent on ")
    assert lines[1].split() == ["op", "type", "status"]
    assert {line.split()[0] for line in lines[2:]} == {"delay_task", "set_heartbeat", "acq", "count"}
    result = ocs(router, "status", FAKER, "set_heartbeat")
    assert result.returncode == 0
    assert result.stdout.startswith("OCSReply: OK : ")


def test_call_task_prints_messages_as_they_arrive(router, faker):
    proc = subprocess.Popen(_cmd(router.site_file, "call", FAKER, "delay_task", "delay=2.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=project_env(), stdin=subprocess.DEVNULL)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if line.rstrip().endswith('Status is now "running".'):
                assert proc.poll() is None  # printed while the task still runs
                break
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert seen[0].endswith('Status is now "starting".')
    out = rest.splitlines()
    assert out[0].endswith("Exited after 2.5 seconds")
    assert out[1].endswith('Status is now "done".')
    assert json.loads("\n".join(out[2:]))["requested_delay"] == 2.5


def test_call_parses_json_values_and_failure_exits_1(router, faker):
    result = ocs(router, "call", FAKER, "delay_task", "delay=0.1", "succeed=false")
    assert "Exited after 0.1 seconds" in result.stdout
    _one_line_error(result, f"{FAKER} delay_task failed: Exited after 0.1 seconds")
    result = ocs(router, "call", FAKER, "set_heartbeat", "heartbeat=true")
    assert result.returncode == 0 and "Set heartbeat_on: True" in result.stdout


def test_call_errors_are_one_line(router, faker):
    _one_line_error(ocs(router, "call", FAKER, "delay_task", "delay=abc"), "delay", "abc")
    _one_line_error(ocs(router, "call", FAKER, "delay_task", "delay"), "'delay' is not key=value")
    _one_line_error(ocs(router, "call", FAKER, "no_op"), "has no op 'no_op'", "delay_task")
    _one_line_error(ocs(router, "status", "no-such-agent"), "no-such-agent", "is the agent running?")


def test_process_call_listen_and_stop(router, faker):
    result = ocs(router, "call", FAKER, "acq")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('OCSReply: OK : Started process "acq".\n  acq[session=')
    try:
        result = ocs(router, "listen", f"{FAKER}.false_temperatures", "--count", "1")
        assert result.returncode == 0, result.stderr
        topic = f"{router.address_root}.{FAKER}.feeds.false_temperatures"
        line, = result.stdout.splitlines()
        assert line.startswith(f"[{topic}] [{{'temps': {{'block_name': 'temps'")
        result = ocs(router, "listen", topic, "--count", "2", "--json")
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(events) == 2
        for event in events:
            assert event["topic"] == topic
            payload, info = event["message"]
            assert set(payload["temps"]["data"]) == {"channel_00", "channel_01"}
            assert info["feed_name"] == "false_temperatures"
        result = ocs(router, "listen", f"{router.address_root}..feeds.heartbeat", "--count", "1", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["topic"].endswith(".feeds.heartbeat")
    finally:
        result = ocs(router, "stop", FAKER, "acq")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('OCSReply: OK : Requested stop on process acq".')
    wait = ocs(router, "status", FAKER, "acq")
    assert "acq[session=" in wait.stdout


def test_abort_and_stop(router, faker):
    result = ocs(router, "call", FAKER, "delay_task", "delay=10", "--no-wait")
    assert result.returncode == 0 and "Started task" in result.stdout
    result = ocs(router, "abort", FAKER, "delay_task")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('OCSReply: OK : Requested abort on task delay_task".')
    _one_line_error(ocs(router, "stop", FAKER, "delay_task"), "delay_task is a Task", "ocs-core abort")
    _one_line_error(ocs(router, "abort", FAKER, "count"), "count is a Process", "ocs-core stop")
    _one_line_error(ocs(router, "stop", FAKER, "count"), f"stop {FAKER} count: No session active.")


def test_listen_bad_topic(router, faker):
    _one_line_error(ocs(router, "listen", "a.b.c"), "'a.b.c'", "INSTANCE.FEED")


def test_listen_to_an_unknown_feed_says_so(router, faker):
    result = ocs(router, "listen", f"{FAKER}.nosuchfeed", "--duration", "2")
    _one_line_error(result, f"{FAKER} has no feed 'nosuchfeed'; its feeds: false_temperatures, heartbeat")
    result = ocs(router, "listen", f"{router.address_root}.{FAKER}.feeds.nosuchfeed", "--duration", "2")
    _one_line_error(result, "has no feed 'nosuchfeed'")


def test_call_with_an_option_shows_the_subcommands_usage(router, faker):
    result = ocs(router, "call", FAKER, "delay_task", "--delay", "2")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ocs-core call "), result.stderr
    assert "op params are key=value" in result.stderr


def test_call_refuses_a_boolean_for_a_number(router, faker):
    _one_line_error(ocs(router, "call", FAKER, "delay_task", "delay=true"),
                    "Param 'delay'=True is not of required type", "a boolean is not a number")


def test_output_into_a_closed_pipe_ends_quietly(router, faker):
    proc = subprocess.Popen(_cmd(router.site_file, "status", FAKER), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=project_env(), stdin=subprocess.DEVNULL)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    _out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode == 141


def test_router_down_one_line(tmp_path):
    port = free_port()
    site = write_site_config(tmp_path, port)
    for args in (("status", "x"), ("call", "x", "op")):
        result = subprocess.run(_cmd(site, *args), capture_output=True, text=True, timeout=30,
                                env=project_env(), stdin=subprocess.DEVNULL)
        _one_line_error(result, f"http://127.0.0.1:{port}/call", "is the router running?")
    for args in (("scan",),):
        result = subprocess.run(_cmd(site, *args), capture_output=True, text=True, timeout=30,
                                env=project_env(), stdin=subprocess.DEVNULL)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"cannot reach the router at ws://127.0.0.1:{port}/ws" in lines[0]
