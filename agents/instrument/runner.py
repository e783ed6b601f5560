"""Run an InstrumentServer as a process: arguments, logging, ready line, clean shutdown.

``run(make_server)`` parses ``--port``, ``--host``, ``--timeout``, ``--log-level`` (plus any
arguments a server adds), connects the hardware, listens, prints exactly one line
``listening on HOST:PORT`` to stdout when ready, and stops cleanly on SIGTERM, SIGINT or the
``shutdown`` command. Logs go to stderr, one line per event.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from agents.instrument.server import InstrumentServer
from ocs_core.runtime import logs


def make_parser(description: str | None = None, default_port: int = 0) -> argparse.ArgumentParser:
    """An argument parser with the options every instrument server process takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, default=default_port, help="TCP port (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--timeout", type=float, default=None, help="default deadline per command, seconds")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"],
                   help="log level on stderr (debug logs every command)")
    p.add_argument("--no-connect", action="store_true", help="do not connect the hardware at start-up")
    return p


def start_logging(level: str = "info", stream: Any = None) -> None:
    """Log to ``stream`` (stderr) at ``level``, one line per event, in the agents' format."""
    logs.start_logging(level, stream=stream or sys.stderr, namespaces=("instrument",))


def run(make_server: Callable[[argparse.Namespace], InstrumentServer],
        argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None, *,
        parsed: argparse.Namespace | None = None) -> int:
    """Run a server process until SIGTERM/SIGINT or ``shutdown``; return the exit status.

    Args:
        make_server: builds the server from the parsed arguments (pass ``timeout=args.timeout``).
        argv: command-line arguments (default: ``sys.argv[1:]``).
        parser: a parser from :func:`make_parser` with the server's own options added.
        parsed: arguments already parsed (e.g. resolved against a site file); ``argv`` is then unused.
    """
    from twisted.internet import reactor

    args = parsed if parsed is not None else (parser or make_parser()).parse_args(argv)
    start_logging(args.log_level)
    server = make_server(args)
    status = {"code": 0}

    async def start() -> None:
        if not args.no_connect:
            try:
                await server.connect()
            except Exception as exc:
                server.log.warn("connect_hardware failed at start-up ({exc!r}); serving without hardware", exc=exc)
        try:
            port = server.listen(args.port, args.host)
        except Exception as exc:
            sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
            status["code"] = 1
            reactor.stop()
            return
        host = port.getHost()
        sys.stdout.write(f"listening on {host.host}:{host.port}\n")
        sys.stdout.flush()

    def stop_reactor() -> None:
        if reactor.running:
            reactor.stop()

    from twisted.internet import defer
    server.on_shutdown(stop_reactor)
    reactor.addSystemEventTrigger("before", "shutdown", server.stop)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.run()
    return status["code"]
