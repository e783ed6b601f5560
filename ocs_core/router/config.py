"""Render crossbar's node configuration from a site's hub (pure: no process, no network).

One router worker with the hub's realm and two roles, as in ocs's own template:

* ``agent`` (websocket sessions): call, register, publish and subscribe under ``<root>.``;
* ``controller`` (the HTTP caller bridge): call, publish and subscribe; never register, so
  an HTTP client cannot pose as an agent.

One web transport on the hub's port serves the websocket path and the HTTP caller path named
by the hub URLs (``ws://h:p/ws`` -> ``ws``, ``http://h:p/call`` -> ``call``) and ``info``
(crossbar's node info page, a liveness probe). It binds to 127.0.0.1 unless the hub URL names
another interface.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ocs_core.site.config import HubConfig, SiteConfigError

__all__ = ["AGENT_ROLE", "CONTROLLER_ROLE", "WS_OPTIONS", "WS_SERIALIZERS", "MAX_MESSAGE_SIZE",
           "MAX_HTTP_BODY", "Endpoint", "hub_endpoint", "render_config"]

AGENT_ROLE = "agent"
CONTROLLER_ROLE = "controller"
#: Bound on one WAMP message over websocket, and on one HTTP bridge request body (bytes).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_HTTP_BODY = 1024 * 1024  # crossbar caps post_body_limit at 1 MiB
#: Websocket options (ms except sizes). crossbar 26 rejects auto_ping_size < 12.
WS_OPTIONS: dict[str, int] = {
    "open_handshake_timeout": 2500,
    "close_handshake_timeout": 1000,
    "auto_ping_interval": 10000,
    "auto_ping_timeout": 5000,
    "auto_ping_size": 12,
    "max_message_size": MAX_MESSAGE_SIZE,
    "max_frame_size": MAX_MESSAGE_SIZE,
}
#: WAMP serializers the websocket transport offers: CBOR (what our agents, and autobahn's clients,
#: ocs 0.12 included, choose first) and JSON (browsers, anything else). crossbar's default adds
#: MsgPack, whose decoder accepts 1,024 levels of nesting whatever the recursion limit (deep
#: enough to overflow ``cbor2.dumps`` on a small stack), UBJSON (a pure-Python decoder here) and
#: FlatBuffers; nothing of ours needs them (docs/security.md, "Hostile messages").
WS_SERIALIZERS = ("cbor", "json")
_PATH = re.compile(r"^[a-zA-Z0-9_\-]+$")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class Endpoint:
    """Where the router listens, and the two web paths it serves."""

    interface: str
    port: int
    ws_path: str
    http_path: str

    @property
    def ipv6(self) -> bool:
        """Whether the interface is an IPv6 address."""
        return ":" in self.interface


def _interface(host: str) -> str:
    if host.lower() in _LOOPBACK_NAMES:
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise SiteConfigError(f"hub.wamp_server: cannot resolve host {host!r} to an interface "
                              f"to listen on") from None


def _path(url: str, key: str) -> str:
    path = urlsplit(url).path.strip("/")
    if not path:
        raise SiteConfigError(f"hub.{key}: the router needs a path in {url!r}, such as "
                              f"{'/ws' if key == 'wamp_server' else '/call'}")
    if not _PATH.match(path):
        raise SiteConfigError(f"hub.{key}: the router serves one-level paths only (letters, "
                              f"digits, '_' and '-'), got {urlsplit(url).path!r} in {url!r}")
    return path


def hub_endpoint(hub: HubConfig) -> Endpoint:
    """The interface, port and paths the hub URLs describe.

    Raises:
        SiteConfigError: the websocket and HTTP URLs name different ports, the same path, or
            paths crossbar cannot serve.
    """
    ws, http = urlsplit(hub.wamp_server), urlsplit(hub.wamp_http)
    if ws.port is None or ws.hostname is None:
        raise SiteConfigError(f"hub.wamp_server: expected ws://HOST:PORT/PATH, got {hub.wamp_server!r}")
    if http.port != ws.port:
        raise SiteConfigError(f"hub: wamp_server ({hub.wamp_server}) and wamp_http "
                              f"({hub.wamp_http}) must use the same port: one router serves both")
    ws_path = _path(hub.wamp_server, "wamp_server")
    http_path = _path(hub.wamp_http, "wamp_http")
    if ws_path == http_path or "info" in (ws_path, http_path):
        raise SiteConfigError(f"hub: the websocket path {ws_path!r} and the HTTP path "
                              f"{http_path!r} must differ from each other and from 'info'")
    return Endpoint(interface=_interface(ws.hostname), port=ws.port, ws_path=ws_path,
                    http_path=http_path)


def _permission(root: str, register: bool) -> dict[str, Any]:
    return {
        "uri": f"{root}.",
        "match": "prefix",
        "allow": {"call": True, "register": register, "publish": True, "subscribe": True},
        "disclose": {"caller": False, "publisher": False},
        "cache": True,
    }


def render_config(hub: HubConfig, endpoint: Endpoint | None = None,
                  worker_python: str | None = None) -> dict[str, Any]:
    """The crossbar node config (``version: 2``) for this hub, as a JSON-ready dict.

    Args:
        hub: the site's hub.
        endpoint: where to listen (default: from the hub URLs, see :func:`hub_endpoint`).
        worker_python: absolute path of the executable crossbar runs its router worker with
            (default: crossbar's own interpreter).
    """
    ep = endpoint or hub_endpoint(hub)
    tcp: dict[str, Any] = {"type": "tcp", "port": ep.port, "interface": ep.interface}
    if ep.ipv6:
        tcp["version"] = 6
    realm = {
        "name": hub.wamp_realm,
        "roles": [
            {"name": AGENT_ROLE, "permissions": [_permission(hub.address_root, True)]},
            {"name": CONTROLLER_ROLE, "permissions": [_permission(hub.address_root, False)]},
        ],
    }
    paths = {
        ep.ws_path: {
            "type": "websocket",
            "auth": {"anonymous": {"type": "static", "role": AGENT_ROLE}},
            "options": dict(WS_OPTIONS),
            "serializers": list(WS_SERIALIZERS),
        },
        ep.http_path: {
            "type": "caller",
            "realm": hub.wamp_realm,
            "role": CONTROLLER_ROLE,
            "options": {"post_body_limit": MAX_HTTP_BODY},
        },
        "info": {"type": "nodeinfo"},
    }
    worker: dict[str, Any] = {
        "type": "router",
        "realms": [realm],
        "transports": [{"type": "web", "endpoint": tcp, "paths": paths}],
    }
    if worker_python is not None:
        worker["options"] = {"python": worker_python}
    return {"version": 2, "controller": {}, "workers": [worker]}
