"""SimInstrumentAgent: a test instrument with Task ``measure(x)`` -> ``{"value": ...}`` (seeded Lorentzian).

Same convention as agents/instrument: the measured value is ``session['data']['value']``.
``--fail-after N`` makes every measure call after the N-th fail (to test callers' error paths).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import init_site_agent
from ocs_core.runtime.params import param

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ENV = {"OCS_CORE_AGENTS": "SimInstrumentAgent=sim_instrument_agent:main", "PYTHONPATH": TESTS_DIR}
TRUTH = {"x0": 3.1, "a": -1500.0, "b": 50000.0, "d": 0.1}


def lorentzian(x: float) -> float:
    return TRUTH["b"] + TRUTH["a"] / (((x - TRUTH["x0"]) / TRUTH["d"]) ** 2 + 1)


def main(args=None):
    parser = site_args.add_arguments(argparse.ArgumentParser())
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--noise", type=float, default=100.0)
    parser.add_argument("--fail-after", type=int, default=None)
    parsed = site_args.parse_args(agent_class="SimInstrumentAgent", parser=parser, args=args)
    agent = init_site_agent(parsed, "SimInstrumentAgent")
    rng = np.random.default_rng(parsed.seed)
    calls = {"n": 0}

    @param("x", type=float)
    def measure(session, params):
        """measure(x)

        **Task** - One noisy reading at x. session.data: ``{"value": y, "x": x}``."""
        calls["n"] += 1
        if parsed.fail_after is not None and calls["n"] > parsed.fail_after:
            return False, f"simulated instrument fault on call {calls['n']}"
        value = lorentzian(params["x"]) + parsed.noise * float(rng.standard_normal())
        session.data = {"value": value, "x": params["x"], "sigma": parsed.noise}
        return True, "measured"

    agent.register_task("measure", measure)
    agent.run()
