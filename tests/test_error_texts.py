"""Error texts quote at most ~100 characters of a bad value, on every surface that answers one.

Before, a reply echoed the bad value in full: a 1 MB ``delay`` string made a 5 MB reply. Each
case sends a huge value (a 1 MB string, a list of 100,000 items, a deeply nested list) where a
surface refuses it, and checks the text it answers with.
"""
from __future__ import annotations

import json
import urllib.request

import pytest
from twisted.internet.task import Clock

from agents.instrument.signatures import parse_usage
from agents.instrument.simulated import SimulatedInstrument
from agents.obe.classic.commands import LegacyDispatcher
from agents.obe.run_store import RunStore
from agents.obe.service import OBEService
from agents.rig.events import validate_exp_ref, validate_status
from agents.rig.messages import MessageError, decode, make_message
from ocs_core.framing.lines import Request
from ocs_core.runtime.operations import Operations
from ocs_core.runtime.params import ParamError, ParamSpec, validate_params
from ocs_core.runtime.text import brief

HUGE = "x" * 1_000_000
MANY = list(range(100_000))
DEEP: list = []
for _ in range(5_000):
    DEEP = [DEEP]
BAD_VALUES = [HUGE, MANY, {"k" * 500_000: 1}]
LIMIT = 400  # the message around the quote, plus ~100 characters of the value


def short(text: str) -> None:
    assert len(text) < LIMIT, f"{len(text)} characters: {text[:300]}..."
    assert "x" * 120 not in text


def test_brief():
    assert brief("abc") == "'abc'"
    assert brief(HUGE).endswith("' (1000000 characters)") and len(brief(HUGE)) < 130
    assert brief(HUGE, quote=False).startswith("xxx")
    assert len(brief(MANY)) < 130 and "(100000 items)" in brief(MANY)
    assert len(brief(DEEP)) < 130
    assert brief(b"z" * 1000).endswith("(1000 bytes)")

    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")
    assert "Broken" in brief(Broken()) and len(brief(Broken())) < 100


# -- op params and op control ---------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    ParamSpec("delay", type=float), ParamSpec("n", type=int), ParamSpec("mode", choices=["a", "b"]),
    ParamSpec("x", cast=float), ParamSpec("lo", min=0), ParamSpec("hi", max=1),
])
@pytest.mark.parametrize("value", BAD_VALUES + [DEEP], ids=["huge", "many", "bigkey", "deep"])
def test_param_errors_are_short(spec, value):
    if spec.min is not None or spec.max is not None:
        value = [value] if not isinstance(value, list) else value
    try:
        validate_params([spec], {spec.key: value})
    except ParamError as exc:
        short(str(exc))
    except TypeError:  # comparing a list with a number: not a ParamError, but no echo either
        pass


def test_stray_param_names_are_quoted_briefly():
    with pytest.raises(ParamError) as info:
        validate_params([ParamSpec("a", default=1)], {"k" * 500_000: 1, "a": 1})
    short(str(info.value))


def test_op_control_errors_are_short():
    ops = Operations(Clock())
    ops.register_task("t", lambda session, params: (True, "ok"), blocking=False)
    for reply in (ops.dispatch("status", HUGE), ops.dispatch("start", HUGE), ops.dispatch("wait", HUGE),
                  ops.dispatch("stop", HUGE), ops.dispatch("nonsense", HUGE), ops.dispatch("wait", "t", None, HUGE)):
        short(reply[1])
    ops.dispatch("start", "t")
    reply = ops.start("t", {"x": float("nan")})
    assert reply[0] != 0


