"""OpSession: state machine, op codes, messages and encoding (no network)."""
import json
import math

import numpy as np
import pytest

from ocs_core.runtime.codes import OpCode
from ocs_core.runtime.session import MAX_MESSAGES, OpSession, no_history, sanitize


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        self.t += 1.0
        return self.t


def test_encoding_has_ocs_keys_in_order():
    s = OpSession(3, "acq", clock=FakeClock())
    enc = s.encoded()
    assert list(enc) == ["session_id", "op_name", "op_code", "cred_level", "status", "degraded",
                         "success", "start_time", "end_time", "data", "messages"]
    assert enc["session_id"] == 3 and enc["status"] == "starting" and enc["op_code"] == 2
    assert enc["messages"] == [[101.0, 'Status is now "starting".']]
    assert enc["success"] is None and enc["end_time"] is None and enc["data"] == {}


def test_forward_only_status_and_op_codes():
    s = OpSession(0, "x", clock=FakeClock())
    s.set_status("running")
    assert s.op_code == OpCode.RUNNING
    s.degraded = True
    assert s.op_code == OpCode.DEGRADED
    s.set_status("running")  # same value: no new message
    assert len(s.messages) == 2
    s.set_status("stopping")
    assert s.op_code == OpCode.STOPPING  # degraded is ignored outside running
    with pytest.raises(ValueError, match="cannot go back"):
        s.set_status("running")
    with pytest.raises(ValueError, match="unknown session status"):
        s.set_status("paused")
    s.finish(True, "all good")
    assert s.op_code == OpCode.SUCCEEDED and s.end_time == s.messages[-1][0]
    assert [m[1] for m in s.messages][-2:] == ["all good", 'Status is now "done".']


def test_failed_op_code():
    s = OpSession(0, "x")
    s.finish(False, "nope")
    assert s.op_code == OpCode.FAILED and s.encoded()["success"] is False


def test_data_is_sanitised_so_encoding_never_fails():
    s = OpSession(0, "x")
    s.data = {"nan": float("nan"), "inf": float("inf"), "arr": np.array([1.0, np.nan]),
              "np": np.float32(2.5), "tuple": (1, 2), 3: object.__new__(object)}
    enc = s.encoded()
    text = json.dumps(enc, allow_nan=False)
    data = json.loads(text)["data"]
    assert data["nan"] is None and data["inf"] is None and data["arr"] == [1.0, None]
    assert data["np"] == 2.5 and data["tuple"] == [1, 2] and data["3"].startswith("<object")


def test_sanitize_scalars():
    assert sanitize(-math.inf) is None
    assert sanitize(np.int64(4)) == 4 and isinstance(sanitize(np.int64(4)), int)
    assert sanitize(True) is True


def test_messages_are_bounded():
    s = OpSession(0, "x")
    for i in range(MAX_MESSAGES + 50):
        s.add_message(f"m{i}")
    assert len(s.messages) == MAX_MESSAGES
    assert s.messages[-1][1] == f"m{MAX_MESSAGES + 49}"


def test_message_hook_sees_every_message():
    seen = []
    s = OpSession(1, "x", on_message=lambda sess, text: seen.append((sess.op_name, text)))
    s.add_message("hello")
    assert seen == [("x", 'Status is now "starting".'), ("x", "hello")]


def test_no_history_placeholder():
    assert no_history("acq") == {"op_name": "acq", "status": "no_history"}
