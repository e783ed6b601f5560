"""The OBE run service, the default newrun handler and the adaptive_scan logic, without a network."""
import threading

import numpy as np
import pytest
from twisted.internet import defer

from agents.obe.classic.commands import LegacyDispatcher, OBEBackend
from agents.obe.engine.models import lorentzian
from agents.obe.newrun import default_newrun_handler, load_handler, load_run_config
from agents.obe.scan import ScanError, ScanPlan, measure_params, parse_measurement, run_scan
from agents.obe.service import NoRunError, OBEService
from agents.obe.run_store import RunStore

BASE = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 100},
        "n_particles": 2000, "noise_std": 100.0, "seed": 2}
TRUE = (3.1, -1500.0, 50000.0)


def y_at(x, rng=None):
    noise = 0.0 if rng is None else 100.0 * rng.standard_normal()
    return float(lorentzian((x,), TRUE, (0.1,))) + noise


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.sqlite3")
    yield s
    s.close()


# -- default newrun handler ----------------------------------------------------------------------

def test_handler_bare_message_uses_the_default():
    assert default_newrun_handler({"command": "newrun"}, BASE) == BASE
    with pytest.raises(ValueError, match="no run configuration"):
        default_newrun_handler({"command": "newrun"}, None)
    with pytest.raises(ValueError, match="names no model"):
        default_newrun_handler({"command": "newrun", "seed": 1}, None)


def test_handler_legacy_axis_keys_and_merge():
    cfg = default_newrun_handler({"command": "newrun", "lolim": 2, "hilim": 3, "steps": 25.0}, BASE)
    assert cfg["settings"] == {"start": 2.0, "stop": 3.0, "num": 25} and cfg["seed"] == 2
    assert default_newrun_handler({"seed": 9}, BASE) == {**BASE, "seed": 9}
    other = default_newrun_handler({"model": "line", "settings": [0, 1]}, BASE)
    assert other == {"model": "line", "settings": [0, 1]}  # another model: no inheritance
    for msg, text in [({"lolim": 1, "hilim": 2}, "missing steps"), ({"lolim": "a", "hilim": 2, "steps": 3},
                      "lolim must be a number"), ({"lolim": 1, "hilim": 2, "steps": 0}, "positive integer")]:
        with pytest.raises(ValueError, match=text):
            default_newrun_handler(msg, BASE)
    two_axes = {**BASE, "settings": [[1, 2], [3, 4]]}
    with pytest.raises(ValueError, match="one setting axis, but the run has 2"):
        default_newrun_handler({"lolim": 1, "hilim": 2, "steps": 3}, two_axes)


def test_run_config_file_and_handler_loading(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: lorentzian\nsettings: {start: 1, stop: 2, num: 5}\n")
    assert load_run_config(path)["settings"]["num"] == 5
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_run_config(path)
    assert load_handler("agents.obe.newrun:default_newrun_handler") is default_newrun_handler
    for bad in ("nocolon", "agents.obe.nope:f", "agents.obe.newrun:nope"):
        with pytest.raises(ValueError):
            load_handler(bad)


# -- service ---------------------------------------------------------------------------------------

def test_service_is_an_obe_backend_and_refuses_before_a_run(store):
    svc = OBEService(store)
    assert isinstance(svc, OBEBackend) and not svc.has_run()
    for call in (svc.optset, svc.getmean, svc.getwgt, lambda: svc.newdat([3.0], 1.0, 1.0)):
        with pytest.raises(NoRunError, match="no run exists yet"):
            call()
    reply = LegacyDispatcher(svc).handle({"command": "getmean"})
    assert "no run exists yet" in reply.value["error"]
    assert LegacyDispatcher(svc).handle({"command": "newrun"}).value["error"].startswith("newrun: no run configuration")


def test_invalid_newrun_keeps_the_current_run(store):
    svc = OBEService(store, default_config=BASE)
    first = svc.newrun({})["run_id"]
    svc.newdat([3.0], y_at(3.0), 100.0)
    with pytest.raises(ValueError, match="n_particles"):
        svc.newrun({"n_particles": -1})
    assert svc.run_id == first and svc.summary()["n_measurements"] == 1
    assert [r["id"] for r in store.list_runs()] == [first]


def test_restore_is_exact_from_snapshot_and_replay(tmp_path):
    path = tmp_path / "r.sqlite3"
    live = OBEService(RunStore(path), default_config=BASE, snapshot_every=20)
    live.newrun({})
    rng = np.random.default_rng(0)
    for i in range(57):
        x = live.optset() if i % 3 else live.goodset(3)  # selection draws must not matter
        live.newdat(x, y_at(x[0], rng), 100.0)
    assert live.store.latest_snapshot(live.run_id).n_measurements == 40
    restored = OBEService(RunStore(path))
    info = restored.restore()
    assert {k: info[k] for k in ("run_id", "n_measurements", "snapshot", "replayed")} == \
        {"run_id": 1, "n_measurements": 57, "snapshot": 40, "replayed": 17}
    assert restored.getmean() == live.getmean() and restored.getwgt() == live.getwgt()
    assert restored.getpar() == live.getpar()
    assert restored.optset() == live.optset()  # the streams agree after the restore too
    assert OBEService(RunStore(tmp_path / "empty.sqlite3")).restore() is None


def test_batch_is_all_or_nothing(store):
    svc = OBEService(store, default_config=BASE)
    svc.newrun({})
    svc.newdat([3.0], y_at(3.0), 100.0)
    before = (svc.getmean(), svc.getwgt())
    with pytest.raises(ValueError, match="record 2: .*zero likelihood.*no record of this batch"):
        svc.add_measurements([[[2.9], y_at(2.9), 100.0], {"x": [3.2], "y": y_at(3.2), "s": 100.0},
                              [[3.0], -1e9, 1.0]])
    with pytest.raises(ValueError, match="record 0 lacks s"):
        svc.add_measurements([{"x": [3.0], "y": 1.0}])
    assert (svc.getmean(), svc.getwgt()) == before
    assert store.count_measurements(svc.run_id) == 1
    out = svc.add_measurements([[[2.9], y_at(2.9), 100.0], [[3.2], y_at(3.2), 100.0]])
    assert (out["index"], out["count"], out["n_measurements"]) == (1, 2, 3)
    assert [m.settings for m in store.measurements(svc.run_id)] == [[3.0], [2.9], [3.2]]


def test_store_failure_reloads_what_the_store_holds(store, monkeypatch):
    svc = OBEService(store, default_config=BASE)
    svc.newrun({})
    svc.newdat([3.0], y_at(3.0), 100.0)
    before = svc.getmean()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store, "append_measurements", broken)
    with pytest.raises(RuntimeError, match="could not be stored .*disk full"):
        svc.newdat([3.1], y_at(3.1), 100.0)
    assert svc.summary()["n_measurements"] == 1 and svc.getmean() == before


