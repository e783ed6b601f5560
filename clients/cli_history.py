"""``ocs-core history AGENT[.FEED]``: print, save (CSV) and plot (PNG) archived feed data.

The data comes from the archive's SQLite file (``--archive PATH``) or from an archiver agent's
``query`` Task (``--archiver INSTANCE``; by default the site file's FeedArchiver instance).
"""
from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime, timezone

from ocs_core.site.args import site_file_path
from ocs_core.site.config import SiteConfigError, load_site_config

from clients.archive import History, HistoryError, history, utc

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``history``."""
    p = subparsers.add_parser("history", parents=[common], help="archived data of a feed: "
                              "summary, CSV, PNG")
    p.add_argument("target", metavar="AGENT[.FEED]",
                   help="instance-id or agent address, and the feed (optional if it has one)")
    p.add_argument("--field", action="append", dest="fields", metavar="F",
                   help="a field to show (repeat; default: all)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--since", metavar="DURATION", help="the last 90s, 10m, 2h, 1d (default 1h)")
    when.add_argument("--start", metavar="T", help="start: unix seconds or ISO 8601 (UTC if no zone)")
    p.add_argument("--stop", metavar="T", help="stop (default now)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="at most N points per field (per bucket mean, min, max beyond)")
    p.add_argument("--csv", metavar="FILE", help="write field,timestamp,time_utc,value[,min,max] "
                   "rows ('-': standard output)")
    p.add_argument("--png", metavar="FILE", help="plot one panel per field (needs the plot extra)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--archive", metavar="PATH", help="the archive's SQLite file")
    source.add_argument("--archiver", metavar="INSTANCE", help="an archiver agent (its query Task)")
    p.set_defaults(func=cmd_history)


class _Usage(ValueError):
    pass


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise _Usage(f"--since {text!r}: expected a duration such as 90s, 10m, 2h or 1d") from None


def _time(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Usage(f"{flag} {text!r}: expected unix seconds or ISO 8601 "
                     "(2026-01-02T03:04:05)") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _site_archiver(args: argparse.Namespace) -> str | None:
    try:
        site = load_site_config(site_file_path(args.site_file))
    except SiteConfigError:
        return None
    for host in ([site.find_host(args.site_host)] + list(site.hosts.values())):
        for inst in (host.agent_instances if host else []):
            if inst.agent_class == "FeedArchiver":
                return inst.instance_id
    return None


def _split(target: str) -> tuple[str, str | None]:
    parts = target.split(".")
    if len(parts) >= 3:
        return ".".join(parts[:2]), ".".join(parts[2:])
    if len(parts) == 2:
        return parts[0], parts[1]
    return target, None


def cmd_history(args: argparse.Namespace) -> int:
    try:
        stop = _time(args.stop, "--stop") if args.stop else None
        start = _time(args.start, "--start") if args.start else None
        since = _duration(args.since) if args.since else (None if start is not None else 3600.0)
    except _Usage as exc:
        print(f"ocs-core history: {exc}", file=sys.stderr)
        return 2
    agent, feed = _split(args.target)
    source = {"archive": args.archive} if args.archive else {"archiver": args.archiver or _site_archiver(args)}
    if not any(source.values()):
        print("ocs-core history: give --archive PATH or --archiver INSTANCE (the site file has "
              "no FeedArchiver instance)", file=sys.stderr)
        return 1
    if feed is None:
        print(f"ocs-core history: name the feed: {agent}.FEED", file=sys.stderr)
        return 2
    try:
        h = history(agent, feed, args.fields, start, stop, args.max_points, since=since,
                    site_file=args.site_file, site_host=args.site_host, **source)
    except HistoryError as exc:
        print(f"ocs-core history: {exc}", file=sys.stderr)
        return 1
    out = sys.stderr if args.csv == "-" else sys.stdout
    _summary(h, out)
    if args.csv:
        rows = h.to_csv("/dev/stdout" if args.csv == "-" else args.csv)
        if args.csv != "-":
            print(f"{rows} rows written to {args.csv}", file=out)
    if args.png:
        try:
            h.plot(args.png)
        except RuntimeError as exc:
            print(f"ocs-core history: {exc}", file=sys.stderr)
            return 1
        print(f"plot written to {args.png}", file=out)
    return 0


def _summary(h: History, out) -> None:
    print(f"{h.address} {h.feed}: {utc(h.start)} .. {utc(h.stop)}", file=out)
    print(f"{'field':<24} {'points':>8} {'first (UTC)':<27} {'last (UTC)':<27} {'mean':>12} "
          f"{'min':>12} {'max':>12}", file=out)
    for name, s in h.series.items():
        if not len(s.t):
            print(f"{name:<24} {0:>8}", file=out)
            continue
        if s.value.dtype == object:
            stats = ("", "", "")
        else:
            lo = s.min if s.downsampled else s.value
            hi = s.max if s.downsampled else s.value
            finite = s.value[[math.isfinite(v) for v in s.value]]
            stats = tuple(f"{v:.6g}" for v in (finite.mean() if len(finite) else math.nan,
                                                 min(lo), max(hi)))
        kind = " (buckets)" if s.downsampled else ""
        print(f"{name:<24} {len(s.t):>8} {utc(s.t[0]):<27} {utc(s.t[-1]):<27} "
              f"{stats[0]:>12} {stats[1]:>12} {stats[2]:>12}{kind}", file=out)
    gaps = h.gaps_in_range()
    for g in gaps:
        lo = utc(g["t_before"]) if g.get("t_before") is not None else "?"
        hi = utc(g["t_after"]) if g.get("t_after") is not None else "?"
        print(f"gap (lost): run {g['session_id']} seq {g['first_seq']}..{g['last_seq']} "
              f"between {lo} and {hi}", file=out)
    if not gaps:
        print("no lost gaps in this range", file=out)
