"""ocs-core: agents with Tasks and Processes on a crossbar.io router, wire-compatible with ocs 0.12."""
from ocs_core import _quiet_imports  # noqa: F401  (must run before autobahn is imported)
from ocs_core.codes import ERROR, OK, TIMEOUT, OpCode, ResponseCode

__all__ = ["OK", "ERROR", "TIMEOUT", "OpCode", "ResponseCode"]
__version__ = "0.1.0"
