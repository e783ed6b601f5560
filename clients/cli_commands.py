"""Client subcommands of ``ocs-core``: scan, status, call, stop, abort, listen.

``status``/``call``/``stop``/``abort`` go through the HTTP bridge (OCSClient); ``scan`` and
``listen`` subscribe over WebSocket. Values on the command line parse as JSON where they can
(numbers, lists, booleans, null), else as strings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ocs_core.runtime.codes import OpCode, ResponseCode

from clients.client_http import ControlClient, ControlClientError
from clients.ocs_client import OCSClient
from clients.passwords import PasswordFileError
from clients.site import resolve_hub

#: Seconds after which an agent whose heartbeat was not seen is not listed by ``scan``.
LIVE_WINDOW = 5.0


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the client subcommands."""
    p = subparsers.add_parser("scan", parents=[common], help="list live agents (from heartbeats)")
    p.add_argument("--listen-time", type=float, default=1.5, metavar="S",
                   help="seconds to gather heartbeats (they come every second)")
    p.set_defaults(func=cmd_scan)

    p = subparsers.add_parser("status", parents=[common],
                              help="an agent's ops, or one op's session; without INSTANCE, the site "
                                   "(router, supervisor, this host's agents)")
    p.add_argument("instance_id", nargs="?", metavar="INSTANCE")
    p.add_argument("op", nargs="?", metavar="OP")
    p.add_argument("--run-dir", default="run", metavar="DIR",
                   help="site form: the run directory of `ocs-core up` (default: ./run)")
    p.add_argument("--listen-time", type=float, default=1.5, metavar="S",
                   help="site form: seconds to gather heartbeats (they come every second)")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("call", parents=[common],
                              help="start an op (a Task is waited for, printing its messages)")
    p.add_argument("instance_id", metavar="INSTANCE")
    p.add_argument("op", metavar="OP")
    p.add_argument("params", nargs="*", metavar="key=value")
    p.add_argument("--no-wait", action="store_true", help="start a Task and return at once")
    _privs_option(p)
    p.set_defaults(func=cmd_call, extra_hint="op params are key=value, e.g. watts=2, not --watts 2")

    for action in ("stop", "abort"):
        p = subparsers.add_parser(action, parents=[common], help=f"{action} an op")
        p.add_argument("instance_id", metavar="INSTANCE")
        p.add_argument("op", metavar="OP")
        _privs_option(p)
        p.set_defaults(func=cmd_stop_abort, action=action)

    p = subparsers.add_parser("listen", parents=[common], help="print the events of a feed or topic")
    p.add_argument("topic", metavar="TOPIC | INSTANCE.FEED")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, default=None, help="stop after this many events")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_listen)


def _privs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--privs", metavar="LEVEL|PASSWORD", type=_privs, default=None,
                        help="1, 2 or 3: the password for that level from $OCS_PASSWORDS_FILE "
                             "(else ~/.ocs-passwords.yaml); anything else: the password itself")


def _privs(text: str) -> int | str:
    return int(text) if text in ("1", "2", "3") else text


class UsageError(ValueError):
    """A bad command line (shown as one line)."""


