"""A test agent for the client tests: op names with '-' and spaces, and agent-to-agent control.

``DriverAgent`` (registered for subprocesses through ``OCS_CORE_AGENTS``, see
:func:`subprocess_env`) has:

* Task ``drive`` (``target``, ``delay``): runs ``delay_task`` on the FakeDataAgent
  ``<address_root>.<target>`` with :meth:`clients.client_t.TaskClient.run` over this agent's own
  session and returns its result (the driven session and the target's ``ocs_core.features``
  land in ``session.data``).
* Task ``many-msgs`` (``count``): adds ``count`` session messages.
* Process ``slow proc``: runs until stopped.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.timing import dsleep

AGENTS_ENV_VALUE = "DriverAgent=clients_agents:main"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def subprocess_env() -> dict[str, str]:
    """Environment that makes ``DriverAgent`` launchable by ``ocs-core agent``."""
    return {"OCS_CORE_AGENTS": AGENTS_ENV_VALUE, "PYTHONPATH": TESTS_DIR}


def main(args: list[str] | None = None) -> None:
    """Run a DriverAgent from the site config."""
    parsed = site_args.parse_args(agent_class="DriverAgent",
                                    parser=site_args.add_arguments(argparse.ArgumentParser()),
                                    args=args)
    agent = init_site_agent(parsed, "DriverAgent")
    root = parsed.address_root

    @param("target", type=str)
    @param("delay", default=0.2, type=float, min=0.0)
    async def drive(session, params: dict) -> tuple[bool, str]:
        """drive(target, delay=0.2)

        **Task** - Run ``delay_task(delay)`` on FakeDataAgent ``target`` and return its result.
        """
        from clients import client_t

        address = f"{root}.{params['target']}"
        other = client_t.TaskClient(agent, address, "delay_task")
        code, msg, driven = await other.run(delay=params["delay"])
        if code != 0:
            return False, f"start failed: {msg}"
        features = await client_t.agent_features(agent.session, address)
        session.data = {"driven": driven, "features": features}
        return bool(driven.get("success")), f"delay_task on {params['target']}: {msg}"

    @param("count", default=7, type=int, min=0)
    def many_msgs(session, params: dict) -> tuple[bool, str]:
        """many-msgs(count=7)

        **Task** - Add ``count`` messages to the session.
        """
        for i in range(params["count"]):
            session.add_message(f"message {i}")
        return True, "Done."

    async def slow_proc(session, params: Any) -> tuple[bool, str]:
        """**Process** - Run until stopped."""
        while session.status == "running":
            await dsleep(0.1)
        return True, "Stopped."

    def stop_slow(session, params: Any) -> None:
        session.set_status("stopping")

    agent.register_task("drive", drive, blocking=False)
    agent.register_task("many-msgs", many_msgs)
    agent.register_process("slow proc", slow_proc, stop_slow, blocking=False)
    agent.run()
