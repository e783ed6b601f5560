"""Where the router is, for clients: the hub of the site config, resolved like an agent's options."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ocs_core import site_args


@dataclass(frozen=True)
class Hub:
    """The router endpoints and namespace a client needs."""

    wamp_server: str
    wamp_http: str
    wamp_realm: str
    address_root: str


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


def resolve_hub(args: Any = None, *, site_file: str | None = None,
                site_host: str | None = None) -> Hub:
    """The hub from ``args`` (a list of options, a parsed namespace, or None for the defaults).

    Raises:
        ocs_core.site_config.SiteConfigError: no usable site file or hub entry.
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
        ns = parse_control_args(args=argv)
    missing = [k for k in ("site_hub", "site_http", "site_realm", "address_root") if not getattr(ns, k, None)]
    if missing:
        raise site_args.SiteConfigError(
            f"the site config gives no {', '.join(missing)}; set them in the hub section of "
            f"{getattr(ns, 'site_file', None) or 'site-config.yaml'} or pass --site-hub/--site-http")
    return Hub(ns.site_hub, ns.site_http, ns.site_realm, ns.address_root)
