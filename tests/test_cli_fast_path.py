"""``ocs-core agent`` loads only its own subcommand module; other commands see the full parser."""
from __future__ import annotations

import json
import subprocess
import sys

from ocs_core.testing import project_env

PROBE = """
import json, sys
from ocs_core.cli import main as cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({"clients": "clients.cli_commands" in sys.modules, "requests": "requests" in sys.modules}))
"""


def loaded_after(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                            timeout=60, env=project_env())
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_agent_subcommand_does_not_import_the_client_commands():
    assert loaded_after("agent", "--help") == {"clients": False, "requests": False}


def test_full_help_still_lists_every_subcommand():
    assert loaded_after("--help")["clients"] is True
    result = subprocess.run([sys.executable, "-m", "ocs_core.cli", "--help"], capture_output=True,
                            text=True, timeout=60, env=project_env())
    assert result.returncode == 0
    for command in ("router", "agent", "status", "call"):
        assert command in result.stdout


SERIALIZERS = """
import json, sys
from ocs_core._quiet_imports import skip_unused_serializers
skip_unused_serializers()
import agents.fake_data.agent
from autobahn.wamp import serializer
from autobahn.wamp.message import Call
for cls in (serializer.JsonSerializer, serializer.CBORSerializer, serializer.MsgPackSerializer):
    ser = cls()
    payload, binary = ser.serialize(Call(1, "observatory.faker.ops", args=["status", "acq"]))
    assert ser.unserialize(payload, binary)[0].procedure == "observatory.faker.ops"
print(json.dumps({"numpy": "numpy" in sys.modules, "ubjson": hasattr(serializer, "UBJSONSerializer")}))
"""


def test_agents_load_no_numpy_through_unused_serializers():
    result = subprocess.run([sys.executable, "-c", SERIALIZERS], capture_output=True, text=True,
                            timeout=60, env=project_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"numpy": False, "ubjson": False}
