"""Twisted control programs (client_t.run_control_script) as real subprocesses against the router,
including the thermometry example under clients/examples/."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from helpers_clients import start_agents
from ocs_core.testing import free_port, project_env, write_site_config

FAKER = "cp-faker"


@pytest.fixture(scope="module")
def faker(router):
    started = start_agents(router, [("FakeDataAgent", FAKER)])
    yield started[0]
    for agent in started:
        agent.terminate()


def _run(args, timeout=60):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, env=project_env(), stdin=subprocess.DEVNULL)


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


def test_thermometry_example_end_to_end(router, faker):
    result = _run(["-m", "clients.examples.thermometry", "--site-file", str(router.site_file),
                   "--target", FAKER, "--watch", "2", "--interval", "0.5", "--delay", "0.3"])
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"Starting data acquisition on {router.address_root}.{FAKER}"
    readings = [line for line in out if line.startswith("latest temperatures: channel_00=")]
    assert readings and all("channel_01=" in line and line.endswith(" K") for line in readings)
    assert "acq stopped: Acquisition exited cleanly." in out
    assert "Running delay_task(delay=0.3)" in out
    assert out[-1].startswith("delay_task done: Exited after 0.")


def test_thermometry_example_fails_for_missing_agent(router, faker):
    result = _run(["-m", "clients.examples.thermometry", "--site-file", str(router.site_file),
                   "--target", "no-such-agent", "--watch", "0"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: wamp.error.no_such_procedure: no callee registered for procedure "
        f"<{router.address_root}.no-such-agent.ops> (is the agent running? `ocs-core scan`)"]


def test_coroutine_program_with_own_options(router, faker, tmp_path):
    script = _script(tmp_path, """
        import argparse
        from clients import client_t

        async def main(app, pargs, greeting):
            count = client_t.ProcessClient(app, pargs.address_root + "." + pargs.target, "count")
            code, msg, session = await count.status()
            await client_t.dsleep(0.05)
            print(greeting, pargs.target, code, msg)

        parser = argparse.ArgumentParser()
        parser.add_argument("--target", default="nobody")
        client_t.run_control_script(main, parser, "hello")
    """)
    result = _run([script, "--site-file", str(router.site_file), "--target", FAKER])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in (f"hello {FAKER} 0 No session active.",
                                     f"hello {FAKER} 0 Session active.")


def test_failing_program_exits_nonzero(router, tmp_path):
    script = _script(tmp_path, """
        from clients import client_t

        def main(app, pargs):
            yield client_t.dsleep(0.01)
            raise ValueError("the cryostat is too warm")

        client_t.run_control_script(main)
    """)
    result = _run([script, "--site-file", str(router.site_file)])
    assert result.returncode == 1
    assert "error: ValueError: the cryostat is too warm" in result.stderr


def test_program_without_router_fails_fast(tmp_path):
    site = write_site_config(tmp_path, free_port())  # nothing listens there
    script = _script(tmp_path, """
        from clients import client_t

        def main(app, pargs):
            yield client_t.dsleep(0.01)

        client_t.run_control_script(main)
    """)
    t0 = time.monotonic()
    result = _run([script, "--site-file", str(site)], timeout=30)
    assert time.monotonic() - t0 < 20
    assert result.returncode == 1
    assert "cannot reach the router at ws://127.0.0.1:" in result.stderr
