"""A test agent whose ops misbehave on purpose: crashes, inf in data, bad returns, slow stops."""
from __future__ import annotations

import os
import threading

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import init_site_agent
from ocs_core.runtime.params import param

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ENV = {"OCS_CORE_AGENTS": "WireTestAgent=wire_agent:main", "PYTHONPATH": TESTS_DIR}


def main(args=None):
    parsed = site_args.parse_args(agent_class="WireTestAgent", args=args)
    agent = init_site_agent(parsed, "WireTestAgent")
    hold = threading.Event()

    def crash(session, params):
        """crash()

        **Task** - raise an exception."""
        raise RuntimeError("boom on purpose")

    def inf_data(session, params):
        session.data = {"inf": float("inf"), "nan": float("nan"), "ok": 1.5}
        return True, "stored inf and nan"

    @param("n", type=int, min=1, max=5)
    def needs_n(session, params):
        return True, f"n={params['n']}"

    def bad_return(session, params):
        return "not a pair at all"

    def hold_forever(session, params):
        hold.wait()  # ignores any stop request
        return True, "released"

    def no_stop(session, params):
        pass

    agent.register_task("crash", crash)
    agent.register_task("inf_data", inf_data)
    agent.register_task("needs_n", needs_n, blocking=False)
    agent.register_task("bad_return", bad_return)
    agent.register_process("stubborn", hold_forever, no_stop)
    agent.run()
