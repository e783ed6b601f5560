"""Declarative parameters: the rules and the exact rejection messages (no network)."""
import pytest

from ocs_core.runtime.params import ParamError, declared_params, param, validate_params


@param("delay", default=5.0, type=float, min=0.0, max=60.0)
@param("succeed", default=True, type=bool)
@param("mode", default="a", choices=["a", "b"])
@param("name", cast=str.lower)
def op(session, params):
    return True, "ok"


SPECS = declared_params(op)


def test_written_order_and_defaults():
    assert [s.key for s in SPECS] == ["delay", "succeed", "mode", "name"]
    assert validate_params(SPECS, {"name": "ABC"}) == {"delay": 5.0, "succeed": True, "mode": "a",
                                                        "name": "abc"}


def test_int_becomes_float_and_none_means_default():
    out = validate_params(SPECS, {"delay": 2, "name": "x", "succeed": None})
    assert out["delay"] == 2.0 and isinstance(out["delay"], float) and out["succeed"] is True


@pytest.mark.parametrize("params, message", [
    ({}, "Param 'name' is required and must not be None"),
    ({"name": "x", "delay": "soon"}, "Param 'delay'='soon' is not of required type (<class 'float'>)"),
    ({"name": "x", "delay": -1}, "Param 'delay'=-1.0 is below the minimum (0.0)"),
    ({"name": "x", "delay": 61}, "Param 'delay'=61.0 is above the maximum (60.0)"),
    ({"name": "x", "mode": "c"}, "Param 'mode'='c' is not in allowed set (['a', 'b'])"),
    ({"name": 3}, "Param 'name'=3 could not be cast to"),
    ({"name": "x", "bogus": 1, "other": 2}, "params included unexpected values: ['bogus', 'other']"),
    ("text", "params must be an object"),
])
def test_rejections_name_param_and_rule(params, message):
    with pytest.raises(ParamError) as info:
        validate_params(SPECS, params)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused_for_numbers(value):
    # ocs's type=float turns True into 1.0 (`call heater-1 set_power watts=true` gave 1 W)
    @param("watts", type=float, min=0.0, max=10.0)
    @param("channel", default=1, type=int)
    def set_power(s, p):
        pass
    specs = declared_params(set_power)
    with pytest.raises(ParamError) as info:
        validate_params(specs, {"watts": value})
    assert str(info.value) == (f"Param 'watts'={value!r} is not of required type (<class 'float'>): "
                               "a boolean is not a number")
    with pytest.raises(ParamError, match="Param 'channel'=True is not of required type"):
        validate_params(specs, {"watts": 1.0, "channel": True})
    assert validate_params(specs, {"watts": 1, "channel": 2.0}) == {"watts": 1.0, "channel": 2}


def test_check_function_and_nonfinite():
    @param("x", type=float, check=lambda v: v != 3)
    def f(s, p):
        pass
    specs = declared_params(f)
    with pytest.raises(ParamError, match="failed validity check"):
        validate_params(specs, {"x": 3})
    with pytest.raises(ParamError, match="not a finite number"):
        validate_params(specs, {"x": float("nan")})


def test_no_params_and_drop_strays():
    @param("_")
    def none(s, p):
        pass
    assert validate_params(declared_params(none), None) == {}
    assert validate_params(declared_params(none), []) == {}
    with pytest.raises(ParamError, match="unexpected"):
        validate_params(declared_params(none), {"a": 1})

    @param("_no_check_strays")
    @param("a", default=1)
    def lax(s, p):
        pass
    assert validate_params(declared_params(lax), {"a": 2, "zzz": 3}) == {"a": 2}


def test_bad_default_fails_at_declaration():
    with pytest.raises(ValueError, match="breaks its own declaration"):
        param("x", default=5, type=int, max=3)
