"""ocs_core.runtime.logs: the fast line formatter agrees with Twisted's formatEvent."""
from __future__ import annotations

import pytest
from twisted.logger import formatEvent

from ocs_core.runtime.logs import _format


class Thing:
    name = "thing"

    def __repr__(self) -> str:
        return "<Thing>"


@pytest.mark.parametrize("event", [
    {"log_format": "{op}:{sid} {text}", "op": "delay_task", "sid": 3, "text": 'Status is now "done".'},
    {"log_format": "{x!r} and {x.name} and {d[k]}", "x": Thing(), "d": {"k": 1.5}},
    {"log_format": "no fields at all"},
    {"log_format": "{missing} key"},
    {"log_format": "called {f()}", "f": lambda: 42},
    {"log_format": "{n:.2f} {{literal}}", "n": 3.14159},
    {"log_format": None, "log_text": "ignored"},
    {"message": ("no format",)},
])
def test_format_matches_twisted(event):
    assert _format(event) == formatEvent(event)


LINE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR|CRITICAL) \S"


def test_instrument_server_process_logs_in_the_agents_format():
    import re
    import signal
    import subprocess
    import sys

    from ocs_core.testing import project_env

    proc = subprocess.Popen([sys.executable, "-m", "agents.instrument.simulated", "--port", "0", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env(),
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline().startswith("listening on 127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    lines = err.splitlines()
    assert any("SimulatedInstrument listening on" in line for line in lines), err
    for line in lines:
        assert re.match(LINE, line), line
        assert "object at 0x" not in line, line


def test_every_process_formats_lines_alike():
    import re

    from ocs_core.runtime.log_format import format_line
    from ocs_core.supervisor.launcher import Supervisor

    assert format_line("x", when=1795418773.9996) == "2026-11-23T07:26:13.999 INFO  x"
    assert format_line("y", "WARN", when=0.5, prefix="faker ") == "1970-01-01T00:00:00.500 WARN  faker y"
    lines = []
    sup = Supervisor.__new__(Supervisor)
    sup._out = lines.append
    sup.log("f1: started (pid 1)")
    assert re.match(LINE, lines[0]) and lines[0].endswith(" INFO  f1: started (pid 1)")
