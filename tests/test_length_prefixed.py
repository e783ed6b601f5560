"""Tests for the sans-IO length-prefixed JSON framing (no network)."""
import json
import math
import random

import numpy as np
import pytest

from ocs_core.framing.length_prefixed import (
    DEFAULT_MAX_BODY, BadFrame, FrameParser, Message, decode_body, encode, encode_body, to_jsonable,
)


def frame(body: bytes) -> bytes:
    return b"%010d" % len(body) + body


# -- encoder -----------------------------------------------------------------------------------

def test_encode_matches_reference_bytes():
    assert encode("OK") == b'0000000004"OK"'
    assert encode({"command": "ready"}) == b'0000000020{"command": "ready"}'
    assert encode({"command": "goodset", "pickiness": 4}) == b'0000000038{"command": "goodset", "pickiness": 4}'
    assert encode({"command": "done"}) == b'0000000019{"command": "done"}'
    assert encode([2.0]) == b"0000000005[2.0]"


def test_encode_is_json_dumps_with_default_separators_and_ascii():
    obj = {"a": [1, 2.5, "é☃"], "b": {"c": None, "d": True}}
    body = json.dumps(obj).encode()
    assert encode(obj) == b"%010d" % len(body) + body
    assert b"\\u00e9" in encode(obj)


def test_encode_replaces_nan_and_inf_with_null_recursively():
    obj = {"x": [float("nan"), float("inf"), -float("inf"), 1.0], "y": (math.nan, {"z": math.inf})}
    assert json.loads(encode(obj)[10:]) == {"x": [None, None, None, 1.0], "y": [None, {"z": None}]}
    assert b"NaN" not in encode(obj) and b"Infinity" not in encode(obj)


def test_encode_converts_numpy():
    obj = {"a": np.array([[1, 2], [3, 4]], dtype=np.int64), "b": np.float64("nan"),
           "c": np.int64(7), "d": np.array([np.inf, 0.5], dtype=np.float32), "e": np.bool_(True),
           "f": (np.float64(2.0),)}
    assert json.loads(encode(obj)[10:]) == {"a": [[1, 2], [3, 4]], "b": None, "c": 7,
                                            "d": [None, 0.5], "e": True, "f": [2.0]}
    assert encode(np.float64(2.5)) == b"00000000032.5"


def test_encode_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        encode({"a": object()})
    with pytest.raises(TypeError):
        encode({1: "non-string key"})
    with pytest.raises(TypeError):
        encode(np.array([object()], dtype=object).tolist()[0])


def test_to_jsonable_leaves_plain_values():
    assert to_jsonable([1, "a", None, False, 1.5]) == [1, "a", None, False, 1.5]
    assert type(to_jsonable(True)) is bool


# -- parser: good frames ---------------------------------------------------------------------

def test_one_frame_in_one_chunk():
    assert FrameParser().receive(b'0000000020{"command": "ready"}') == [Message({"command": "ready"})]


def test_fragments_byte_by_byte():
    data = encode({"command": "newdat", "x": [1.5], "y": 2, "s": 0.1}) + encode("OK") + encode([1, [2]])
    parser = FrameParser()
    events = []
    for i in range(len(data)):
        events += parser.receive(data[i:i + 1])
    assert events == [Message({"command": "newdat", "x": [1.5], "y": 2, "s": 0.1}), Message("OK"),
                      Message([1, [2]])]
    assert parser.buffered == 0


def test_several_frames_in_one_chunk_and_random_splits():
    rng = random.Random(1234)
    values = [{"command": "getmean"}, [1, 2, 3], "é", {"k": [{"n": 3}] * 3}] + [i * 0.5 for i in range(50)]
    data = b"".join(encode(v) for v in values)
    assert FrameParser().receive(data) == [Message(v) for v in values]
    for _ in range(50):
        parser, events, pos = FrameParser(), [], 0
        while pos < len(data):
            step = rng.randint(1, 40)
            events += parser.receive(data[pos:pos + step])
            pos += step
        assert events == [Message(v) for v in values]


def test_unicode_body_length_is_in_bytes():
    body = '"héllo"'.encode("utf-8")
    assert FrameParser().receive(frame(body)) == [Message("héllo")]


def test_partial_frame_waits():
    parser = FrameParser()
    assert parser.receive(b"00000000") == []
    assert parser.receive(b"04") == []
    assert parser.receive(b'"O') == []
    assert parser.receive(b'K"') == [Message("OK")]


