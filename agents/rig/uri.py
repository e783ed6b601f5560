"""Rig addresses: complete and check ``scheme://host:port`` URIs, resolve host names (blocking).

The functions here call the system resolver and may block for as long as it takes; code on the
Twisted reactor thread calls them through ``deferToThread``. None of them needs the internet
except :func:`external_ip`, which refuses at once unless it is given a service URL.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Union

__all__ = [
    "LISTEN_PORT",
    "IPAddress",
    "is_valid_ip",
    "hostname2ip",
    "validate_uri",
    "split_uri",
    "external_ip",
    "EXTERNAL_IP_URL_ENV",
]

#: Default UDP port on which rigs listen (iblutil's LISTEN_PORT).
LISTEN_PORT = 11001
#: Environment variable naming a WAN-echo service for :func:`external_ip`.
EXTERNAL_IP_URL_ENV = "OCS_CORE_EXTERNAL_IP_URL"

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_SCHEME = re.compile(r"^([A-Za-z]+)://")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_URI = re.compile(r"^([A-Za-z]+)://(\[[^\]]+\]|[^:/\[\]]+):(\d+)$")


def is_valid_ip(ip_address: object) -> bool:
    """Return True if ``ip_address`` is an IPv4 or IPv6 address (string or address object)."""
    try:
        ipaddress.ip_address(ip_address)
    except ValueError:
        return False
    return True


def hostname2ip(hostname: str | None = None) -> IPAddress:
    """Resolve a host name to an IP address with the system resolver (blocking).

    Args:
        hostname: The name to resolve; None resolves this computer's own host name.

    Returns:
        The first address the resolver gives (IPv4 preferred, as ``gethostbyname`` does).

    Raises:
        ValueError: the resolver found no address for ``hostname``.
    """
    hostname = hostname or socket.gethostname()
    try:
        return ipaddress.ip_address(socket.gethostbyname(hostname))
    except (OSError, UnicodeError, ValueError):
        raise ValueError(f'Failed to resolve IP for hostname "{hostname}"') from None


def _is_hostname(host: str) -> bool:
    """Return True if ``host`` is dot-separated labels of letters, digits and inner hyphens."""
    return 0 < len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


def validate_uri(
    uri: "str | IPAddress",
    resolve_host: bool = True,
    default_port: int | str = LISTEN_PORT,
    default_proc: str = "udp",
) -> str:
    """Complete and check a rig URI, returning ``scheme://host:port``.

    Args:
        uri: A full URI (``udp://10.0.0.2:11001``), a host name or IP address with or without a
            port (``rig-1``, ``rig-1:9000``, ``[::1]:9000``), or an ``ipaddress`` object.
        resolve_host: If the host is not an IP address, resolve it to one (blocking; see module
            docstring). If False, only check that it is a well-formed host name.
        default_port: Port used when the URI has none.
        default_proc: Scheme used when the URI has none.

    Returns:
        The complete URI; IPv6 hosts are written in brackets (``udp://[::1]:11001``).

    Raises:
        TypeError: ``uri`` is neither a string nor an IP address object.
        ValueError: the host name does not resolve, holds characters other than letters,
            digits, hyphens and dots, or the port is not an integer in 1..65535.
    """
    if not isinstance(uri, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        raise TypeError(f'Unsupported URI "{uri}" of type {type(uri).__name__}')
    proc = default_proc
    port: object = None
    if isinstance(uri, str):
        uri = uri.strip()
        scheme = _SCHEME.match(uri)
        if scheme:
            proc, uri = scheme.group(1), uri[scheme.end():]
        if uri.startswith("["):  # [ipv6] or [ipv6]:port
            host, _, rest = uri[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError(f'Invalid URI "{uri}": expected [address]:port')
            port = rest[1:] or None
        elif is_valid_ip(uri):  # bare address, IPv6 included
            host = uri
        elif ":" in uri:
            host, port = uri.split(":", 1)
        else:
            host = uri
        if is_valid_ip(host):
            host = str(ipaddress.ip_address(host))
        elif resolve_host:
            host = str(hostname2ip(host))
        elif not _is_hostname(host):
            raise ValueError(
                f'Invalid hostname "{host}": expected letters, digits, hyphens and dots only'
            )
    else:
        host = str(uri)
    try:
        port_number = int(port or default_port)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"Invalid port number: {port or default_port!r}") from None
    if not 1 <= port_number <= 65535:
        raise ValueError(f"Invalid port number: {port_number} (must be in 1..65535)")
    if ":" in host:
        host = f"[{host}]"
    return f"{proc}://{host}:{port_number}"


def split_uri(uri: str) -> tuple[str, str, int]:
    """Split a complete URI from :func:`validate_uri` into ``(scheme, host, port)``.

    Raises:
        ValueError: ``uri`` is not of the form ``scheme://host:port``.
    """
    match = _URI.match(uri) if isinstance(uri, str) else None
    if not match:
        raise ValueError(f'URI "{uri}" is not of the form scheme://host:port')
    host = match.group(2)
    return match.group(1), host.strip("[]"), int(match.group(3))


def external_ip(service_url: str | None = None, timeout: float = 2.0) -> IPAddress:
    """Fetch this computer's WAN address from a WAN-echo web service (needs internet; blocking).

    ocs-core does not contact any public service on its own: without ``service_url`` (or the
    ``OCS_CORE_EXTERNAL_IP_URL`` environment variable) this raises at once. With one, it makes
    a single GET with ``timeout`` seconds for the whole request and expects the body to be the
    address as plain text.

    Args:
        service_url: URL of a service that answers with the caller's address, e.g. one of
            your site's own.
        timeout: Seconds to wait for connecting and for the answer (bounded, never hangs).

    Returns:
        The address the service reported.

    Raises:
        RuntimeError: no service is configured, it could not be reached in time, or it did
            not answer with an IP address.
    """
    service_url = service_url or os.environ.get(EXTERNAL_IP_URL_ENV)
    if not service_url:
        raise RuntimeError(
            "external_ip needs the internet and a WAN-echo service: pass service_url or set "
            f"{EXTERNAL_IP_URL_ENV}; none is configured"
        )
    import requests  # local import: only this function needs it

    try:
        reply = requests.get(service_url, timeout=(timeout, timeout))
        reply.raise_for_status()
        text = reply.text[:64].strip()
    except requests.RequestException as exc:
        raise RuntimeError(f"external_ip: {service_url} failed: {type(exc).__name__}: {exc}") from None
    if not is_valid_ip(text):
        raise RuntimeError(f"external_ip: {service_url} answered {text!r}, not an IP address")
    return ipaddress.ip_address(text)
