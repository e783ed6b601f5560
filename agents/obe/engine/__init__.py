"""The OBE engine: sequential Bayesian experiment design on a particle filter (numpy only).

Imports neither Twisted nor the run store: the agent side (``agents.obe``) builds on it.
``from agents.obe.engine import OBEEngine`` is the usual entry.
"""
from agents.obe.engine.obe_engine import OBEEngine, ZeroLikelihoodError

__all__ = ["OBEEngine", "ZeroLikelihoodError"]
