"""Command signatures of the instrument agent: usage parsing, params to arguments, reply decoding."""
import pytest

from agents.instrument.signatures import (DEFAULT_COMMANDS, Arg, Signature, decode_value, parse_command_specs,
                                          parse_help, parse_usage)
from ocs_core.runtime.params import ParamError, validate_params


def test_parse_usage_as_help_prints_it():
    sig = parse_usage("scan <start:float> <stop:float> [n:int] ...")
    assert sig == Signature("scan", (Arg("start", "float"), Arg("stop", "float"), Arg("n", "int", False)), True)
    assert sig.usage() == "scan <start:float> <stop:float> [n:int] ..."
    assert sig.call_form() == "scan(start, stop, n=None, args=[])"
    assert parse_usage("ping") == Signature("ping")


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("9lives", "bad command name"),
    ("measure x", "bad argument 'x'"),
    ("measure <x:complex>", "bad type 'complex'"),
    ("f [a:int] <b:int>", "required argument 'b' after an optional"),
    ("f <a:int> <a:int>", "repeated or reserved"),
    ("f <args:int>", "repeated or reserved"),
    ("f ... <a:int>", "bad argument '...'"),
])
def test_parse_usage_rejects_malformed(text, words):
    with pytest.raises(ValueError, match=words):
        parse_usage(text)


def test_command_specs_known_free_and_explicit():
    sigs = parse_command_specs(["measure,read", "set_v <volts:float>", "frobnicate"])
    assert [s.name for s in sigs] == ["measure", "read", "set_v", "frobnicate"]
    assert sigs[0].args == (Arg("x", "float"),)
    assert sigs[2].args == (Arg("volts", "float"),) and sigs[2].declared
    assert sigs[3].varargs and not sigs[3].declared
    names = [s.name for s in parse_command_specs([DEFAULT_COMMANDS])]
    assert {"ping", "measure", "read", "set"} <= set(names)


@pytest.mark.parametrize("items, words", [
    (["acq"], "cannot be a Task"),
    (["command"], "cannot be a Task"),
    (["ping,read,ping"], "listed twice"),
    (["measure <x:float"], "bad argument"),
])
def test_command_specs_rejected(items, words):
    with pytest.raises(ValueError, match=words):
        parse_command_specs(items)


def test_param_specs_drive_validation_and_arguments():
    sig = parse_usage("scan <start:float> [n:int] ...")
    specs = sig.param_specs()
    checked = validate_params(specs, {"start": 1, "n": 3, "args": ["a", 2.5, True]})
    assert checked == {"start": 1.0, "n": 3, "args": ["a", 2.5, True]}
    assert sig.arguments(checked) == ["1.0", "3", "a", "2.5", "1"]
    with pytest.raises(ParamError, match="'start' is required"):
        validate_params(specs, {})
    with pytest.raises(ParamError, match="not of required type"):
        validate_params(specs, {"start": "high"})
    with pytest.raises(ParamError, match="needs 'n' too"):
        sig.arguments(validate_params(specs, {"start": 1.0, "args": [1]}))
    with pytest.raises(ParamError, match="must be a number, string or boolean"):
        parse_usage("f ...").arguments({"args": [{"a": 1}]})


def test_no_argument_command_rejects_params():
    specs = parse_usage("read").param_specs()
    assert validate_params(specs, {}) == {}
    with pytest.raises(ParamError, match="unexpected values"):
        validate_params(specs, {"x": 1})


def test_docstring_names_the_call_and_server_usage():
    doc = parse_usage("measure <x:float>").docstring("Measure at x.")
    assert doc.startswith("measure(x)\n\n**Task** - Measure at x.")
    assert "``measure <x:float>``" in doc


def test_parse_help_lines():
    helped = parse_help(["measure <x:float>: Set x, measure.", "ping: Reply 1.", "bare", ""])
    assert helped == {"measure": ("measure <x:float>", "Set x, measure."), "ping": ("ping", "Reply 1."),
                      "bare": ("bare", "")}


@pytest.mark.parametrize("fields, value", [
    ((), None), (("",), None), (("0.98321",),  0.98321), (("42",), 42), (("-3",), -3),
    (("1e-3",), 0.001), (("nan",), "nan"), (("hello",), "hello"),
    (('{"a": 1}',), {"a": 1}), (("{not json}",), "{not json}"),
    (("a", "2", "2.5"), ["a", 2, 2.5]),
])
def test_decode_value(fields, value):
    assert decode_value(fields) == value
