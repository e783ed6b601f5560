"""Experiment-rig events: the ExpMessage/ExpStatus vocabulary, a Communicator and its transports.

This package namespace re-exports only the pure (Twisted-free) parts. The Communicator is in
:mod:`agents.rig.communicator`, the UDP transport in :mod:`agents.rig.udp`, the WAMP one in
:mod:`agents.rig.wamp` (payloads in :mod:`agents.rig.feed_format`), the in-memory one in
:mod:`agents.rig.loopback`, and the rig agent in :mod:`agents.rig.agent`. See docs/rig-events.md.
"""
from agents.rig.events import PROTOCOL_VERSION, ExpMessage, ExpStatus, validate_exp_ref, validate_status
from agents.rig.messages import MAX_DATAGRAM, MessageError, RemoteError, RigMessage, make_message
from agents.rig.uri import external_ip, hostname2ip, is_valid_ip, validate_uri

__all__ = [
    "PROTOCOL_VERSION", "ExpMessage", "ExpStatus", "validate_exp_ref", "validate_status",
    "MAX_DATAGRAM", "MessageError", "RemoteError", "RigMessage", "make_message",
    "external_ip", "hostname2ip", "is_valid_ip", "validate_uri",
]