def test_listener_window_and_threads(store):
    seen = []
    svc = OBEService(store, default_config=BASE, on_update=seen.append)
    svc.newrun({})
    errors = []

    def worker(k):
        try:
            for i in range(10):
                x = 2.5 + 0.01 * (k * 10 + i)
                svc.newdat([x], y_at(x), 100.0)
                svc.optset()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and svc.summary()["n_measurements"] == 40 == store.count_measurements(svc.run_id)
    assert sorted(u["n_measurements"] for u in seen) == list(range(1, 41))
    assert set(seen[0]) == {"run_id", "index", "count", "n_measurements", "parameters", "mean", "std",
                            "setting"}
    w = svc.window("particles", offset=1990, max_items=30)
    assert (w["count"], w["total"], w["truncated"]) == (10, 2000, False) and len(w["values"]) == 3
    w = svc.window("weights", max_items=5)
    assert len(w["values"]) == 5 and w["truncated"]
    with pytest.raises(ValueError):
        svc.window("nope")


def test_subclass_newrun_handler(store):
    class Fixed(OBEService):
        def make_config(self, message):
            return {**BASE, "settings": [float(v) for v in message["points"]]}

    svc = Fixed(store)
    assert LegacyDispatcher(svc).handle({"command": "newrun", "points": [2, 3, 4]}).value == "OK"
    assert svc.getset() == [[2.0, 3.0, 4.0]]


# -- adaptive_scan logic ---------------------------------------------------------------------------

def _session(success=True, data=None, status="done", last="measured"):
    return {"status": status, "success": success, "data": data or {},
            "messages": [[0, "x"], [1, last], [2, 'Status is now "done".']]}


def test_scan_plan_and_reply_parsing():
    plan = ScanPlan("observatory.inst", sigma=2.0, max_steps=3)
    plan.check(["x0"])
    with pytest.raises(ValueError, match="stop rule"):
        ScanPlan("i").check(["x0"])
    with pytest.raises(ValueError, match="go together"):
        ScanPlan("i", target_std=1.0).check(["x0"])
    assert measure_params(plan, [2.5]) == {"x": 2.5}
    assert measure_params(ScanPlan("i", setting_param="f,p"), [1.0, 2.0]) == {"f": 1.0, "p": 2.0}
    assert measure_params(plan, [1.0, 2.0]) == {"x": [1.0, 2.0]}
    assert parse_measurement(plan, [0, "ok", _session(data={"value": 5.0})]) == (5.0, 2.0)
    nosig = ScanPlan("i", max_steps=1)
    assert parse_measurement(nosig, [0, "ok", _session(data={"value": 5, "sigma": 3})]) == (5, 3)
    for reply, text in [([1, "t", _session(status="running")], "no result within"),
                        ([-1, "refused", {}], "wait refused"),
                        ([0, "ok", _session(success=False, last="fault!")], "failed: fault!"),
                        ([0, "ok", _session(data={"v": 1})], "has no 'value'"),
                        ([0, "ok", _session(data={"value": None})], "not a finite number"),
                        ("junk", "unexpected reply")]:
        with pytest.raises(ScanError, match=text):
            parse_measurement(plan, reply)
    with pytest.raises(ScanError, match="no sigma"):
        parse_measurement(nosig, [0, "ok", _session(data={"value": 1.0})])


