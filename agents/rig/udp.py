"""UDP rig transport on Twisted, wire-compatible with iblutil's rig communicators (protocol 1.0.0).

One datagram carries one JSON message (see :mod:`agents.rig.messages`). The receiver of a valid
message sends the identical bytes straight back as confirmation; the sender's ``send`` Deferred
fires when that echo arrives and fails with TimeoutError when it does not come in
``echo_timeout`` seconds. Error reports (event 0) are not echoed. Messages to one address are
sent one at a time: the next waits for the previous echo. Invalid datagrams are dropped with
one error line in the log and no echo. ``NaN`` and ``Infinity`` (not JSON, but iblutil sends
them) become null in the message we keep, with one warning line; the echo stays the datagram
itself, byte for byte, since that is how iblutil recognises its confirmation.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any, Optional, Union

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol

from agents.rig.communicator import Communicator
from agents.rig.messages import MAX_DATAGRAM, MessageError, RemoteError, RigMessage, decode, encode
from agents.rig.uri import is_valid_ip, split_uri, validate_uri

__all__ = ["UDPTransport", "udp_communicator", "DEFAULT_ECHO_TIMEOUT"]

#: Seconds to wait for the echo confirming a message (iblutil's default is also 1 s).
DEFAULT_ECHO_TIMEOUT = 1.0

Address = tuple  # (host, port)


class UDPTransport(DatagramProtocol):
    """A rig transport over one UDP socket: confirmed sends, echoes, checked receipts.

    Args:
        remote: Default peer ``(ip, port)`` used when ``send`` gets no address.
        echo_timeout: Seconds to wait for each echo.
        max_size: Largest datagram sent or accepted, in bytes.
        only_remote_host: Drop datagrams whose source host is not ``remote``'s host.
        clock: Reactor used for timeouts (tests pass ``task.Clock``).
        logger: Where to log; the communicator's logger when attached, if not given.
    """

    def __init__(
        self,
        remote: Optional[Address] = None,
        echo_timeout: float = DEFAULT_ECHO_TIMEOUT,
        max_size: int = MAX_DATAGRAM,
        only_remote_host: bool = False,
        clock: Optional[IReactorTime] = None,
        logger: Optional[logging.Logger] = None,
    ):
        if not 0 < echo_timeout:
            raise ValueError(f"echo_timeout must be > 0 seconds, got {echo_timeout!r}")
        if not 16 <= max_size <= MAX_DATAGRAM:
            raise ValueError(f"max_size must be in 16..{MAX_DATAGRAM} bytes, got {max_size!r}")
        self.remote = _normalise(remote) if remote is not None else None
        self.echo_timeout = echo_timeout
        self.max_size = max_size
        self.only_remote_host = only_remote_host
        self.logger = logger
        self.communicator: Optional[Communicator] = None
        self.port: Any = None  # the IListeningPort, set by udp_communicator
        self._clock = clock
        self._pending: dict[Address, tuple[bytes, defer.Deferred]] = {}
        self._locks: dict[Address, defer.DeferredLock] = {}
        self._open = False

    # -- RigTransport --------------------------------------------------------------------
    def attach(self, communicator: Communicator) -> None:
        """Deliver accepted messages to ``communicator``."""
        self.communicator = communicator
        if self.logger is None:
            self.logger = communicator.logger

    @property
    def is_connected(self) -> bool:
        """True while the socket is open."""
        return self._open and self.transport is not None

    @property
    def local_address(self) -> Address:
        """The ``(ip, port)`` this socket is bound to."""
        host = self.transport.getHost()
        return host.host, host.port

    def send(self, message: Union[RigMessage, RemoteError], addr: Optional[Address] = None) -> defer.Deferred:
        """Send ``message`` to ``addr`` (default: ``remote``); fires when the echo arrives.

        Raises:
            MessageError: the message does not encode within ``max_size``.
            ValueError: no address was given and there is no default peer.
        """
        if addr is None:
            if self.remote is None:
                raise ValueError("send needs addr=(ip, port): this transport has no default remote")
            addr = self.remote
        addr = _normalise(addr)
        raw = encode(message, self.max_size)
        if isinstance(message, RemoteError):  # error reports are not confirmed
            return self._write(raw, addr)
        lock = self._locks.setdefault(addr, defer.DeferredLock())

        def forget_idle_lock(result: Any) -> Any:  # keep _locks bounded by the sends in flight
            if not lock.locked and not lock.waiting and self._locks.get(addr) is lock:
                del self._locks[addr]
            return result

        return lock.run(self._confirmed_send, raw, addr).addBoth(forget_idle_lock)

    def close(self) -> Optional[defer.Deferred]:
        """Close the socket and cancel sends still waiting for their echo."""
        self._open = False
        for _, d in list(self._pending.values()):
            if not d.called:
                d.cancel()
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else None

    # -- sending ---------------------------------------------------------------------------
    def _write(self, raw: bytes, addr: Address) -> defer.Deferred:
        try:
            self._write_now(raw, addr)
        except (ConnectionError, OSError) as exc:
            return defer.fail(exc)
        return defer.succeed(None)

    def _write_now(self, raw: bytes, addr: Address) -> None:
        if not self.is_connected:
            raise ConnectionError(f"UDP transport closed; not sent to udp://{_fmt(addr)}")
        self.transport.write(raw, addr)

    def _confirmed_send(self, raw: bytes, addr: Address) -> defer.Deferred:
        try:
            self._write_now(raw, addr)
        except (ConnectionError, OSError) as exc:
            return defer.fail(exc)
        clock = self._clock or _reactor()
        d: defer.Deferred = defer.Deferred()
        self._pending[addr] = (raw, d)
        timer = clock.callLater(self.echo_timeout, self._echo_timeout, addr, d)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if self._pending.get(addr, (None, None))[1] is d:
                del self._pending[addr]
            return result

        return d.addBoth(done)

    def _echo_timeout(self, addr: Address, d: defer.Deferred) -> None:
        if not d.called:
            self.logger.error("no echo from udp://%s within %.3g s", _fmt(addr), self.echo_timeout)
            d.errback(TimeoutError(f"no echo from udp://{_fmt(addr)} within {self.echo_timeout} s"))

    # -- receiving -------------------------------------------------------------------------
    def startProtocol(self) -> None:
        """Called by Twisted when the socket is open."""
        self._open = True

    def stopProtocol(self) -> None:
        """Called by Twisted when the socket is closed."""
        self._open = False

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Confirm a pending send, or check, echo and deliver a new message."""
        addr = _normalise(addr[:2])
        if self.only_remote_host and self.remote is not None and addr[0] != self.remote[0]:
            self.logger.warning("ignored datagram from unexpected host udp://%s", _fmt(addr))
            return
        if len(datagram) > self.max_size:
            self.logger.error(
                "rejected datagram from udp://%s: %d bytes exceeds the %d byte limit",
                _fmt(addr), len(datagram), self.max_size,
            )
            return
        pending = self._pending.get(addr)
        if pending is not None and datagram == pending[0] and not pending[1].called:
            self.logger.debug("echo received from udp://%s", _fmt(addr))
            pending[1].callback(None)
            return
        non_finite: list[str] = []
        try:
            message = decode(datagram, source=addr, max_size=self.max_size, non_finite=non_finite)
        except MessageError as exc:
            self.logger.error("rejected datagram from udp://%s: %s", _fmt(addr), exc)
            return
        if non_finite:  # iblutil writes NaN and Infinity (Python's json does): kept as null
            shown = ", ".join(sorted(set(non_finite)))
            self.logger.warning("datagram from udp://%s held %d non-finite number(s) (%s), not JSON: "
                                "stored as null", _fmt(addr), len(non_finite), shown)
        if isinstance(message, RigMessage):
            self._write(datagram, addr).addErrback(
                lambda f: self.logger.error("echo to udp://%s failed: %s", _fmt(addr), f.value)
            )
        if self.communicator is not None:
            self.communicator.receive(message)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _normalise(addr: Any) -> Address:
    """Return ``(ip, port)`` with the IP in canonical text form."""
    if not (isinstance(addr, (tuple, list)) and len(addr) == 2):
        raise ValueError(f"address must be (ip, port), got {addr!r}")
    host, port = addr
    if not is_valid_ip(host):
        raise ValueError(f"address host must be an IP address, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"address port must be an integer in 1..65535, got {port!r}")
    return str(ipaddress.ip_address(host)), port


def _fmt(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@defer.inlineCallbacks
def udp_communicator(
    remote: Union[str, Address, None] = None,
    interface: str = "127.0.0.1",
    port: int = 0,
    name: Optional[str] = None,
    echo_timeout: float = DEFAULT_ECHO_TIMEOUT,
    max_size: int = MAX_DATAGRAM,
    only_remote_host: bool = False,
    reactor: Any = None,
    logger: Optional[logging.Logger] = None,
):
    """Open a UDP socket and return (via Deferred) a Communicator using it.

    Args:
        remote: Default peer: a URI or host (``'udp://10.0.0.2:11001'``, ``'rig-2'``; the
            port defaults to 11001; host names are resolved in a thread) or ``(ip, port)``.
            None for a rig that only answers whoever writes to it (pass ``addr`` to ``send``).
        interface: Local IP address to bind; loopback by default.
        port: Local UDP port; 0 picks a free one (see ``transport.local_address``).
        name: Label for logs; defaults to the remote URI or ``'udp'``.
        echo_timeout, max_size, only_remote_host: See :class:`UDPTransport`.
        reactor: The reactor to listen on (default: the global one).
        logger: Where to log.

    Raises:
        ValueError: bad interface, port or remote (unresolvable host, non-udp scheme).
    """
    if not is_valid_ip(interface):
        raise ValueError(f"interface must be an IP address, got {interface!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    remote_addr = None
    if isinstance(remote, (tuple, list)):
        remote_addr = _normalise(tuple(remote))
    elif remote is not None:
        uri = validate_uri(remote, resolve_host=False)
        if not is_valid_ip(split_uri(uri)[1]):
            uri = yield threads.deferToThread(validate_uri, remote)
        scheme, host, rport = split_uri(uri)
        if scheme.lower() != "udp":
            raise ValueError(f"remote {remote!r} has scheme {scheme!r}; this transport speaks udp")
        remote_addr = (host, rport)
    reactor = reactor or _reactor()
    transport = UDPTransport(remote_addr, echo_timeout, max_size, only_remote_host, clock=reactor, logger=logger)
    label = name or (f"udp://{_fmt(remote_addr)}" if remote_addr else "udp")
    communicator = Communicator(transport, name=label, logger=logger)
    transport.port = reactor.listenUDP(port, transport, interface=interface, maxPacketSize=max_size + 1)
    communicator.logger.info("[%s] listening on udp://%s", label, _fmt(transport.local_address))
    return communicator
