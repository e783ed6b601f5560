"""The ``ocs_core.param_specs`` encoder (pure) and the management query on a real agent."""
from __future__ import annotations

import json
from types import SimpleNamespace

from ocs_core.runtime.param_specs import PARAM_SPECS_QUERY, encode_param_specs
from ocs_core.runtime.params import declared_params, param


@param("delay", default=5.0, type=float, min=0.0, doc="seconds")
@param("mode", default="a", choices=["a", "b"])
@param("n", type=int, max=10)
@param("when", default=object)
def _op(session, params):
    return True, ""


@param("_")
def _none(session, params):
    return True, ""


def _ops():
    return [SimpleNamespace(name="op", params=declared_params(_op)),
            SimpleNamespace(name="bare", params=None),
            SimpleNamespace(name="nothing", params=declared_params(_none))]


def test_specs_are_json_with_names_types_defaults_bounds_choices():
    out = encode_param_specs(_ops())
    json.dumps(out, allow_nan=False)
    specs = {s["name"]: s for s in out["op"]["params"]}
    assert list(specs) == ["delay", "mode", "n", "when"]
    assert specs["delay"] == {"name": "delay", "required": False, "default": 5.0, "type": "float",
                              "choices": None, "min": 0.0, "max": None, "doc": "seconds",
                              "cast": None, "check": False, "none_is_missing": True}
    assert specs["mode"]["choices"] == ["a", "b"] and specs["mode"]["type"] is None
    assert specs["n"]["required"] is True and specs["n"]["type"] == "int" and specs["n"]["max"] == 10
    assert specs["when"]["default"] == repr(object) and specs["when"]["default_repr"] is True


def test_undeclared_and_no_params():
    out = encode_param_specs(_ops())
    assert out["bare"] == {"params": None, "no_params": False, "strays_dropped": False}
    assert out["nothing"] == {"params": [], "no_params": True, "strays_dropped": False}


def test_real_agent_answers_the_query(router, start_agent):
    agent = start_agent("specs-faker")
    reply = router.call(agent.address, PARAM_SPECS_QUERY)
    specs = reply["args"][0]
    delay = {s["name"]: s for s in specs["delay_task"]["params"]}
    assert delay["delay"]["default"] == 5.0 and delay["delay"]["min"] == 0.0
    assert delay["succeed"]["type"] == "bool"
    assert specs["count"]["params"] is None
    assert router.call(agent.address, "no_such_query")["args"] == [None]