class FakeInstrument:
    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def start(self, params):
        self.calls.append(params)
        return defer.succeed([0, "started", {}])

    def wait(self, timeout=None):
        if self.fail_at is not None and len(self.calls) >= self.fail_at:
            return defer.succeed([0, "done", _session(success=False, last="broken")])
        return defer.succeed([0, "done", _session(data={"value": y_at(self.calls[-1]["x"])})])

    def run(self, params, timeout=None):
        return self.start(params).addCallback(lambda _: self.wait(timeout))


def _run(plan, svc, client, stop_after=None):
    progress = []
    d = defer.ensureDeferred(run_scan(
        plan, svc, client, lambda f, *a: defer.maybeDeferred(f, *a),
        lambda: stop_after is not None and len(progress) >= stop_after, progress.append))
    out = []
    d.addBoth(out.append)
    return out[0], progress


def test_run_scan_steps_stop_and_failure(store):
    svc = OBEService(store, default_config=BASE)
    svc.newrun({})
    (ok, msg), progress = _run(ScanPlan("inst", sigma=100.0, max_steps=5), svc, FakeInstrument())
    assert ok and "reached max_steps (5) after 5 step(s)" in msg and progress[-1]["n_measurements"] == 5
    (ok, msg), progress = _run(ScanPlan("inst", sigma=100.0, max_steps=50), svc, FakeInstrument(), 2)
    assert ok and "stopped on request after 2 step(s)" in msg
    (ok, msg), _ = _run(ScanPlan("inst", sigma=100.0, max_steps=50), svc, FakeInstrument(fail_at=3))
    assert not ok and "failed at step 3" in msg and "broken" in msg and "run is intact" in msg
    assert svc.summary()["n_measurements"] == 9


def test_run_scan_ends_when_the_run_is_replaced(store):
    svc = OBEService(store, default_config=BASE)
    svc.newrun({})

    class Replacing(FakeInstrument):
        def start(self, params):
            if len(self.calls) == 1:
                svc.newrun({})  # e.g. a TCP client starts a new run meanwhile
            return super().start(params)

    (ok, msg), progress = _run(ScanPlan("inst", sigma=100.0, max_steps=5), svc, Replacing())
    assert not ok and "run 1 was replaced by run 2 during step 2" in msg
    assert svc.summary()["n_measurements"] == 0 and store.count_measurements(1) == 1


def test_the_repository_run_config_and_site_entry_are_valid():
    from pathlib import Path

    import yaml

    from agents.obe.engine.obe_engine import OBEEngine

    root = Path(__file__).resolve().parent.parent
    engine = OBEEngine.from_config({**load_run_config(root / "obe-run.yaml"), "n_particles": 100})
    assert engine.parameter_names == ("x0", "a", "b") and engine.n_settings == 200
    site = yaml.safe_load((root / "site-config.yaml").read_text())
    obe = [i for i in site["hosts"]["localhost"]["agent-instances"] if i["instance-id"] == "obe-1"]
    assert obe and obe[0]["agent-class"] == "OBEAgent" and "obe-run.yaml" in obe[0]["arguments"]


def test_classic_newrun_with_explicit_particles(store):
    svc = OBEService(store, default_config=BASE)
    dispatcher = LegacyDispatcher(svc)
    rows = [[2.5, 3.0, 3.5], [-1000.0] * 3, [50000.0] * 3]
    reply = dispatcher.handle({"command": "newrun", "particles": rows, "weights": [1, 1, 2]})
    assert reply.value == "OK"
    assert svc.getpar() == rows and svc.getwgt() == [0.25, 0.25, 0.5]
    assert svc.summary()["n_particles"] == 3
    bad = dispatcher.handle({"command": "newrun", "particles": rows[:2]})
    assert "newrun" in bad.value["error"] and "3 lists" in bad.value["error"]
    assert svc.getpar() == rows  # the run stays
    # restored exactly from the stored configuration
    again = OBEService(store)
    again.restore()
    assert again.getpar() == rows and again.getwgt() == [0.25, 0.25, 0.5]


def test_the_inline_budget_option(tmp_path):
    from agents.obe.agent_options import build_service, make_parser

    base = ["--instance-id", "obe-x", "--db", str(tmp_path / "x.sqlite3")]
    service = build_service(make_parser().parse_args(base))
    assert service.budget.budget == 0.0005
    service.store.close()
    service = build_service(make_parser().parse_args(base + ["--inline-budget-ms", "0"]))
    assert service.budget.budget == 0.0 and service.inline_lock("getmean") is service._lock  # no run
    service.store.close()
    with pytest.raises(SystemExit):
        build_service(make_parser().parse_args(base + ["--inline-budget-ms", "-1"]))
