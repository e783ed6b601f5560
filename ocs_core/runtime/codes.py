"""Reply codes and operation codes of the ocs wire protocol."""
from enum import IntEnum


class ResponseCode(IntEnum):
    """Whether a control request was carried out (not whether the operation succeeded)."""

    OK = 0
    ERROR = -1
    TIMEOUT = 1


class OpCode(IntEnum):
    """The state of an operation, as published in heartbeats and sessions."""

    NONE = 1
    STARTING = 2
    RUNNING = 3
    STOPPING = 4
    SUCCEEDED = 5
    FAILED = 6
    EXPIRED = 7
    DEGRADED = 8


OK = ResponseCode.OK
ERROR = ResponseCode.ERROR
TIMEOUT = ResponseCode.TIMEOUT

#: The combined ``.ops`` action of ocs-core agents: ``start`` (with all its checks) then ``wait``,
#: in one call. ocs 0.12 agents do not serve it: clients first ask the agent's management
#: procedure ``ocs_core.features`` (ocs agents answer null) whether ``ops_actions`` lists it.
START_AND_WAIT = "start_and_wait"

#: The management query that tells an ocs-core agent from an ocs one.
FEATURES_QUERY = "ocs_core.features"
