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
