"""WebSocket measuring client for bench/rpc.py: timed WAMP calls to several agents, interleaved.

Joins the realm with a plain autobahn session and, for each case (``status``: one ``status``
call; ``cycle``: ``start`` of ``delay_task(delay=0)`` then ``wait``; ``combined``: one
``start_and_wait``, ocs-core's one-request Task call), calls every target once per
iteration in an order that rotates each iteration, timing each call (or cycle) with
``time.perf_counter`` around the awaited call. Every reply is checked (code OK, task done and
successful). Writes ``{case: {address: [seconds, ...]}}`` as JSON to ``--out``.

Usage: python bench/rpc_ws_client.py --url ws://127.0.0.1:PORT/ws --realm R --out times.json
       --targets observatory.bare,observatory.faker [--iterations 500] [--warmup 50]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession  # noqa: E402

OP = "delay_task"


def check(reply, what: str, address: str) -> None:
    """Raise when ``reply`` is not an OK ``[code, message, session]`` triple."""
    if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == 0):
        raise RuntimeError(f"{what} on {address} answered {reply!r}")


def make_session_class(args: argparse.Namespace):
    """The measuring session; it stops the reactor when done (or failed)."""
    targets = args.targets.split(",")

    class Measure(ApplicationSession):
        async def one(self, case: str, address: str) -> float:
            proc = f"{address}.ops"
            if case == "status":
                t0 = time.perf_counter()
                reply = await self.call(proc, "status", OP, {})
                dt = time.perf_counter() - t0
                check(reply, "status", address)
                return dt
            if case == "combined":  # ocs-core's one-request Task call
                t0 = time.perf_counter()
                done = await self.call(proc, "start_and_wait", OP, {"delay": 0}, timeout=5)
                dt = time.perf_counter() - t0
                check(done, "start_and_wait", address)
                return dt
            t0 = time.perf_counter()
            started = await self.call(proc, "start", OP, {"delay": 0})
            done = await self.call(proc, "wait", OP, {}, timeout=5)
            dt = time.perf_counter() - t0
            check(started, "start", address)
            check(done, "wait", address)
            if done[2].get("status") != "done" or not done[2].get("success"):
                raise RuntimeError(f"delay_task on {address} did not end done/ok: {done!r}")
            return dt

        async def onJoin(self, details):  # noqa: N802 (autobahn's name)
            out = {}
            try:
                for case in args.cases.split(","):
                    times = {t: [] for t in targets}
                    for _ in range(args.warmup):
                        for t in targets:
                            await self.one(case, t)
                    for i in range(args.iterations):
                        k = i % len(targets)
                        for t in targets[k:] + targets[:k]:
                            times[t].append(await self.one(case, t))
                    out[case] = times
                Path(args.out).write_text(json.dumps(out))
            except Exception as exc:  # reported through the exit status
                print(f"rpc_ws_client: {exc}", file=sys.stderr, flush=True)
                Measure.failed = True
            self.leave()

        def onDisconnect(self):  # noqa: N802
            from twisted.internet import reactor
            if reactor.running:
                reactor.stop()

    Measure.failed = False
    return Measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--targets", required=True, help="comma-separated agent addresses")
    parser.add_argument("--cases", default="status,cycle")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cls = make_session_class(args)
    ApplicationRunner(args.url, args.realm).run(lambda config: cls(config), log_level="warn")
    return 1 if cls.failed or not Path(args.out).exists() else 0


if __name__ == "__main__":
    sys.exit(main())
