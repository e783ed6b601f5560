"""In-memory rig transport: two linked ends that pass encoded messages, for tests and demos."""
from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet import defer

from agents.rig.messages import RemoteError, RigMessage, decode, encode

__all__ = ["LoopbackTransport"]


class LoopbackTransport:
    """One end of an in-memory link; messages go through the real JSON framing.

    Delivery is synchronous: ``send`` hands the decoded message to the peer's communicator
    and returns an already-fired Deferred. ``sent`` records every datagram sent.
    """

    def __init__(self, name: str = "loopback"):
        self.name = name
        self.peer: Optional["LoopbackTransport"] = None
        self.communicator: Any = None
        self.sent: list[bytes] = []
        self._open = True

    @classmethod
    def pair(cls) -> tuple["LoopbackTransport", "LoopbackTransport"]:
        """Return two linked ends named ``a`` and ``b``."""
        a, b = cls("a"), cls("b")
        a.peer, b.peer = b, a
        return a, b

    def attach(self, communicator: Any) -> None:
        """Remember the communicator to deliver to."""
        self.communicator = communicator

    def send(self, message: Union[RigMessage, RemoteError], addr: Any = None) -> defer.Deferred:
        """Encode, record and deliver ``message`` to the peer."""
        if not self.is_connected:
            return defer.fail(ConnectionError(f"loopback {self.name} is closed"))
        raw = encode(message)
        self.sent.append(raw)
        peer = self.peer
        if peer is not None and peer._open and peer.communicator is not None:
            peer.communicator.receive(decode(raw, source=self.name))
        return defer.succeed(None)

    def close(self) -> None:
        """Close this end."""
        self._open = False

    @property
    def is_connected(self) -> bool:
        """True while both ends are open."""
        return self._open and self.peer is not None and self.peer._open
