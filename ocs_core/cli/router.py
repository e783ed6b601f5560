"""``ocs-core router start|stop|status``: run the site's crossbar router."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ocs_core.router.auth import open_mode_warning
from ocs_core.router.process import Router
from ocs_core.site.args import site_file_path
from ocs_core.site.config import load_site_config

DEFAULT_NODE_DIR = "run/router"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``router`` and its ``start``, ``stop`` and ``status`` subcommands."""
    router = subparsers.add_parser("router", help="start, stop or query the site's crossbar router")
    actions = router.add_subparsers(dest="action", metavar="ACTION", required=True)
    node = argparse.ArgumentParser(add_help=False)
    node.add_argument("--node-dir", default=DEFAULT_NODE_DIR, metavar="DIR",
                      help=f"crossbar node directory: config, pid file, log (default: ./{DEFAULT_NODE_DIR})")
    start = actions.add_parser("start", parents=[common, node],
                               help="start the router in the background; return once it is ready")
    start.add_argument("--foreground", action="store_true",
                       help="run until Ctrl-C (or SIGTERM) instead of in the background")
    start.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long to wait for the router to be ready (default: 30)")
    start.add_argument("--log-file", metavar="PATH", help="crossbar's log (default: NODE_DIR/crossbar.log)")
    start.add_argument("--loglevel", default="warn", choices=["error", "warn", "info", "debug"],
                       help="crossbar's log level (default: warn)")
    start.set_defaults(func=run_start)
    stop = actions.add_parser("stop", parents=[common, node], help="stop the router")
    stop.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                      help="seconds between SIGTERM and SIGKILL (default: 5)")
    stop.set_defaults(func=run_stop)
    status = actions.add_parser("status", parents=[common, node],
                                help="say whether the router runs and answers (exit status 0 if so)")
    status.set_defaults(func=run_status)


def _router(args: argparse.Namespace) -> Router:
    cfg = load_site_config(site_file_path(args.site_file, args.site))
    return Router(cfg.hub, Path(args.node_dir), log_path=getattr(args, "log_file", None),
                  loglevel=getattr(args, "loglevel", "warn"))


def run_start(args: argparse.Namespace) -> int:
    """Start the router; in the foreground, keep it until interrupted."""
    router = _router(args)
    if args.foreground:  # SIGTERM stops the router like Ctrl-C, also during startup
        signal.signal(signal.SIGTERM, _interrupt)
    pid = router.start(timeout=args.timeout)
    try:  # from here on, a SIGTERM (KeyboardInterrupt) is a clean stop, even before wait()
        print(f"router ready: {router.ws_url} and {router.http_url} (pid {pid}, log {router.log_path})",
              flush=True)
        warning = open_mode_warning(router.hub)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        if not args.foreground:
            return 0
        status = router.wait()
    except KeyboardInterrupt:
        if not args.foreground:
            raise
        router.stop()
        print("router stopped")
        return 0
    router.stop()
    print(f"ocs-core: error: crossbar exited with status {status}; log {router.log_path}: "
          f"{router.log_tail()}", file=sys.stderr)
    return 1


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def run_stop(args: argparse.Namespace) -> int:
    """Stop a router started from the node directory (nothing to do is not an error)."""
    router = _router(args)
    if router.stop(timeout=args.timeout):
        print(f"router stopped (port {router.port})")
    else:
        print(f"no router running from {router.node_dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print one status line; exit status 0 when the router runs and answers."""
    router = _router(args)
    state = router.status()
    if state["running"] and state["ready"]:
        print(f"router running: pid {state['pid']}, {state['ws_url']} and {state['http_url']}")
        return 0
    if state["running"]:
        print(f"router process running (pid {state['pid']}) but not answering at {state['http_url']}")
        return 1
    print(f"router not running (node dir {state['node_dir']}, port {state['port']})")
    return 1
