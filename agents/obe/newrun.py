"""Run configurations for the OBE agent: the default ``newrun`` handler and its helpers.

Pure logic, no Twisted. A *newrun handler* turns a ``newrun`` request (the classic TCP message,
or the WAMP Task's parameters) into an engine configuration for
:meth:`OBEEngine.from_config <agents.obe.engine.obe_engine.OBEEngine.from_config>`. It must return plain JSON data: the configuration
is stored with the run and rebuilt from the store after a restart.

The default handler (:func:`default_newrun_handler`):

* drops ``"command"``;
* maps the reference demo's ``lolim``/``hilim``/``steps`` keys onto the configured run's single
  setting axis (``{"start": lolim, "stop": hilim, "num": steps}``);
* merges the remaining keys over the site's default run configuration (``--run-config``): a key
  given in the request replaces the same key of the default (a shallow merge), and a request that
  names a different ``model`` does not inherit the default at all;
* a bare ``{"command": "newrun"}`` restarts the default configuration (a fresh prior).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ocs_core.runtime.text import brief

__all__ = ["NewrunHandler", "default_newrun_handler", "load_run_config", "load_handler",
           "LEGACY_AXIS_KEYS"]

NewrunHandler = Callable[[Mapping[str, Any], "Mapping[str, Any] | None"], dict]
"""``handler(message, default_config) -> engine configuration``; raises ValueError if refused."""

LEGACY_AXIS_KEYS = ("lolim", "hilim", "steps")


def _legacy_axis(message: Mapping[str, Any], base: Mapping[str, Any] | None) -> dict:
    missing = [k for k in LEGACY_AXIS_KEYS if k not in message]
    if missing:
        raise ValueError(f"lolim, hilim and steps go together; missing {', '.join(missing)}")
    lo, hi, steps = (message[k] for k in LEGACY_AXIS_KEYS)
    for name, v in (("lolim", lo), ("hilim", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must be a number, got {brief(v)}")
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {brief(message['steps'])}")
    settings = (base or {}).get("settings") if "settings" not in message else message["settings"]
    if isinstance(settings, list) and settings and all(isinstance(a, (list, dict)) for a in settings) \
            and len(settings) != 1:
        raise ValueError(f"lolim/hilim/steps set one setting axis, but the run has {len(settings)}")
    return {"start": float(lo), "stop": float(hi), "num": steps}


def default_newrun_handler(message: Mapping[str, Any], default_config: Mapping[str, Any] | None) -> dict:
    """The configuration of a new run from ``message`` and the site's default (see module doc).

    Raises:
        ValueError: no configuration at all, or inconsistent legacy keys.
    """
    if not isinstance(message, Mapping):
        raise ValueError(f"newrun needs an object, got {type(message).__name__}")
    msg = {k: v for k, v in message.items() if k != "command"}
    axis = None
    if any(k in msg for k in LEGACY_AXIS_KEYS):
        axis = _legacy_axis(msg, default_config)
        for k in LEGACY_AXIS_KEYS:
            msg.pop(k, None)
    base = dict(default_config or {})
    if "model" in msg and base.get("model") != msg["model"]:
        base = {}
    config = {**base, **msg}
    if axis is not None:
        config["settings"] = axis
    if not config:
        raise ValueError("no run configuration: send one (model, settings, priors, ...) or start "
                         "the agent with --run-config")
    if "model" not in config:
        raise ValueError("the run configuration names no model (key 'model'), and the agent has "
                         "no --run-config to take it from")
    return config


def load_run_config(path: str | Path) -> dict:
    """Read a run configuration file (YAML or JSON, one mapping)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a run configuration must be a mapping, got {type(doc).__name__}")
    json.dumps(doc, allow_nan=False)  # plain data only
    return doc


def load_handler(target: str) -> NewrunHandler:
    """Load a handler named ``package.module:function`` (from the site config, never the network)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"newrun handler must be 'module:function', got {target!r}")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load newrun handler {target!r}: {exc}") from None
    if not callable(func):
        raise ValueError(f"newrun handler {target!r} is not callable")
    return func
