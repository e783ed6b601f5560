"""The OBE agent's command-line options, and building its run service from them (with restore)."""
from __future__ import annotations

import argparse
import os

from twisted.logger import Logger

from ocs_core.site import args as site_args

from agents.obe.classic import server as classic_server
from agents.obe.inline_budget import DEFAULT_INLINE_BUDGET, InlineBudget
from agents.obe.newrun import load_handler, load_run_config
from agents.obe.service import DEFAULT_MAX_ITEMS, DEFAULT_SNAPSHOT_EVERY, OBEService
from agents.obe.run_store import RunStore

__all__ = ["make_parser", "build_service"]

log = Logger(namespace="agents.obe.agent")


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The agent's own options, added to the site options."""
    parser = site_args.add_arguments(parser)
    g = parser.add_argument_group("OBEAgent options")
    g.add_argument("--tcp-port", type=int, default=classic_server.DEFAULT_PORT,
                   help="port of the classic TCP protocol (default 61981; 0: any free port)")
    g.add_argument("--tcp-interface", default=classic_server.DEFAULT_INTERFACE,
                   help="interface of the classic TCP protocol (default 127.0.0.1)")
    g.add_argument("--no-tcp", action="store_true", help="do not start serve_tcp at startup")
    g.add_argument("--db", default=None, metavar="PATH",
                   help="SQLite file of runs (default ./<instance-id>.obe.sqlite3; ':memory:' keeps nothing)")
    g.add_argument("--sync", choices=["full", "normal"], default="normal",
                   help="SQLite durability: normal (WAL, no fsync per measurement: survives a "
                        "killed agent, not a power cut) or full (fsync each measurement: survives "
                        "power loss); default normal")
    g.add_argument("--run-config", default=None, metavar="PATH",
                   help="default run configuration (YAML/JSON) for newrun without a full configuration")
    g.add_argument("--newrun-handler", default=None, metavar="MODULE:FUNCTION",
                   help="function(message, default_config) -> run configuration, for newrun")
    g.add_argument("--snapshot-every", type=int, default=DEFAULT_SNAPSHOT_EVERY,
                   help="store the posterior every N measurements (default 50)")
    g.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS,
                   help="values per reply of getwgt/getpar/getset (default 10000)")
    g.add_argument("--inline-budget-ms", type=float, default=DEFAULT_INLINE_BUDGET * 1e3, metavar="MS",
                   help="an engine call whose measured running cost is at most MS runs in the reactor "
                        "thread when the posterior is free (default 0.5; 0: always a worker thread)")
    return parser


def _beside_site(path: str, site_file: str | None) -> str:
    """``path`` as given if it exists, else relative to the site file's directory."""
    if os.path.isabs(path) or os.path.exists(path) or not site_file:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(site_file)), path)


def build_service(parsed: argparse.Namespace) -> OBEService:
    """The run service from parsed options, with the store's current run restored.

    Raises:
        SystemExit: the run configuration file or the newrun handler cannot be loaded (logged).
    """
    db = parsed.db or os.path.join(os.getcwd(), f"{parsed.instance_id}.obe.sqlite3")
    if not parsed.inline_budget_ms >= 0:
        log.error("OBEAgent cannot start: --inline-budget-ms must be >= 0, got {v}", v=parsed.inline_budget_ms)
        raise SystemExit(1)
    try:
        default_config = load_run_config(_beside_site(parsed.run_config, parsed.site_file)) \
            if parsed.run_config else None
        handler = load_handler(parsed.newrun_handler) if parsed.newrun_handler else None
    except (OSError, ValueError) as exc:
        log.error("OBEAgent cannot start: {why}", why=exc)
        raise SystemExit(1) from None
    service = OBEService(RunStore(db, durable=parsed.sync == "full"), default_config=default_config,
                         newrun_handler=handler, snapshot_every=parsed.snapshot_every,
                         inline_budget=InlineBudget(parsed.inline_budget_ms / 1e3))
    try:
        info = service.restore()
    except Exception as exc:  # noqa: BLE001 - start without a run, say why
        log.error("could not restore the current run from {db}: {why}", db=db, why=exc)
        info = None
    if info is not None:
        log.info("restored run {run_id} from {db}: {n} measurements (snapshot at {snap}, "
                 "{rep} replayed, {sec} s)", run_id=info["run_id"], db=db, n=info["n_measurements"],
                 snap=info["snapshot"], rep=info["replayed"], sec=info["seconds"])
    return service
