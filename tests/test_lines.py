"""Tests of the sans-IO tab-separated line protocol (no network, no Twisted)."""
import random

import pytest

from ocs_core.framing.lines import (
    FramingError,
    LineSplitter,
    Reply,
    ReplyParser,
    Request,
    RequestParser,
    encode_error,
    encode_ok,
    encode_request,
    escape,
    unescape,
)


def test_request_and_arguments():
    assert RequestParser().feed(b"measure\t1.5\n") == [Request("measure", ("1.5",))]
    assert RequestParser().feed(b"ping\n") == [Request("ping", ())]
    assert RequestParser().feed(b"set\ta\t\tb\n") == [Request("set", ("a", "", "b"))]


def test_fragmented_input_byte_by_byte():
    data = b"ping\nmeasure\t2.5\r\nread\n"
    parser = RequestParser()
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    assert events == [Request("ping"), Request("measure", ("2.5",)), Request("read")]
    assert parser.buffered == 0


def test_random_fragmentation_gives_same_events():
    rng = random.Random(4)
    data = b"".join(encode_request("measure", i / 7) for i in range(200))
    whole = RequestParser().feed(data)
    for _ in range(20):
        parser, events, pos = RequestParser(), [], 0
        while pos < len(data):
            step = rng.randint(1, 40)
            events += parser.feed(data[pos:pos + step])
            pos += step
        assert events == whole
    assert len(whole) == 200


def test_partial_line_waits_for_newline():
    parser = RequestParser()
    assert parser.feed(b"meas") == []
    assert parser.buffered == 4
    assert parser.feed(b"ure\t3") == []
    assert parser.feed(b"\n") == [Request("measure", ("3",))]


def test_crlf_tolerated_and_cr_only_inside_line_kept():
    assert RequestParser().feed(b"ping\r\n") == [Request("ping")]
    assert ReplyParser().feed(b"1\t42\r\n") == [Reply(True, ("42",))]


def test_overlong_line_yields_one_error_and_resynchronises():
    parser = RequestParser(max_line=16)
    events = parser.feed(b"x" * 10)
    assert events == []
    events = parser.feed(b"y" * 100)
    assert len(events) == 1 and isinstance(events[0], FramingError)
    assert "longer than 16 bytes" in events[0].message
    # the rest of the long line is dropped without buffering
    assert parser.feed(b"z" * 10_000) == []
    assert parser.buffered == 0
    assert parser.feed(b"zzz\nping\n") == [Request("ping")]


def test_overlong_line_in_one_chunk_with_newline():
    parser = RequestParser(max_line=8)
    events = parser.feed(b"a" * 20 + b"\nping\n")
    assert isinstance(events[0], FramingError)
    assert events[1:] == [Request("ping")]


def test_line_at_limit_is_accepted_with_and_without_cr():
    parser = RequestParser(max_line=8)
    assert parser.feed(b"12345678\n") == [Request("12345678")]
    assert parser.feed(b"12345678\r\n") == [Request("12345678")]
    events = parser.feed(b"123456789\n")
    assert len(events) == 1 and isinstance(events[0], FramingError)


def test_buffer_never_exceeds_limit():
    parser = LineSplitter(max_line=32)
    rng = random.Random(1)
    for _ in range(500):
        parser.feed(bytes(rng.choice(b"ab\n") if rng.random() < 0.02 else 97
                          for _ in range(rng.randint(1, 90))))
        assert parser.buffered <= 33


def test_empty_and_bad_requests_are_errors():
    events = RequestParser().feed(b"\n\r\n\tx\n\xff\xfe\n")
    assert len(events) == 4 and all(isinstance(e, FramingError) for e in events)
    assert "empty" in events[0].message
    assert "no command name" in events[2].message
    assert "UTF-8" in events[3].message


def test_encode_request_rejects_tabs_and_newlines():
    assert encode_request("measure", 1.5) == b"measure\t1.5\n"
    with pytest.raises(ValueError, match="argument 1"):
        encode_request("measure", "1\t2")
    with pytest.raises(ValueError, match="command name"):
        encode_request("bad\ncmd")
    with pytest.raises(ValueError):
        encode_request("")


def test_replies_are_sent_and_read_as_they_are():
    assert encode_ok() == b"1\t\n"
    assert encode_ok(3.25) == b"1\t3.25\n"
    assert encode_error("no such command") == b"0\tno such command\n"
    # sm-bluesky's servers send C:\temp\new as is; so do we, and the parser keeps it byte-for-byte
    assert encode_ok("C:\\temp\\new") == b"1\tC:\\temp\\new\n"
    assert ReplyParser().feed(b"1\tC:\\temp\\new\n") == [Reply(True, ("C:\\temp\\new",))]
    assert ReplyParser().feed(b"1\ta\\tb\n")[0].data == "a\\tb"
    with pytest.raises(ValueError, match="holds a line break"):
        encode_ok("two\nlines")
    assert encode_error("first\nsecond") == b"0\tfirst | second\n"


def test_unescaping_is_an_opt_in():
    nasty = "a\tb\nc\\d\re"
    line = ("1\t" + escape(nasty) + "\tx\n").encode()
    assert line.count(b"\n") == 1 and line.count(b"\t") == 2
    assert ReplyParser(unescape=True).feed(line) == [Reply(True, (nasty, "x"))]
    assert ReplyParser().feed(line) == [Reply(True, (escape(nasty), "x"))]
    assert unescape(escape(nasty)) == nasty


def test_reply_parsing():
    replies = ReplyParser().feed(b"1\t\n1\n0\toops\n1\ta\tb\n")
    assert replies == [Reply(True, ()), Reply(True, ()), Reply(False, ("oops",)),
                       Reply(True, ("a", "b"))]
    assert replies[3].data == "a\tb"
    assert replies[2].data == "oops"
    bad = ReplyParser().feed(b"2\tx\nhello\n")
    assert all(isinstance(e, FramingError) for e in bad) and len(bad) == 2


def test_unknown_escape_is_kept():
    assert unescape("C:\\x\\") == "C:\\x\\"
