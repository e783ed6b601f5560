"""Who may do what on the router: crossbar roles, websocket authentication and the HTTP bridge's
checks, rendered from the hub and the credentials file (pure: no process, no network).

Authenticated mode (``hub.auth: cryptosign``):

* each agent instance joins with WAMP-cryptosign as itself (authid = instance-id) and gets
  the role ``agent-<instance-id>``: register and publish only at ``<root>.<id>`` and under
  ``<root>.<id>.``; call and subscribe anywhere under ``<root>.``;
* ``controller`` (anonymous websocket sessions when ``hub.anonymous: controller``, and the
  HTTP bridge): call and subscribe under ``<root>.``, never register or publish;
* the HTTP bridge requires signed requests when ``hub.http_key`` names a key, and otherwise
  accepts loopback clients only.

Open mode (``hub.auth: none``, every ocs site file) keeps ocs's template: anonymous websocket
sessions may register and publish anything under ``<root>.``.
"""
from __future__ import annotations

from typing import Any

from ocs_core.site.config import HubConfig, SiteConfigError
from ocs_core.site.credentials import Credentials

__all__ = ["agent_role", "SIGNED_WINDOW_S", "LOOPBACK_NETS", "authenticated_parts",
           "open_mode_warning"]

CONTROLLER_ROLE = "controller"
#: crossbar's timestamp_delta_limit for signed bridge requests (seconds of tolerated clock
#: skew; replays within it are refused by ocs_core.router.replay_guard, not by crossbar).
SIGNED_WINDOW_S = 10
LOOPBACK_NETS = ["127.0.0.0/8", "::1/128"]


def agent_role(instance_id: str) -> str:
    """The crossbar role of one agent instance."""
    return f"agent-{instance_id}"


def _perm(uri: str, match: str, *, call: bool, register: bool, publish: bool,
          subscribe: bool) -> dict[str, Any]:
    return {"uri": uri, "match": match,
            "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
            "disclose": {"caller": False, "publisher": False}, "cache": True}


def _agent_permissions(root: str, instance_id: str) -> list[dict[str, Any]]:
    own = dict(call=True, register=True, publish=True, subscribe=True)
    return [_perm(f"{root}.{instance_id}", "exact", **own),
            _perm(f"{root}.{instance_id}.", "prefix", **own),
            _perm(f"{root}.", "prefix", call=True, register=False, publish=False, subscribe=True)]


def authenticated_parts(hub: HubConfig, creds: Credentials) -> tuple[list[dict], dict, dict]:
    """The realm's roles, the websocket path's ``auth`` and the caller path's options.

    Raises:
        SiteConfigError: ``hub.http_key`` names a key the credentials file does not hold.
    """
    root = hub.address_root
    roles = [{"name": agent_role(iid), "permissions": _agent_permissions(root, iid)}
             for iid in sorted(creds.agents)]
    roles.append({"name": CONTROLLER_ROLE, "permissions": [
        _perm(f"{root}.", "prefix", call=True, register=False, publish=False, subscribe=True)]})
    principals = {iid: {"realm": hub.wamp_realm, "role": agent_role(iid),
                        "authorized_keys": [key.public_key]}
                  for iid, key in sorted(creds.agents.items())}
    ws_auth: dict[str, Any] = {"cryptosign": {"type": "static", "principals": principals}}
    if hub.anonymous == "controller":
        ws_auth["anonymous"] = {"type": "static", "role": CONTROLLER_ROLE}
    caller: dict[str, Any] = {}
    if hub.http_key is not None:
        if hub.http_key not in creds.http:
            raise SiteConfigError(f"{hub.credentials}: no secret for hub.http_key {hub.http_key!r}; "
                                  "run `ocs-core credentials create`")
        caller.update({"key": hub.http_key, "secret": creds.http[hub.http_key],
                       "timestamp_delta_limit": SIGNED_WINDOW_S})
    else:
        caller["require_ip"] = list(LOOPBACK_NETS)
    return roles, ws_auth, caller


def open_mode_warning(hub: HubConfig) -> str | None:
    """The one line printed when a router starts in open mode (None when authenticated)."""
    if hub.authenticated:
        return None
    return (f"warning: router in open mode (hub.auth: none): anyone who reaches "
            f"{hub.wamp_server} can register, publish and call as any agent under "
            f"'{hub.address_root}.' (set hub.auth: cryptosign, see docs/security.md)")
