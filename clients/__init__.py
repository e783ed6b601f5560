"""Clients of ocs-core agents: OCSClient (HTTP, synchronous), client_t (Twisted), the CLI commands.

The reply codes are importable from here, as from ``ocs``: ``from clients import OK, ERROR, TIMEOUT``.
"""
from ocs_core.runtime.codes import ERROR, OK, TIMEOUT, ResponseCode

__all__ = ["OK", "ERROR", "TIMEOUT", "ResponseCode"]
