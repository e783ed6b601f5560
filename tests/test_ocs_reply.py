"""OCSReply's text form, with fixed sessions and a fixed "now" (no network)."""
from __future__ import annotations

import pytest

import clients
from clients.ocs_client import ERROR, OK, TIMEOUT, OCSReply, _duration

T0 = 1635791278.562


def _session(**over):
    session = {"session_id": 6, "op_name": "delay_task", "op_code": 5, "status": "done",
               "success": True, "start_time": T0, "end_time": T0 + 1.005,
               "data": {"x": 1},
               "messages": [[T0, 'Status is now "starting".'],
                            [T0 + 0.001, 'Status is now "running".'],
                            [T0 + 1.004, "Exited after 1.0 seconds"],
                            [T0 + 1.005, 'Status is now "done".']]}
    session.update(over)
    return session


def test_codes_importable_from_package():
    assert (clients.OK, clients.ERROR, clients.TIMEOUT) == (0, -1, 1)
    assert (OK, ERROR, TIMEOUT) == (0, -1, 1)


def test_namedtuple_fields():
    reply = OCSReply(0, "Session active.", {})
    assert reply.status == 0 and reply.msg == "Session active." and reply.session == {}
    assert tuple(reply) == (0, "Session active.", {})
    assert reply[0] == OK


def test_done_session_block():
    reply = OCSReply(0, 'Operation "delay_task" is currently not running (SUCCEEDED).', _session())
    assert reply.format(now=T0 + 1.005 + 0.0075) == "\n".join([
        'OCSReply: OK : Operation "delay_task" is currently not running (SUCCEEDED).',
        "  delay_task[session=6]; status=done without error 0.007500 s ago, took 1.0 s",
        "  messages (4 of 4):",
        '    1635791278.562 Status is now "starting".',
        '    1635791278.563 Status is now "running".',
        "    1635791279.566 Exited after 1.0 seconds",
        '    1635791279.567 Status is now "done".',
        "  other keys in .session: op_code, data",
    ])


def test_failed_session_says_with_error_and_minutes_ago():
    reply = OCSReply(0, "Session active.", _session(success=False))
    head = reply.format(now=T0 + 1.005 + 76.4 * 60).splitlines()[1]
    assert head == "  delay_task[session=6]; status=done with ERROR 76.4 mins ago, took 1.0 s"


def test_running_session_block_and_codes():
    session = _session(status="running", success=None, end_time=None, op_code=3,
                       messages=[[T0, 'Status is now "starting".']])
    text = OCSReply(1, 'Operation "delay_task" still running; wait timed out.', session).format(now=T0 + 3.5)
    assert text.splitlines()[:3] == [
        'OCSReply: TIMEOUT : Operation "delay_task" still running; wait timed out.',
        "  delay_task[session=6]; status=running for 3.5 s",
        "  messages (1 of 1):",
    ]
    starting = OCSReply(0, 'Started task "delay_task".', dict(session, status="starting"))
    assert starting.format(now=T0 + 0.007555).splitlines()[1] == \
        "  delay_task[session=6]; status=starting for 0.007555 s"


def test_stopping_has_no_duration():
    session = _session(status="stopping", success=None, end_time=None)
    assert OCSReply(0, "x", session).format(now=T0 + 9).splitlines()[1] == \
        "  delay_task[session=6]; status=stopping"


def test_all_messages_printed_but_count_says_at_most_five():
    messages = [[T0 + i, f"m{i}"] for i in range(7)]
    lines = OCSReply(0, "x", _session(messages=messages)).format(now=T0 + 10).splitlines()
    assert lines[2] == "  messages (5 of 7):"
    assert lines[3:10] == [f"    {T0 + i:.3f} m{i}" for i in range(7)]


def test_error_reply_without_session():
    # a refused request carries {} although the op may have run: say "refused", not "never run"
    assert repr(OCSReply(-1, "Param 'watts'=11.0 is above the maximum (10.0)", {})) == (
        "OCSReply: ERROR : Param 'watts'=11.0 is above the maximum (10.0)\n"
        "  (no session in this reply: the request was refused; the op's own session is unchanged)")
    assert "never run" not in repr(OCSReply(-1, 'No task or process called "nope"', {}))
    # an OK reply without a session (status or wait of an op that never ran) keeps ocs's wording
    assert repr(OCSReply(0, "Idle.", None)).endswith("(no session -- op has never run)")
    assert repr(OCSReply(0, "No session active.", {})).endswith("(no session -- op has never run)")


def test_unknown_code_and_undecodable_session():
    text = repr(OCSReply(7, "odd", {"weird": 1}))
    assert text.startswith("OCSReply: ??? : odd\n")
    assert "(session could not be decoded)" in text and "'weird': 1" in text


def test_repr_uses_the_clock():
    # repr of a running session gives "for <something> s"; no fixed now needed
    text = repr(OCSReply(0, "x", _session(status="running", success=None, end_time=None)))
    assert text.splitlines()[1].startswith("  delay_task[session=6]; status=running for ")


@pytest.mark.parametrize("seconds, text", [
    (0.0075, "0.007500 s"), (3.46, "3.5 s"), (119.9, "119.9 s"), (120, "2.0 mins"),
    (76.4 * 60, "76.4 mins"), (2 * 3600, "2.0 hrs"), (47.9 * 3600, "47.9 hrs"),
    (48 * 3600, "2.0 days"),
])
def test_durations(seconds, text):
    assert _duration(seconds) == text