def parse_value(text: str) -> Any:
    """JSON where it parses (numbers, lists, true/false/null, objects), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"parameter {item!r} is not key=value")
        params[key] = parse_value(value)
    return params


def _client(args: argparse.Namespace) -> OCSClient:
    return OCSClient(args.instance_id, getattr(args, "privs", None), site_file=args.site_file,
                     site_host=args.site_host)


def _op(client: OCSClient, name: str):
    op = getattr(client, name.replace("-", "_").replace(" ", "_"), None)
    if op is None or not hasattr(op, "status"):
        known = ", ".join(sorted(client._ops)) or "none"
        raise UsageError(f"{client.instance_id} has no op {name!r}; its ops: {known}")
    return op


def _fail(exc: Exception) -> int:
    print(f"ocs-core: error: {exc}", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    if args.instance_id is None:  # the site form, see ocs_core.cli.site
        from ocs_core.cli.site_status import site_status
        return site_status(args, gather_heartbeats, LIVE_WINDOW)
    try:
        client = _client(args)
        if args.op:
            print(repr(_op(client, args.op).status()))
            return 0
    except (ControlClientError, UsageError, PasswordFileError) as exc:
        return _fail(exc)
    api = client.api
    print(f"{args.instance_id}: {api.get('agent_class')} on {api.get('instance_hostname')} "
          f"(pid {api.get('instance_pid')})")
    rows = [(name, info["op_type"], _describe(session)) for kind in ("tasks", "processes")
            for name, session, info in api.get(kind, [])]
    _table(["op", "type", "status"], rows)
    return 0


def _describe(session: dict) -> str:
    status = session.get("status")
    if status == "no_history":
        return "never run"
    if status == "done":
        return "succeeded" if session.get("success") else "failed"
    return status + (" (degraded)" if session.get("degraded") else "")


def _table(header: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    print(fmt.format(*header).rstrip())
    for row in rows:
        print(fmt.format(*[str(x) for x in row]).rstrip())


def cmd_call(args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.params)
        client = _client(args)
        op = _op(client, args.op)
        reply = op.start(**params)
        if reply.status != ResponseCode.OK:
            return _fail(ValueError(f"start {args.instance_id} {args.op}: {reply.msg}"))
        if not hasattr(op, "abort") or args.no_wait:  # a Process, or asked not to wait
            print(repr(reply))
            return 0
        return _follow(op, reply, f"{args.instance_id} {args.op}")
    except (ControlClientError, UsageError, PasswordFileError) as exc:
        return _fail(exc)


def _follow(op, reply, what: str) -> int:
    """Print a running Task's messages as they arrive; exit status 0 when it succeeds."""
    shown = 0
    while True:
        session = reply.session or {}
        messages = session.get("messages", [])
        for stamp, text in messages[shown:]:
            print(f"{time.strftime('%H:%M:%S', time.localtime(stamp))} {text}", flush=True)
        shown = len(messages)
        if session.get("status") == "done":
            if session.get("data"):
                print(json.dumps(session["data"], indent=2, sort_keys=True))
            if session.get("success"):
                return 0
            return _fail(ValueError(f"{what} failed: {_last_words(session)}"))
        reply = op.wait(timeout=0.5)


def _last_words(session: dict) -> str:
    """The op's own final message (the one before 'Status is now "done".')."""
    texts = [m[1] for m in session.get("messages", [])]
    return texts[-2] if len(texts) >= 2 else "no message"


