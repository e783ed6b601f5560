"""The replay guard's memory (pure): what it remembers, for how long, and its bound; its
parsers of a request's line and query against twisted's."""
import random

from ocs_core.router.replay_guard import NonceMemory


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_remembers_accepted_nonces_for_the_memory_span():
    clock = Clock()
    memory = NonceMemory(memory_s=30, limit=1000, clock=clock)
    assert memory.accept(b"k", b"1")
    assert memory.seen(b"k", b"1") and not memory.seen(b"k", b"2") and not memory.seen(b"other", b"1")
    clock.now = 29.0
    assert memory.seen(b"k", b"1")
    clock.now = 30.5  # past the span, still remembered (at most twice the span)
    assert memory.accept(b"k", b"2")
    assert memory.seen(b"k", b"1") and memory.seen(b"k", b"2")
    clock.now = 61.0  # the generation of b"1" is dropped whole, b"2" is kept for its span
    assert not memory.seen(b"k", b"1") and memory.seen(b"k", b"2") and len(memory) == 1
    clock.now = 200.0  # nothing accepted for two spans: everything goes
    assert not memory.seen(b"k", b"2") and len(memory) == 0


def test_remembers_every_pair_for_the_whole_span_whenever_it_came():
    clock = Clock()
    memory = NonceMemory(memory_s=30, limit=10**6, clock=clock)
    arrivals = [i * 0.7 for i in range(400)]  # over nine spans
    for i, at in enumerate(arrivals):
        clock.now = at
        assert memory.accept(b"k", str(i).encode())
        for j in range(i + 1):  # every pair accepted within the span is refused again
            if at - arrivals[j] < 30:
                assert not memory.accept(b"k", str(j).encode()), (i, j)


def test_is_bounded_forgetting_the_oldest_first():
    memory = NonceMemory(memory_s=30, limit=3, clock=Clock())
    for n in range(5):
        assert memory.accept(b"k", str(n).encode())
    assert len(memory) <= 3 and not memory.seen(b"k", b"0") and memory.seen(b"k", b"4")


def test_accept_refuses_a_pair_within_the_span_only():
    clock = Clock()
    memory = NonceMemory(memory_s=30, limit=1000, clock=clock)
    assert memory.accept(b"k", b"1") and not memory.accept(b"k", b"1") and memory.accept(b"k", b"2")
    clock.now = 31.0  # within twice the span: may still be refused
    assert not memory.accept(b"k", b"1")
    clock.now = 61.0
    assert memory.accept(b"k", b"1")


def test_plain_query_parse_equals_twisteds_where_it_answers():
    from twisted.web.http import parse_qs

    from ocs_core.framing.http_signing import Signer
    from ocs_core.router.replay_guard import parse_plain_query

    rng = random.Random(3)
    answered = 0
    for _ in range(20000):
        query = bytes(rng.choice(b"ab=&;%+x1") for _ in range(rng.randint(0, 14)))
        for keep_blank in (0, 1):
            parsed = parse_plain_query(query, keep_blank)
            if parsed is not None:
                answered += 1
                assert parsed == parse_qs(query, keep_blank), query
            else:
                assert any(c in query for c in b"%+;")
    assert answered > 5000
    signed = Signer("k", "s").query(b"body", 1).encode()
    assert parse_plain_query(signed, 1) == parse_qs(signed, 1)


def test_request_line_parser_accepts_and_refuses_as_twisted(monkeypatch):
    """The regular-expression check of a request target gives twisted's answer (the parts, or
    ValueError with its reason) on seeded random lines, and on a signed request's."""
    from twisted.web import http

    from ocs_core.framing.http_signing import Signer
    from ocs_core.router.replay_guard import install_request_line_parser

    general = http._parseRequestLine
    monkeypatch.setattr(http, "_parseRequestLine", general)  # restored after the test
    install_request_line_parser()
    fast = http._parseRequestLine
    assert fast is not general and fast._ocs_general is general
    install_request_line_parser()  # a second install keeps the first
    assert http._parseRequestLine is fast

    def answer(parse, line):
        try:
            return parse(line)
        except ValueError as exc:
            return ("ValueError", str(exc))

    rng = random.Random(5)
    alphabet = [b" ", b"/", b"?", b"a", b"=", b"\x20", b"\x21", b"\xb0", b"\xb1", b"\x7f", b"\x00",
                b"\xff", b"\t", b"GET", b"POST", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"(", b"%"]
    kinds = set()
    for _ in range(20000):
        line = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.5:  # mostly well-formed around a random target
            line = rng.choice([b"POST", b"GE(T", b""]) + b" " + line.replace(b" ", b"") + b" " + \
                rng.choice([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/3"])
        expected = answer(general, line)
        assert answer(fast, line) == expected, line
        kinds.add(expected[1] if expected[0] == "ValueError" else "accepted")
    assert {"accepted", "Invalid method", "Invalid request-target", "Empty request-target",
            "Invalid version"} <= kinds
    signed = b"POST /call?" + Signer("k", "s").query(b"body", 1).encode() + b" HTTP/1.1"
    assert fast(signed) == general(signed)
