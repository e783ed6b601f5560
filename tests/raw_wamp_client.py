"""A blocking WAMP-over-WebSocket client that sends arbitrary bytes (standard library only).

For hostile-message tests and ``bench/chaos.py``: it speaks just enough RFC 6455 (client
handshake, masked frames, unfragmented messages, pings answered) and WAMP (HELLO, WELCOME) to
join a realm and then put any payload on the wire, valid WAMP or not::

    with RawWampClient("127.0.0.1", port, "ws", "json") as c:
        c.join("test_realm")
        c.send_text('[48, 1, {}, "observatory.x.ops", [' + "[" * 9000 + "]" * 9000 + ']]')
        reply = c.receive(timeout=5)   # a decoded WAMP message, or None when the router hung up

Payload builders for deep nesting in each serializer: :func:`deep_json`, :func:`deep_cbor`,
:func:`deep_msgpack` (they never recurse, so any depth can be built).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

__all__ = ["RawWampClient", "deep_json", "deep_cbor", "deep_msgpack", "cbor_call", "msgpack_call",
           "HandshakeError"]

SUBPROTOCOLS = {"json": "wamp.2.json", "cbor": "wamp.2.cbor", "msgpack": "wamp.2.msgpack"}


class HandshakeError(OSError):
    """The router refused the websocket upgrade or the WAMP join."""


def deep_json(depth: int, leaf: str = "1") -> str:
    """A JSON array nested ``depth`` deep around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 256:
        return bytes([major << 5 | 24, n])
    if n < 65536:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 2**32:
        return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


def _cbor_text(s: str) -> bytes:
    raw = s.encode()
    return _cbor_head(3, len(raw)) + raw


def deep_cbor(depth: int) -> bytes:
    """A CBOR array nested ``depth`` deep around the integer 1."""
    return b"\x81" * depth + b"\x01"


def deep_msgpack(depth: int) -> bytes:
    """A MessagePack array nested ``depth`` deep around the integer 1."""
    return b"\x91" * depth + b"\x01"


def cbor_call(request: int, procedure: str, args_cbor: list[bytes]) -> bytes:
    """CALL ``[48, request, {}, procedure, [*args]]`` with each argument given as raw CBOR."""
    return (b"\x85" + _cbor_head(0, 48) + _cbor_head(0, request) + b"\xa0" + _cbor_text(procedure)
            + _cbor_head(4, len(args_cbor)) + b"".join(args_cbor))


def _msgpack_str(s: str) -> bytes:
    raw = s.encode()
    if len(raw) < 32:
        return bytes([0xa0 | len(raw)]) + raw
    return b"\xd9" + bytes([len(raw)]) + raw if len(raw) < 256 else b"\xda" + struct.pack(">H", len(raw)) + raw


def msgpack_call(request: int, procedure: str, args_msgpack: list[bytes]) -> bytes:
    """CALL ``[48, request, {}, procedure, [*args]]`` with each argument given as raw MessagePack."""
    req = bytes([request]) if request < 128 else b"\xce" + struct.pack(">I", request)
    return (b"\x95" + b"\x30" + req + b"\x80" + _msgpack_str(procedure)
            + bytes([0x90 | len(args_msgpack)]) + b"".join(args_msgpack))


class RawWampClient:
    """One websocket connection to ``ws://host:port/path`` with subprotocol ``wamp.2.<serializer>``.

    Args:
        host, port, path: where the router's websocket transport listens.
        serializer: ``json``, ``cbor`` or ``msgpack`` (the subprotocol offered).
        timeout: socket timeout for connecting and the handshake (seconds).
    """

    def __init__(self, host: str, port: int, path: str = "ws", serializer: str = "json",
                 timeout: float = 5.0) -> None:
        self.host, self.port, self.path, self.serializer = host, port, path.strip("/"), serializer
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        self._handshake(timeout)

    # -- websocket --------------------------------------------------------------------------
    def _handshake(self, timeout: float) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {SUBPROTOCOLS[self.serializer]}\r\n\r\n")
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HandshakeError("the router closed the connection during the websocket handshake")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise HandshakeError(f"websocket upgrade refused: {head[:200]!r}")

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        # XOR the payload with the mask, fast: as one big integer
        pad = (-n) % 4
        data = int.from_bytes(payload + b"\0" * pad, "big")
        key = int.from_bytes(mask * ((n + pad) // 4), "big") if n else 0
        masked = (data ^ key).to_bytes(n + pad, "big")[:n] if n else b""
        self.sock.sendall(header + mask + masked)

    def send_text(self, text: str | bytes) -> None:
        """Send one text message (no check that it is valid UTF-8 or WAMP)."""
        self._send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data: bytes) -> None:
        """Send one binary message."""
        self._send_frame(0x2, data)

    def send(self, payload: str | bytes) -> None:
        """Send one message, text for the JSON serializer and binary for the others."""
        if self.serializer == "json":
            self.send_text(payload)
        else:
            self.send_binary(payload if isinstance(payload, bytes) else payload.encode())

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("connection closed by the router")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def receive_frame(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next data or close frame as ``(opcode, payload)``; None when the router hung up."""
        self.sock.settimeout(timeout)
        try:
            while True:
                b0, b1 = self._recv_exact(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._recv_exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._recv_exact(8))[0]
                payload = self._recv_exact(n)
                if opcode == 0x9:  # ping: answer, keep waiting
                    self._send_frame(0xA, payload)
                    continue
                if opcode == 0xA:
                    continue
                return opcode, payload
        except (ConnectionError, OSError):
            return None

    def receive(self, timeout: float = 5.0) -> Any:
        """The next WAMP message decoded (JSON only; raw bytes otherwise), or None on hang-up/close."""
        frame = self.receive_frame(timeout)
        if frame is None or frame[0] == 0x8:
            return None
        opcode, payload = frame
        if self.serializer == "json":
            return json.loads(payload)
        return payload

    # -- WAMP -------------------------------------------------------------------------------
    def join(self, realm: str = "test_realm", timeout: float = 5.0) -> int:
        """HELLO and wait for WELCOME; return the session id."""
        roles = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}
        if self.serializer == "json":
            self.send_text(json.dumps([1, realm, {"roles": roles}]))
            reply = self.receive(timeout)
            if not reply or reply[0] != 2:
                raise HandshakeError(f"no WELCOME from the router: {reply!r}")
            return reply[1]
        if self.serializer == "cbor":
            hello = (b"\x83\x01" + _cbor_text(realm) + b"\xa1" + _cbor_text("roles") + b"\xa4"
                     + b"".join(_cbor_text(r) + b"\xa0" for r in roles))
        else:
            hello = (b"\x93\x01" + _msgpack_str(realm) + b"\x81" + _msgpack_str("roles") + b"\x84"
                     + b"".join(_msgpack_str(r) + b"\x80" for r in roles))
        self.send_binary(hello)
        frame = self.receive_frame(timeout)
        if frame is None or frame[0] == 0x8 or frame[1][1:2] != b"\x02":
            raise HandshakeError(f"no WELCOME from the router: {frame!r}")
        return 0

    def close(self) -> None:
        """Close the socket (no closing handshake)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawWampClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
