"""The archiver's command-line options, and opening its store from them."""
from __future__ import annotations

import argparse
import os
import re

from ocs_core.site import args as site_args

from agents.archive.store import ArchiveStore

__all__ = ["make_parser", "open_store", "data_dir", "parse_duration", "parse_size"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_duration(text: str) -> float:
    """``90``, ``10m``, ``2h``, ``30d`` -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90, 10m, 2h or 30d, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_size(text: str) -> int:
    """``5000000``, ``500MB``, ``2G`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 500MB or 2G, got {text!r}")
    return int(float(m.group(1)) * _SIZES[m.group(2).lower()])


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The archiver's own options, added to the site options."""
    parser = site_args.add_arguments(parser)
    g = parser.add_argument_group("FeedArchiver options")
    g.add_argument("--initial-state", choices=["record", "idle"], default="record",
                   help="'record' (default) starts the record Process at startup")
    g.add_argument("--backend", choices=["sqlite", "influxdb"], default="sqlite",
                   help="where samples go: an SQLite file (default) or InfluxDB 1.x")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory of the archive (default: 'data' beside the host's log-dir, "
                        "else ./data)")
    g.add_argument("--archive-file", default="archive.sqlite", metavar="NAME",
                   help="SQLite file name in --data-dir (default archive.sqlite); the InfluxDB "
                        "backend keeps its seq bookkeeping in <NAME>.influx-state.sqlite")
    g.add_argument("--influx-url", default="http://127.0.0.1:8086", metavar="URL",
                   help="InfluxDB 1.x HTTP API (default http://127.0.0.1:8086)")
    g.add_argument("--influx-db", default="ocs_feeds", metavar="NAME",
                   help="InfluxDB database, created if missing (default ocs_feeds)")
    g.add_argument("--retention-age", type=parse_duration, default=None, metavar="DURATION",
                   help="drop samples older than this (e.g. 30d; default: keep)")
    g.add_argument("--retention-size", type=parse_size, default=None, metavar="SIZE",
                   help="drop the oldest samples while the archive is larger (e.g. 5G; default: no limit)")
    g.add_argument("--flush-interval", type=float, default=0.5, metavar="S",
                   help="seconds between writes to the store (default 0.5)")
    g.add_argument("--max-backlog", type=int, default=5_000_000, metavar="SAMPLES",
                   help="samples held in memory while the store fails; past it, events are "
                        "refused and back-filled later (default 5,000,000)")
    g.add_argument("--retention-period", type=float, default=60.0, metavar="S",
                   help="seconds between retention passes (default 60)")
    g.add_argument("--sqlite-max-pages", type=int, default=None, metavar="PAGES",
                   help="hard cap on the SQLite file, in pages of 4 KiB (default: none; the "
                        "disk is the limit)")
    return parser


def data_dir(parsed: argparse.Namespace) -> str:
    """``--data-dir``, else ``data`` beside the host's log-dir, else ``./data``."""
    if parsed.data_dir:
        return parsed.data_dir
    log_dir = getattr(parsed, "log_dir", None)
    if log_dir:
        return os.path.join(os.path.dirname(os.path.abspath(log_dir)), "data")
    return os.path.abspath("data")


def open_store(parsed: argparse.Namespace) -> ArchiveStore:
    """Open the backend the options name (blocking). Raises StoreError."""
    path = os.path.join(data_dir(parsed), parsed.archive_file)
    if parsed.backend == "influxdb":
        from agents.archive.influx_store import InfluxStore
        return InfluxStore(parsed.influx_url, parsed.influx_db, path + ".influx-state.sqlite")
    from agents.archive.sqlite_store import SQLiteStore
    return SQLiteStore(path, max_pages=parsed.sqlite_max_pages)
