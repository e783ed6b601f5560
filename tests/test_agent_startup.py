"""Agent start and stop: clear one-line errors, a clean log, a prompt exit on SIGTERM."""
import re
import signal
import subprocess
import sys

import pytest

from ocs_core.testing import free_port, http_call, project_env, write_site_config


def run_agent(site_file, instance_id, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "ocs_core.cli", "agent", instance_id,
                           "--site-file", str(site_file), *args],
                          capture_output=True, text=True, timeout=timeout, env=project_env())


def error_lines(text):
    return [line for line in text.splitlines() if " ERROR " in line or "error:" in line]


def test_unknown_instance_lists_known_ones(router):
    result = run_agent(router.site_file, "no-such-agent")
    assert result.returncode == 78  # a configuration error: supervisors do not retry it
    assert "no-such-agent" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_instance_already_running(router):
    router.add_instance("FakeDataAgent", "twice")
    first = router.agent("twice")
    try:
        first.wait_registered(15)
        result = run_agent(router.site_file, "twice")
        assert result.returncode == 1
        [line] = error_lines(result.stderr)
        assert "instance-id 'twice' is already running on this router" in line
        assert "Traceback" not in result.stderr
        assert first.is_running()
    finally:
        first.terminate()


@pytest.mark.parametrize("site_options, expected", [
    ({"address_root": "elsewhere"}, ["address_root 'elsewhere'", "not_authorized"]),
    ({"realm": "no_realm"}, ["refused realm 'no_realm'"]),
])
def test_namespace_the_router_refuses(router, tmp_path, site_options, expected):
    site = write_site_config(tmp_path, router.port, [{"agent-class": "FakeDataAgent", "instance-id": "x1"}],
                             **site_options)
    result = run_agent(site, "x1")
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert all(text in line for text in expected), line


def test_router_unreachable_says_so_and_gives_up_when_asked(tmp_path):
    site = write_site_config(tmp_path, free_port(), [{"agent-class": "FakeDataAgent", "instance-id": "x3"}])
    result = run_agent(site, "x3", "--crossbar-timeout", "1")
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert any("router unreachable at ws://127.0.0.1:" in line for line in lines)
    assert any("--crossbar-timeout" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_clean_start_and_prompt_sigterm(router):
    router.add_instance("FakeDataAgent", "clean", ["--sample-rate", "20"])
    agent = router.agent("clean")
    try:
        _exercise_and_stop(router, agent)
    finally:
        agent.terminate()


def _exercise_and_stop(router, agent):
    agent.wait_registered(15)
    addr = router.address("clean")
    for action, op, params in [("start", "acq", {}), ("start", "count", {}),
                               ("start", "delay_task", {"delay": 0.1})]:
        assert http_call(router.http_url, f"{addr}.ops", action, op, params)["args"][0][0] == 0
    assert http_call(router.http_url, f"{addr}.ops", "wait", "delay_task", {}, 5)["args"][0][0] == 0
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(10) == 0  # acq (a thread) and count are stopped on the way out
    out = agent.log_text()
    assert "Traceback" not in out and " WARN " not in out and " ERROR " not in out, out
    lines = out.strip().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+ (INFO|DEBUG) ", line) for line in lines), lines
    assert 'acq:0 Acquisition exited cleanly.' in out and 'count:1 Exited on request.' in out, out