def cmd_stop_abort(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
        op = _op(client, args.op)
        method = getattr(op, args.action, None)
        if method is None:
            kind = "Task" if args.action == "stop" else "Process"
            raise UsageError(f"{args.op} is a {kind}; use "
                             f"`ocs-core {'abort' if args.action == 'stop' else 'stop'}`")
        reply = method()
    except (ControlClientError, UsageError, PasswordFileError) as exc:
        return _fail(exc)
    if reply.status != ResponseCode.OK:
        return _fail(ValueError(f"{args.action} {args.instance_id} {args.op}: {reply.msg}"))
    print(repr(reply))
    return 0


# -- WebSocket commands ------------------------------------------------------------------------
def _hub(args):
    return resolve_hub(site_file=args.site_file, site_host=args.site_host)


def cmd_listen(args: argparse.Namespace) -> int:
    from clients.client_t import run_with_session
    from ocs_core.runtime.timing import dsleep
    from twisted.internet import defer

    hub = _hub(args)
    topic = args.topic
    if not topic.startswith(hub.address_root + "."):
        parts = topic.split(".")
        if len(parts) != 2:
            return _fail(UsageError(f"{topic!r}: give a full topic ({hub.address_root}.ID.feeds.NAME) "
                                    "or INSTANCE.FEED"))
        topic = f"{hub.address_root}.{parts[0]}.feeds.{parts[1]}"
    options = {"match": "wildcard"} if ".." in topic else None
    if options is None:
        problem = _unknown_feed(hub, topic)
        if problem:
            return _fail(UsageError(problem))

    async def listen(session):
        from autobahn.wamp.types import SubscribeOptions
        done = defer.Deferred()
        seen = [0]

        def on_event(*event_args, **kw):
            details = kw.pop("details", None)
            message = event_args[0] if len(event_args) == 1 else list(event_args)
            where = getattr(details, "topic", None) or topic
            if args.json:
                print(json.dumps({"topic": where, "message": message}), flush=True)
            else:
                print(f"[{where}] {message}", flush=True)
            seen[0] += 1
            if args.count is not None and seen[0] >= args.count and not done.called:
                done.callback(None)

        opts = SubscribeOptions(details_arg="details", **(options or {}))
        await session.subscribe(on_event, topic, options=opts)
        print(f"listening to {topic} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if args.duration is not None:
            dsleep(args.duration).addCallback(lambda _: done.called or done.callback(None))
        await done

    return run_with_session(hub, listen)


def _unknown_feed(hub, topic: str) -> str | None:
    """Why ``topic`` names no feed of its agent (from the agent's ``get_api``), or None.

    An agent that does not answer is not an error: its feed may appear once it starts.
    """
    agent, sep, feed = topic[len(hub.address_root) + 1:].partition(".feeds.")
    if not sep or not agent or not feed or "." in feed:
        return None
    try:
        api = ControlClient(hub.address_root, hub.wamp_http, timeout=3.0).call(
            f"{hub.address_root}.{agent}", "get_api")
    except ControlClientError as exc:
        print(f"note: cannot list the feeds of {agent} ({exc}); listening anyway", file=sys.stderr)
        return None
    feeds = sorted(name for name, _info in api.get("feeds", []))
    if feed in feeds:
        return None
    return f"{agent} has no feed {feed!r}; its feeds: {', '.join(feeds) or 'none'}"


def gather_heartbeats(hub, listen_time: float) -> tuple[int, dict[str, tuple[float, dict]]]:
    """Subscribe to every agent's heartbeat for ``listen_time`` s (runs the reactor: once per
    process). Returns the exit status and ``{agent address: (time seen, op codes)}``."""
    from clients.client_t import run_with_session
    from ocs_core.runtime.timing import dsleep

    beats: dict[str, tuple[float, dict]] = {}

    async def gather(session):
        from autobahn.wamp.types import SubscribeOptions

        def on_beat(event, *rest, **kw):
            try:
                codes, info = event
                if not isinstance(codes, dict):  # very old agents publish 0 (no op codes)
                    codes = {"old_agent_no_opcodes": int(OpCode.EXPIRED)}
                beats[info["agent_address"]] = (time.time(), codes)
            except (TypeError, ValueError, KeyError):
                pass

        await session.subscribe(on_beat, f"{hub.address_root}..feeds.heartbeat",
                                options=SubscribeOptions(match="wildcard"))
        await dsleep(listen_time)

    return run_with_session(hub, gather), beats


def cmd_scan(args: argparse.Namespace) -> int:
    hub = _hub(args)
    code, beats = gather_heartbeats(hub, args.listen_time)
    if code:
        return code
    now = time.time()
    live = {a: c for a, (t, c) in beats.items() if now - t <= LIVE_WINDOW}
    print(f"Live agents: {len(live)}")
    http = ControlClient(hub.address_root, hub.wamp_http, timeout=3.0, signing=hub.signing)
    rows = []
    for address in sorted(live):
        instance = address[len(hub.address_root) + 1:]
        try:
            api = http.call(address, "get_api")
            cls, host = api.get("agent_class"), api.get("instance_hostname")
        except ControlClientError:
            cls, host = "?", "?"
        ops = ", ".join(f"{op}={_code_name(c)}" for op, c in live[address].items()) or "-"
        rows.append((instance, cls, host, ops))
    if rows:
        _table(["instance-id", "class", "host", "ops"], rows)
    return 0


def _code_name(code: Any) -> str:
    try:
        return OpCode(code).name.lower()
    except ValueError:
        return str(code)
