"""Where the router is, for clients: the hub of the site config, resolved like an agent's options."""
from __future__ import annotations

import argparse
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ocs_core.site import args as site_args
from ocs_core.site.credentials import load_credentials


@dataclass(frozen=True)
class Hub:
    """The router endpoints and namespace a client needs."""

    wamp_server: str
    wamp_http: str
    wamp_realm: str
    address_root: str
    http_key: str | None = None  #: signs HTTP bridge requests when set
    http_secret: str | None = field(default=None, repr=False)
    authenticated: bool = False  #: the router authenticates agents (``hub.auth`` is not ``none``)

    @property
    def signing(self) -> tuple[str, str] | None:
        """``(key, secret)`` for the HTTP bridge, or None (unsigned)."""
        return (self.http_key, self.http_secret) if self.http_key and self.http_secret else None


def add_site_arguments(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``parser`` with the standard site options (added only when missing)."""
    parser = parser or argparse.ArgumentParser()
    if not any("--site-file" in a.option_strings for a in parser._actions):
        site_args.add_arguments(parser)
    return parser


def parse_control_args(parser: argparse.ArgumentParser | None = None,
                       args: list[str] | None = None) -> argparse.Namespace:
    """Parse a control program's command line and fill the hub from the site config."""
    return site_args.parse_args(site_args.CONTROL, add_site_arguments(parser), args)


#: Hubs already resolved, keyed by everything the resolution reads (see :func:`_cache_key`);
#: saves parsing the same site file again for every client a script makes.
_HUB_CACHE: dict[tuple, Hub] = {}
_HUB_CACHE_LOCK = threading.Lock()
_HUB_CACHE_SIZE = 32


def _cache_key(argv: list[str]) -> tuple | None:
    """What a resolution of ``argv`` depends on: the options, the environment, the working
    directory and the site file's identity (path, inode, size, mtime); None when the file is
    not there (no caching: the parse will report it)."""
    given: dict[str, str] = {}
    for i, token in enumerate(argv):
        for flag in ("--site-file", "--site"):
            if token == flag and i + 1 < len(argv):
                given[flag] = argv[i + 1]
            elif token.startswith(flag + "="):
                given[flag] = token.split("=", 1)[1]
    try:
        path = site_args.site_file_path(given.get("--site-file"), given.get("--site"))
        st = os.stat(path)
    except (OSError, site_args.SiteConfigError):
        return None
    env = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k.startswith("OCS_") or k in site_args.ENV_FLAGS))
    return (tuple(argv), env, os.getcwd(), str(path), st.st_ino, st.st_size, st.st_mtime_ns)


def resolve_hub(args: Any = None, *, site_file: str | None = None,
                site_host: str | None = None) -> Hub:
    """The hub from ``args`` (a list of options, a parsed namespace, or None for the defaults).

    A site file already read (same path, size and modification time, same options and
    environment) is not parsed again.

    Raises:
        ocs_core.site.config.SiteConfigError: no usable site file or hub entry.
    """
    if isinstance(args, argparse.Namespace) and getattr(args, "site_http", None):
        ns = args
    else:
        if isinstance(args, argparse.Namespace):
            argv = []
            for flag in ("site_file", "site_host", "site_hub", "site_http", "site_realm", "address_root"):
                value = getattr(args, flag, None)
                if value is not None:
                    argv += ["--" + flag.replace("_", "-"), str(value)]
        else:
            argv = list(args or [])
        if site_file is not None:
            argv += ["--site-file", str(site_file)]
        if site_host is not None:
            argv += ["--site-host", site_host]
        key = _cache_key(argv)
        hub = _HUB_CACHE.get(key) if key is not None else None
        if hub is not None:
            return hub
        ns = parse_control_args(args=argv)
        hub = _hub_of(ns)
        if key is not None:
            with _HUB_CACHE_LOCK:
                if len(_HUB_CACHE) >= _HUB_CACHE_SIZE:
                    _HUB_CACHE.clear()
                _HUB_CACHE[key] = hub
        return hub
    return _hub_of(ns)


def _hub_of(ns: argparse.Namespace) -> Hub:
    missing = [k for k in ("site_hub", "site_http", "site_realm", "address_root") if not getattr(ns, k, None)]
    if missing:
        raise site_args.SiteConfigError(
            f"the site config gives no {', '.join(missing)}; set them in the hub section of "
            f"{getattr(ns, 'site_file', None) or 'site-config.yaml'} or pass --site-hub/--site-http")
    key = getattr(ns, "site_http_key", None)
    secret = None
    if key:  # the bridge wants signed requests: the secret is in the credentials file
        secret = load_credentials(ns.site_credentials).http.get(key)
        if secret is None:
            raise site_args.SiteConfigError(f"{ns.site_credentials}: no secret for hub.http_key "
                                            f"{key!r}; ask for the site's credentials file")
    return Hub(ns.site_hub, ns.site_http, ns.site_realm, ns.address_root, key, secret,
               bool(getattr(ns, "site_authenticated", False)))
