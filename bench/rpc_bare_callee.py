"""Baseline callee for bench/rpc.py: a plain autobahn session answering like an agent, with constants.

Registers ``<root>.<id>`` (management: ``get_agent_class`` and ``get_api`` answer constants) and
``<root>.<id>.ops`` (every action answers the same ``[0, message, session]`` reply, read once
from ``--reply-file``). No framework code runs per call, so the time a call takes here is the
router's and autobahn's share alone.

Usage: python bench/rpc_bare_callee.py --url ws://127.0.0.1:PORT/ws --realm R --root observatory
       [--instance-id bare] [--reply-file reply.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession  # noqa: E402

_DEFAULT_REPLY = [0, "Session active.", {
    "session_id": 1, "op_name": "delay_task", "op_code": 5, "status": "done", "success": True,
    "start_time": 1.0, "end_time": 1.0, "data": {"requested_delay": 0.0, "delay_so_far": 0.0},
    "messages": [[1.0, "Status is now \"starting\"."], [1.0, "Status is now \"running\"."],
                 [1.0, "Exited after 0.0 seconds"], [1.0, "Status is now \"done\"."]],
    "degraded": False}]


def make_session_class(address: str, reply: list):
    """An ApplicationSession class that registers the two constant procedures on join."""

    api = {"agent_class": "BareEcho", "instance_hostname": "localhost", "instance_pid": 0,
           "feeds": [], "processes": [], "tasks": [["delay_task", reply[2], {"op_type": "task"}]]}

    class BareEcho(ApplicationSession):
        async def onJoin(self, details):  # noqa: N802 (autobahn's name)
            def management(q=None, *args, **kwargs):
                return "BareEcho" if q == "get_agent_class" else api

            def ops(*args, **kwargs):
                return reply

            await self.register(ops, f"{address}.ops")
            await self.register(management, address)
            print(f"registered {address} and {address}.ops", flush=True)

        def onDisconnect(self):  # noqa: N802
            from twisted.internet import reactor
            if reactor.running:
                reactor.stop()

    return BareEcho


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--root", default="observatory")
    parser.add_argument("--instance-id", default="bare")
    parser.add_argument("--reply-file", default=None)
    args = parser.parse_args()
    reply = json.loads(Path(args.reply_file).read_text()) if args.reply_file else _DEFAULT_REPLY
    cls = make_session_class(f"{args.root}.{args.instance_id}", reply)
    runner = ApplicationRunner(args.url, args.realm)
    runner.run(lambda config: cls(config), auto_reconnect=False, log_level="warn")


if __name__ == "__main__":
    main()