# -- the OBE agent ----------------------------------------------------------------------------
@pytest.fixture
def dispatcher(tmp_path):
    service = OBEService(RunStore(str(tmp_path / "r.sqlite3")), default_config={
        "model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
        "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                   "b": {"normal": [50000.0, 1000.0]}}, "n_particles": 200, "seed": 1})
    d = LegacyDispatcher(service)
    assert d.handle({"command": "newrun"}).value == "OK"
    return d


@pytest.mark.parametrize("value", BAD_VALUES + [DEEP], ids=["huge", "many", "bigkey", "deep"])
def test_obe_classic_errors_are_short(dispatcher, value):
    requests = [{"command": value}, {"command": "goodset", "pickiness": value},
                {"command": "newdat", "x": value, "y": 1.0, "s": 1.0},
                {"command": "newdat", "x": 2.0, "y": value, "s": 1.0},
                {"command": "newdat", "x": 2.0, "y": 1.0, "s": value},
                {"command": "newdat", "x": 2.0, "y": 1.0, "s": [-1.0] * 100_000},
                {"command": "newrun", "model": value}, {"command": "newrun", "priors": value},
                {"command": "newrun", "settings": {"start": value, "stop": 1, "num": 3}},
                {"command": "newrun", "n_particles": value},
                {"command": "newrun", "priors": {"x0": {"uniform": value}}},
                {"command": "newrun", "priors": {"x0": value}},
                {"command": "newrun", "constants": value},
                {"command": "newrun", "lolim": value, "hilim": 2, "steps": 3},
                {"command": "newrun", "lolim": 1, "hilim": 2, "steps": value}]
    for request in requests:
        reply = dispatcher.handle(request).value
        assert isinstance(reply, dict) and "error" in reply, (request.keys(), reply)
        short(reply["error"])


def test_obe_measurement_records_errors_are_short(tmp_path, dispatcher):
    service = dispatcher.backend
    for records in ([HUGE], [[HUGE, 1.0, 1.0]], [{"x": MANY, "y": HUGE, "s": 1.0}]):
        with pytest.raises(ValueError) as info:
            service.add_measurements(records)
        short(str(info.value))


# -- instrument servers and agents --------------------------------------------------------------
def test_instrument_errors_are_short():
    server = SimulatedInstrument(Clock())
    for request in (Request("k" * 4000), Request("set_delay", ("9" * 3000 + "x",)),
                    Request("measure", ("x" * 4000,)), Request("help", ("n" * 4000,))):
        replies = []
        server.execute(request).addCallback(replies.append)
        [line] = replies
        short(line.decode())
    with pytest.raises(Exception) as info:
        parse_usage("measure <x:float>").arguments({"x": MANY})
    short(str(info.value))
    with pytest.raises(Exception) as info:
        parse_usage("measure <x:float>").arguments({"x": float("inf")})
    assert "finite" in str(info.value)


# -- the rig -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", BAD_VALUES, ids=["huge", "many", "bigkey"])
def test_rig_errors_are_short(value):
    datagrams = [json.dumps([value]), json.dumps([2, value, None]), json.dumps([32, value]),
                 json.dumps([1 << 40, None]), json.dumps([64, value, None])]
    for raw in datagrams:
        with pytest.raises(MessageError) as info:
            decode(raw.encode(), max_size=10**8)
        short(str(info.value))
    for call in (lambda: validate_status(value if not isinstance(value, list) else "x" * 10**6),
                 lambda: validate_exp_ref({"date": HUGE, "sequence": HUGE, "subject": "s"}),
                 lambda: validate_exp_ref({"date": HUGE}),
                 lambda: make_message(HUGE)):
        with pytest.raises((ValueError, TypeError, MessageError)) as info:
            call()
        short(str(info.value))


# -- end to end, as the issue measured it ------------------------------------------------------
def test_a_huge_bad_param_over_http_gets_a_short_reply(router, start_agent):
    start_agent("err-faker")
    big = "x" * 600_000  # crossbar's HTTP bridge takes bodies up to 1 MiB
    for args in (["start", "delay_task", {"delay": big}], ["status", big], [big, "acq"],
                 ["start", "delay_task", {big: 1}]):
        body = json.dumps({"procedure": "observatory.err-faker.ops", "args": args}).encode()
        request = urllib.request.Request(router.http_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=20) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        assert len(raw) < 2000, raw[:500]
