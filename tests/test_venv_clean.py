"""The project's venv loads autobahn's serializers without bjdata's NumPy ABI traceback.

bjdata (crossbar -> autobahn[serialization]) ships only an sdist; its C extension, built against
NumPy 1.x, printed "_ARRAY_API not found" under NumPy 2 in every process that loads autobahn's
serializers: crossbar's workers and ocs's agents alike. The Makefile installs its pure-Python
build. (The router's own log is checked in ``test_router.py``; crossbar runs there unwrapped.)
"""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import numpy
import ocs.ocs_agent                     # what an ocs agent imports ...
from autobahn.wamp import serializer     # ... and what it loads when it connects
import bjdata
assert hasattr(serializer, "UBJSONSerializer"), "bjdata unusable"
print(numpy.__version__)
"""


def test_ocs_agents_and_autobahn_load_bjdata_without_a_traceback():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, env=env, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "_ARRAY_API" not in result.stderr and "Traceback" not in result.stderr, result.stderr
