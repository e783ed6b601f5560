"""ocs-core: agents with Tasks and Processes on a crossbar.io router, wire-compatible with ocs 0.12."""
from ocs_core.runtime.codes import ERROR, OK, TIMEOUT, OpCode, ResponseCode
from ocs_core.runtime.lock import TimeoutLock
from ocs_core.runtime.params import ParamError, param

__all__ = ["OK", "ERROR", "TIMEOUT", "OpCode", "ResponseCode", "TimeoutLock", "param", "ParamError",
           "OCSAgent", "AgentConfig", "init_site_agent"]


def __getattr__(name: str):
    """The agent API, imported on first use (it pulls in Twisted and autobahn)."""
    if name in ("OCSAgent", "AgentConfig", "init_site_agent"):
        from ocs_core.runtime import agent
        return getattr(agent, name)
    raise AttributeError(f"module 'ocs_core' has no attribute {name!r}")
__version__ = "0.1.0"
