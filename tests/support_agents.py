"""Tiny agent mains for testing the launcher and fixtures (not the agent runtime).

Registered for subprocesses through ``OCS_CORE_AGENTS`` (see :data:`AGENTS_ENV_VALUE`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ocs_core.site import args as site_args

AGENTS_ENV_VALUE = "ArgsDump=support_agents:dump_args,MiniAgent=support_agents:mini"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def subprocess_env() -> dict[str, str]:
    """Environment that makes these agents launchable by ``ocs-core agent``."""
    return {"OCS_CORE_AGENTS": AGENTS_ENV_VALUE, "PYTHONPATH": TESTS_DIR}


def dump_args(args: list[str]) -> int:
    """Resolve the arguments like an agent would and write them as JSON to $DUMP_FILE."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="idle")
    parser.add_argument("--num", type=float, default=1.0)
    ns = site_args.parse_args("ArgsDump", parser, args)
    out = {**vars(ns), "address": site_args.agent_address(ns), "argv": args}
    with open(os.environ["DUMP_FILE"], "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return 0


def mini(args: list[str]) -> None:
    """A minimal WAMP agent: registers ``<address>`` answering ``get_agent_class``."""
    parser = argparse.ArgumentParser()
    ns = site_args.parse_args("MiniAgent", parser, args)
    address = site_args.agent_address(ns)

    from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession

    class Mini(ApplicationSession):
        async def onJoin(self, details):
            def management(action, *rest, **kw):
                return "MiniAgent" if action == "get_agent_class" else None

            await self.register(management, address)
            print(f"registered {address}", flush=True)

        def onDisconnect(self):
            from twisted.internet import reactor

            if reactor.running:
                reactor.stop()

    runner = ApplicationRunner(ns.site_hub, ns.site_realm)
    runner.run(Mini, auto_reconnect=False)
    sys.stdout.flush()
