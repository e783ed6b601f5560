"""Malformed classic-protocol input for the OBE TCP server, and a raw client that sends it.

Standard library only, like raw_obe_client: used against the server with a fake backend
(test_obe_tcp) and against the real OBE agent (test_obe_agent).
"""
import json
import socket

from raw_obe_client import at_eof, recv_frame


def malformed_cases(rng):
    """(bytes to send, what to expect): 'error' (reply, connection kept), 'fatal' (reply, EOF), 'none'."""
    bodies = []
    for _ in range(150):  # random garbage bodies behind a correct length
        bodies.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))))
    for _ in range(100):  # truncated JSON
        text = json.dumps({"command": "newdat", "x": [rng.random()], "y": rng.random(), "s": 1.0})
        bodies.append(text[:rng.randint(0, len(text) - 1)].encode())
    for _ in range(100):  # NaN / Infinity / overflow tokens
        token = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-2e400"])
        bodies.append(('{"command": "newdat", "x": [%s], "y": 1.0, "s": 1.0}' % token).encode())
    wrong = [
        "ready", 42, None, [], [{"command": "ready"}], {}, {"cmd": "ready"}, {"command": None},
        {"command": ["ready"]}, {"command": "xxgetmeanxx"}, {"command": "newdatx"}, {"command": "Ready"},
        {"command": "newdat"}, {"command": "newdat", "x": [1.0], "y": 1.0},
        {"command": "newdat", "x": "1", "y": 1.0, "s": 1.0}, {"command": "newdat", "x": [1.0], "y": [], "s": 1.0},
        {"command": "newdat", "x": [1.0], "y": 1.0, "s": -1.0}, {"command": "newdat", "x": [1.0], "y": 1.0, "s": 0},
        {"command": "newdat", "x": [1.0, 2.0], "y": 1.0, "s": 1.0}, {"command": "newdat", "x": [True], "y": 1, "s": 1},
        {"command": "newdat", "x": [1.0], "y": 666.0, "s": 1.0},
        {"command": "goodset", "pickiness": "x"}, {"command": "goodset", "pickiness": -3},
        {"command": "newrun", "bad": True},
    ]
    for _ in range(250):  # wrong types, missing keys, unknown commands, backend ValueErrors
        bodies.append(json.dumps(rng.choice(wrong)).encode())
    cases = [(b"%010d" % len(b) + b, "error") for b in bodies]
    for _ in range(150):  # bad prefixes
        prefix = bytearray(b"%010d" % rng.randint(0, 99))
        prefix[rng.randrange(10)] = rng.choice(b"abc -+.x\x00\xff{")
        cases.append((bytes(prefix) + b'{"command": "ready"}', "fatal"))
    for _ in range(50):  # declared length over the limit
        cases.append((b"%010d" % rng.randint(2**20 + 1, 10**10 - 1), "fatal"))
    for _ in range(100):  # truncated frames: the client goes away mid-frame
        frame = b'0000000041{"command": "newdat", "x": [1], "y": 2, "s": 3}'
        cases.append((frame[:rng.randint(1, len(frame) - 1)], "none"))
    for _ in range(150):  # raw garbage of any kind
        cases.append((bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80))), "none"))
    rng.shuffle(cases)
    return cases


def send_malformed(port, cases):
    """Send every case; check each 'error' gets an {"error"} reply on a kept connection and each
    'fatal' an error reply then EOF. Returns how many of each kind were sent."""
    counts = {"error": 0, "fatal": 0, "none": 0}
    sock = None
    for payload, expect in cases:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(payload)
        if expect in ("error", "fatal"):
            reply = json.loads(recv_frame(sock)[10:])
            assert isinstance(reply, dict) and set(reply) == {"error"}, (payload, reply)
            if expect == "fatal":
                assert reply["error"].startswith("bad frame: "), (payload, reply)
                assert at_eof(sock), payload
        if expect != "error":
            sock.close()
            sock = None
        counts[expect] += 1
    if sock is not None:
        sock.close()
    return counts