def test_pull_interface_leaves_bytes_buffered():
    parser = FrameParser()
    parser.feed(encode(1) + encode(2) + encode(3))
    assert parser.next_event() == Message(1)
    assert parser.buffered == 2 * len(encode(1))
    assert list(parser.events()) == [Message(2), Message(3)]
    assert parser.next_event() is None


# -- parser: malformed input -----------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b'{"command": "ready"}', b"00000000x4", b"+000000004", b" 000000004", b"-000000004",
    b"0x00000004", b"000000004\n", b"\xff", b"00000000\x00", "٠٠٠٠٠٠٠٠٠٤".encode(),
])
def test_bad_prefix_is_fatal_and_nothing_follows(data):
    parser = FrameParser()
    events = parser.receive(data + encode("OK"))
    assert len(events) == 1
    assert isinstance(events[0], BadFrame) and events[0].fatal
    assert "prefix" in events[0].reason
    assert parser.broken
    assert parser.receive(encode("OK")) == []


def test_bad_prefix_detected_before_ten_bytes():
    parser = FrameParser()
    assert parser.receive(b"000") == []
    [event] = parser.receive(b"a")
    assert event.fatal


def test_oversized_length_refused_before_body():
    parser = FrameParser(max_body=100)
    [event] = parser.receive(b"0000000101")
    assert isinstance(event, BadFrame) and event.fatal and "exceeds the limit of 100" in event.reason
    assert parser.receive(b"x" * 101) == []
    assert FrameParser(max_body=100).receive(frame(b'"' + b"a" * 98 + b'"')) == [Message("a" * 98)]
    [event] = FrameParser().receive(b"9999999999")
    assert event.fatal and str(DEFAULT_MAX_BODY) in event.reason


def test_max_body_validated():
    with pytest.raises(ValueError):
        FrameParser(max_body=-1)
    with pytest.raises(ValueError):
        FrameParser(max_body=10**10)


@pytest.mark.parametrize("body, fragment", [
    (b"\xff\xfe", "UTF-8"),
    (b'"\xc3"', "UTF-8"),
    (b"\xed\xa0\x80", "UTF-8"),  # encoded surrogate
    (b"", "invalid JSON"),
    (b"{", "invalid JSON"),
    (b'{"command": "ready"} trailing', "invalid JSON"),
    (b"{'command': 'ready'}", "invalid JSON"),
    (b"NaN", "NaN"),
    (b"[1, Infinity]", "Infinity"),
    (b'{"y": -Infinity}', "-Infinity"),
    (b"1e999", "infinity"),
    (b"[-1e400]", "infinity"),
    (b"[" * 100000, "nesting"),
    (b"9" * 5000, "invalid JSON"),
    ("\ufeff{}".encode("utf-8"), "invalid JSON"),
])
def test_bad_body_is_skipped_and_next_frame_parses(body, fragment):
    parser = FrameParser()
    events = parser.receive(frame(body) + encode({"command": "ready"}))
    assert len(events) == 2
    assert isinstance(events[0], BadFrame) and not events[0].fatal
    assert fragment in events[0].reason
    assert events[1] == Message({"command": "ready"})
    assert not parser.broken


def test_decode_body_accepts_large_finite_numbers():
    assert decode_body(b"[1e308, -1e308, 5e-324]") == [1e308, -1e308, 5e-324]


def test_seeded_garbage_never_raises():
    rng = random.Random(20261123)
    for _ in range(2000):
        parser = FrameParser(max_body=4096)
        n = rng.randint(0, 60)
        data = bytes(rng.getrandbits(8) for _ in range(n))
        if rng.random() < 0.5:
            data = b"%010d" % rng.randint(0, 40) + data
        for event in parser.receive(data):
            assert isinstance(event, (Message, BadFrame))


def test_encode_body_roundtrip():
    value = {"a": [1, 2.25, None, "x"], "b": {"c": [[]]}}
    assert decode_body(encode_body(value)) == value


def test_numpy_float_arrays_finite_and_not():
    finite = np.linspace(0.0, 1.0, 6).reshape(2, 3)
    assert to_jsonable(finite) == finite.tolist()
    finite[1, 2] = np.nan
    assert to_jsonable(finite)[1] == [0.6000000000000001, 0.8, None]
    assert to_jsonable(np.array([1, 2], dtype=np.uint8)) == [1, 2]
    assert to_jsonable(np.array([True, False])) == [True, False]
