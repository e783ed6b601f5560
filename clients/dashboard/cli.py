"""``ocs-core web``: serve the dashboard page for the site (a client-side subcommand)."""
from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

__all__ = ["register", "cmd_web", "DEFAULT_PORT"]

DEFAULT_PORT = 8002


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``ocs-core web``."""
    p = subparsers.add_parser("web", parents=[common],
                              help="serve the web dashboard (site view, agent views, live plots)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--interface", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--key-file", metavar="PATH",
                   help="the page's key (mode 0600; created with a new key when missing). Without it "
                        "an authenticated site gets a new key at every start, printed in the address "
                        "line; an open site needs no key")
    p.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    """Run the dashboard until interrupted."""
    if not 0 <= args.port <= 65535:
        print(f"ocs-core: error: --port {args.port} is not a TCP port (0-65535)", file=sys.stderr)
        return 1
    from clients.site import resolve_hub
    hub = resolve_hub(site_file=args.site_file, site_host=args.site_host)
    from clients.dashboard.login import KeyFileError, LoginGate, new_key, read_key_file
    key, origin = None, ""
    if args.key_file:
        try:
            key, created = read_key_file(args.key_file)
        except KeyFileError as exc:
            print(f"ocs-core: error: {exc}", file=sys.stderr)
            return 1
        origin = f"; {'new key written to' if created else 'key from'} {args.key_file}"
    elif hub.authenticated:
        key, origin = new_key(), "; a new key for this run: --key-file keeps one"

    from ocs_core import _quiet_imports  # noqa: F401  (before autobahn)
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import Logger

    from clients.dashboard.service import Dashboard
    from clients.dashboard.web import make_site
    from ocs_core.runtime.logs import start_logging

    start_logging()
    log = Logger(namespace="clients.dashboard")
    try:
        dashboard = Dashboard(hub, reactor)
        site = make_site(dashboard, LoginGate(key))
    except RuntimeError as exc:  # the plotting library is missing
        print(f"ocs-core: error: {exc}", file=sys.stderr)
        return 1
    try:
        port = reactor.listenTCP(args.port, site, interface=args.interface)
    except CannotListenError as exc:
        print(f"ocs-core: error: cannot listen on {args.interface}:{args.port}: {exc.socketError}",
              file=sys.stderr)
        return 1
    host = f"[{args.interface}]" if ":" in args.interface else args.interface
    url = f"http://{host}:{port.getHost().port}/" + (f"?key={quote(key, safe='')}" if key else "")
    # the only line that carries the key (as Jupyter's token): nothing else logs it
    log.info("dashboard at {url} (router {router}, realm {realm}{origin})", url=url,
             router=hub.wamp_server, realm=hub.wamp_realm, origin=origin)
    dashboard.start()
    reactor.addSystemEventTrigger("before", "shutdown", dashboard.stop)
    reactor.run()
    return 0
