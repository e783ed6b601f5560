"""The model of optbayesexpt's server demo, for bench/closed_loop.py's OBE agent.

The reference demo (``demos/server``) fits ``1 - A / (((f - f0) * 2 / lw)**2 + 1)`` with priors
f0 ~ U(1.5, 3.5), A ~ U(0.01, 0.1), lw ~ U(0.003, 0.05) (docs/obe-method.md section 2). This module
registers that model under ``optbayesexpt_server_demo`` when the agent loads it as its
``--newrun-handler closed_loop_model:newrun``; the handler itself is the default one (it maps
the demo client's lolim/hilim/steps onto the run's setting axis).
"""
from __future__ import annotations

import numpy as np

from agents.obe.engine.models import ModelSpec, register_model
from agents.obe.newrun import default_newrun_handler

MODEL = "optbayesexpt_server_demo"


def demo_resonance(settings, params, constants):
    f, = settings
    f0, amplitude, lw = params
    return 1.0 - amplitude / (np.square((f - f0) * 2.0 / lw) + 1.0)


register_model(ModelSpec(
    MODEL, demo_resonance, ("f0", "amplitude", "lw"), (), (),
    {"f0": {"uniform": [1.5, 3.5]}, "amplitude": {"uniform": [0.01, 0.1]},
     "lw": {"uniform": [0.003, 0.05]}},
    setting_names=("f",), description="optbayesexpt's server demo resonance"))

newrun = default_newrun_handler

RUN_CONFIG = {"model": MODEL, "settings": {"start": 2.4, "stop": 2.6, "num": 1000},
              "n_particles": 10000, "scale": False, "noise_std": 0.005, "seed": 1}
