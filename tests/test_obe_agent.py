"""The OBE agent on a real router: every Task through OCSClient, the classic TCP port from a raw
socket, malformed frames, kill -9 and restore, and adaptive_scan against a simulated instrument."""
import random
import socket
import time

import pytest
import pytest_twisted
import yaml
from twisted.internet import threads

from clients.ocs_client import OCSClient
from ocs_core.testing import AgentProcess, free_port, write_site_config

import raw_obe_client as raw
from sim_instrument_agent import ENV as SIM_ENV
from obe_malformed import malformed_cases, send_malformed
from wamp_helpers import Subscriber, until

RUN = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
       "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                  "b": {"normal": [50000.0, 1000.0]}},
       "n_particles": 3000, "noise_std": 100.0, "seed": 11}


def lor(x, x0=3.1, a=-1500.0, b=50000.0, d=0.1):
    return b + a / (((x - x0) / d) ** 2 + 1)


def start_obe(router, tmp_path, instance, *, snapshot_every=50, extra=()):
    run_file = tmp_path / f"{instance}-run.yaml"
    run_file.write_text(yaml.safe_dump(RUN))
    port = free_port()
    args = ["--db", str(tmp_path / f"{instance}.sqlite3"), "--tcp-port", str(port),
            "--run-config", str(run_file), "--snapshot-every", str(snapshot_every), *extra]
    router.add_instance("OBEAgent", instance, args)
    agent = router.agent(instance)
    agent.wait_registered(20)
    return agent, port


def wait_tcp(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return raw.tcpcmd(port, {"command": "ready"})
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def obe(router, tmp_path_factory):
    agent, port = start_obe(router, tmp_path_factory.mktemp("obe"), "obe-t1")
    wait_tcp(port)
    client = OCSClient("obe-t1", site_file=str(router.site_file))
    yield client, port, agent
    client.close()
    agent.terminate()


def data(reply):
    assert reply.status == 0, reply
    assert reply.session["success"], reply.session["messages"]
    return reply.session["data"]


def failed(reply):
    """The message of a Task that started but failed (or of a refused start)."""
    if reply.status != 0:
        return reply.msg
    assert reply.session["success"] is False, reply.session
    return reply.session["messages"][-2][1]


def test_every_task(obe):
    c, port, _ = obe
    assert "no run exists yet" in failed(c.optset())
    run = data(c.newrun())  # bare: the --run-config
    assert run["parameters"] == ["x0", "a", "b"] and run["n_settings"] == 200
    assert run["n_particles"] == 3000 and run["config"]["seed"] == 11 and run["n_measurements"] == 0
    assert data(c.ready()) == {"ready": True, "run_id": run["run_id"], "n_measurements": 0,
                               "restored": None, "inline": {"budget_ms": 0.5, "estimates_ms": {},
                                                            "max_inline_ms": 0.0}}
    setting = data(c.optset())["setting"]
    assert len(setting) == 1 and 1.5 <= setting[0] <= 4.5
    assert list(data(c.ready())["inline"]["estimates_ms"]) == ["optset"]  # measured once
    assert len(data(c.goodset(pickiness=4))["setting"]) == 1
    d = data(c.newdat(x=[3.0], y=lor(3.0), s=100.0))
    assert d["index"] == 0 and d["count"] == 1 and d["n_measurements"] == 1 and len(d["mean"]) == 3
    d = data(c.newdat(records=[{"x": [2.9], "y": lor(2.9), "s": 100.0}, [[3.2], lor(3.2), 100.0],
                               {"x": 3.1, "y": lor(3.1), "s": [100.0]}]))
    assert d["index"] == 1 and d["count"] == 3 and d["n_measurements"] == 4
    mean = data(c.getmean())
    assert mean["parameters"] == ["x0", "a", "b"] and mean["n_measurements"] == 4
    assert mean["mean"] == d["mean"]
    assert len(data(c.getstd())["std"]) == 3
    cov = data(c.getcov())["cov"]
    assert len(cov) == 3 and all(len(r) == 3 for r in cov)
    w = data(c.getwgt())
    assert w["total"] == 3000 and w["count"] == 3000 and not w["truncated"]
    assert abs(sum(w["values"]) - 1) < 1e-9
    w = data(c.getwgt(offset=2950, max_items=100))
    assert (w["offset"], w["count"], w["truncated"]) == (2950, 50, False)
    p = data(c.getpar(max_items=300))
    assert p["parameters"] == ["x0", "a", "b"] and p["count"] == 100 and p["truncated"]
    assert [len(r) for r in p["values"]] == [100] * 3 and p["total"] == 3000
    s = data(c.getset(max_items=50))
    assert s["total"] == 200 and s["count"] == 50 and s["truncated"] and s["values"][0][0] == 1.5
    assert data(c.getcon()) == {"values": [0.1], "names": ["d"]}
    runs = data(c.runs())
    assert runs["current"] == run["run_id"] and runs["runs"][-1]["n_measurements"] == 4
    info = data(c.run_info(run_id=run["run_id"]))
    assert info["config"]["model"] == "lorentzian" and info["status"] == "active"
    m = data(c.measurements(run_id=run["run_id"], offset=1, max_items=2))
    assert m["total"] == 4 and m["count"] == 2 and m["truncated"]
    assert [r["index"] for r in m["measurements"]] == [1, 2] and m["measurements"][0]["x"] == [2.9]


def test_rejections_are_clear_and_change_nothing(obe):
    c, _, _ = obe
    if not data(c.ready())["run_id"]:
        data(c.newrun())
    before = data(c.getmean())
    assert "x, y and s are all required" in failed(c.newdat(x=[3.0], y=1.0))
    assert "settings must have 1 value" in failed(c.newdat(x=[3.0, 2.0], y=lor(3.0), s=1.0))
    assert "sigma must be finite and positive" in failed(c.newdat(x=[3.0], y=lor(3.0), s=-1.0))
    assert "zero likelihood" in failed(c.newdat(x=[3.0], y=1.0, s=1.0))
    assert "record 1" in failed(c.newdat(records=[[[3.0], lor(3.0), 100.0], [[3.0], "y", 1.0]]))
    assert "either x, y, s or records" in failed(c.newdat(x=1.0, records=[]))
    assert "unexpected values: ['bogus']" in failed(c.newrun(bogus=1))
    assert "config key 'utility' must be one of" in failed(c.newrun(utility="nope"))
    assert "unknown model 'nope'" in failed(c.newrun(model="nope"))
    assert "lolim, hilim and steps go together" in failed(c.newrun(lolim=1.0))
    assert "3 lists" in failed(c.newrun(particles=[[3.0, 3.1]]))
    assert "below the minimum" in failed(c.goodset(pickiness=-1))
    assert "unexpected values" in failed(c.optset(foo=1))
    assert "no run with id 999" in failed(c.run_info(run_id=999))
    assert data(c.getmean()) == before  # nothing changed, the run was not replaced


def test_tcp_ready_byte_for_byte(obe):
    _, port, _ = obe
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b'0000000020{"command": "ready"}')
        assert raw.recv_exact(sock, 14) == b'0000000004"OK"'
        sock.sendall(b'0000000020{"command": "ready"}')  # a second request, same connection
        assert raw.recv_exact(sock, 14) == b'0000000004"OK"'


def test_tcp_measurement_shows_over_wamp(obe):
    c, port, _ = obe
    assert raw.tcpcmd(port, {"command": "newrun"}) == "OK"
    n0 = data(c.ready())["n_measurements"]
    assert n0 == 0
    assert raw.tcpcmd(port, {"command": "newdat", "x": [3.1], "y": lor(3.1), "s": 100.0}) == "OK"
    wamp = data(c.getmean())
    assert wamp["n_measurements"] == 1
    assert wamp["mean"] == raw.tcpcmd(port, {"command": "getmean"})
    d = data(c.newdat(x=[3.0], y=lor(3.0), s=100.0))  # and the other way round
    assert raw.tcpcmd(port, {"command": "getmean"}) == d["mean"]


def test_tcp_every_command_and_reply_shape(obe):
    _, port, _ = obe
    replies = raw.session(port, [
        {"command": "newrun", "lolim": 2.0, "hilim": 3.0, "steps": 25}, {"command": "getset"},
        {"command": "getpar"}, {"command": "getpdf"}, {"command": "getcon"}, {"command": "getwgt"},
        {"command": "getmean"}, {"command": "getstd"}, {"command": "getcov"}, {"command": "optset"},
        {"command": "goodset", "pickiness": 4}, {"command": "goodset"},
        {"command": "newdat", "x": [2.5], "y": lor(2.5), "s": 100.0}, {"command": "ready"}])
    newrun, getset, getpar, getpdf, getcon, getwgt, mean, std, cov, opt, good, good2, nd, ready = replies
    assert newrun == "OK" and nd == "OK" and ready == "OK"
    assert len(getset) == 1 and len(getset[0]) == 25 and getset[0][0] == 2.0 and getset[0][-1] == 3.0
    assert len(getpar) == 3 and all(len(r) == 3000 for r in getpar) and getpdf == getpar
    assert getcon == [0.1] and len(getwgt) == 3000 and len(mean) == 3 and len(std) == 3
    assert len(cov) == 3 and all(len(r) == 3 for r in cov)
    for s in (opt, good, good2):
        assert isinstance(s, list) and len(s) == 1 and 2.0 <= s[0] <= 3.0
    assert "unknown command" in raw.tcpcmd(port, {"command": "xxgetmeanxx"})["error"]
    assert "missing key(s) s" in raw.tcpcmd(port, {"command": "newdat", "x": [2.5], "y": 1.0})["error"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw.frame({"command": "done"}))
        assert raw.recv_frame(sock) == b'0000000004"OK"' and raw.at_eof(sock)
    assert raw.tcpcmd(port, {"command": "ready"}) == "OK"  # done ends a connection, not the agent


def test_1000_malformed_frames_leave_agent_serving_and_posterior_unchanged(obe):
    c, port, _ = obe
    assert raw.tcpcmd(port, {"command": "newrun"}) == "OK"
    assert raw.tcpcmd(port, {"command": "newdat", "x": [3.0], "y": lor(3.0), "s": 100.0}) == "OK"
    before = raw.session(port, [{"command": "getmean"}, {"command": "getwgt"}, {"command": "getpar"}])
    cases = malformed_cases(random.Random(7))
    assert len(cases) >= 1000
    counts = send_malformed(port, cases)
    assert counts["error"] >= 600 and counts["fatal"] == 200
    after = raw.session(port, [{"command": "getmean"}, {"command": "getwgt"}, {"command": "getpar"}])
    assert after == before
    assert data(c.ready())["n_measurements"] == 1 and data(c.getmean())["mean"] == before[0]


def test_kill_9_and_restart_lose_no_measurement(router, tmp_path):
    agent, port = start_obe(router, tmp_path, "obe-kill", snapshot_every=50)
    wait_tcp(port)
    assert raw.tcpcmd(port, {"command": "newrun"}) == "OK"  # run 1, left behind
    assert raw.tcpcmd(port, {"command": "newdat", "x": [2.0], "y": lor(2.0), "s": 100.0}) == "OK"
    assert raw.tcpcmd(port, {"command": "newrun", "seed": 5}) == "OK"
    rng = random.Random(3)
    requests = []
    for _ in range(130):
        x = rng.uniform(1.5, 4.5)
        requests.append({"command": "newdat", "x": [x], "y": lor(x) + rng.gauss(0, 100), "s": 100.0})
    assert raw.session(port, requests) == ["OK"] * 130
    before = raw.session(port, [{"command": "getmean"}, {"command": "getwgt"}, {"command": "getstd"}])
    agent.kill()
    agent.start()
    agent.wait_registered(20)
    wait_tcp(port)
    c = OCSClient("obe-kill", site_file=str(router.site_file))
    try:
        ready = data(c.ready())
        assert ready["n_measurements"] == 130
        assert {k: ready["restored"][k] for k in ("run_id", "n_measurements", "snapshot", "replayed")} \
            == {"run_id": 2, "n_measurements": 130, "snapshot": 100, "replayed": 30}
        after = raw.session(port, [{"command": "getmean"}, {"command": "getwgt"}, {"command": "getstd"}])
        assert after == before  # exactly: snapshot + deterministic replay
        runs = data(c.runs())["runs"]
        assert [(r["id"], r["status"], r["n_measurements"]) for r in runs] == \
            [(1, "replaced", 1), (2, "active", 130)]
        assert data(c.measurements(run_id=1))["measurements"][0]["x"] == [2.0]
        assert "restored run 2" in agent.log_text()
    finally:
        c.close()
        agent.terminate()


@pytest.fixture(scope="module")
def instruments(router):
    procs = []
    for instance, extra in (("sim-inst", []), ("sim-inst-bad", ["--fail-after", "2"])):
        router.add_instance("SimInstrumentAgent", instance, ["--seed", "4", "--noise", "100", *extra])
        proc = router.agent(instance, env=SIM_ENV)
        procs.append(proc)
    for proc in procs:
        proc.wait_registered(20)
    yield
    for proc in procs:
        proc.terminate()


def run_scan(c, **params):
    assert c.adaptive_scan.start(**params).status == 0
    return c.adaptive_scan.wait(timeout=60)


def test_adaptive_scan_max_steps_and_target(obe, instruments):
    c, _, _ = obe
    data(c.newrun())
    reply = run_scan(c, instrument="sim-inst", max_steps=25, sigma=100.0)
    s = reply.session
    assert s["success"], s["messages"]
    assert "reached max_steps (25)" in s["messages"][-2][1]
    assert s["data"]["step"] == 25 and s["data"]["n_measurements"] == 25
    assert abs(s["data"]["mean"]["x0"] - 3.1) < 0.05
    assert data(c.ready())["n_measurements"] == 25
    reply = run_scan(c, instrument="sim-inst", max_steps=500, target_param="x0", target_std=0.005)
    assert reply.session["success"], reply.session["messages"]
    assert "std of x0" in reply.session["messages"][-2][1]  # sigma came from data["sigma"]
    assert reply.session["data"]["std"]["x0"] <= 0.005 and reply.session["data"]["step"] < 500


def test_adaptive_scan_stop_between_steps(obe, instruments):
    c, _, _ = obe
    data(c.newrun())
    assert c.adaptive_scan.start(instrument="sim-inst", max_steps=100000, sigma=100.0).status == 0
    deadline = time.monotonic() + 30
    while (c.adaptive_scan.status().session.get("data") or {}).get("step", 0) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c.adaptive_scan.stop()
    s = c.adaptive_scan.wait(timeout=30).session
    assert s["success"] and "stopped on request" in s["messages"][-2][1], s["messages"]
    assert data(c.ready())["n_measurements"] == s["data"]["step"] >= 3


def test_adaptive_scan_failing_instrument_leaves_run_intact(obe, instruments):
    c, _, _ = obe
    data(c.newrun())
    s = run_scan(c, instrument="sim-inst-bad", max_steps=10, sigma=100.0).session
    assert s["success"] is False
    msg = s["messages"][-2][1]
    assert "failed at step 3" in msg and "simulated instrument fault" in msg and "run is intact" in msg
    assert data(c.ready())["n_measurements"] == 2
    s = run_scan(c, instrument="no-such-inst", max_steps=3, sigma=100.0).session
    assert s["success"] is False and "could not run it" in s["messages"][-2][1]
    assert data(c.ready())["n_measurements"] == 2
    assert "give a stop rule" in failed(run_scan(c, instrument="sim-inst"))
    assert "not a parameter" in failed(run_scan(c, instrument="sim-inst", target_param="q",
                                                target_std=1.0))


@pytest_twisted.ensureDeferred
async def test_posterior_feed_after_each_update(router, obe):
    c, port, _ = obe
    sub = Subscriber(router.ws_url, "observatory.obe-t1.feeds.posterior")
    await sub.start()
    try:
        run = await threads.deferToThread(lambda: data(c.newrun()))
        for x in (2.9, 3.05):
            reply = await threads.deferToThread(
                raw.tcpcmd, port, {"command": "newdat", "x": [x], "y": lor(x), "s": 100.0})
            assert reply == "OK"
        block = f"run{run['run_id']}"

        def samples(field):  # one sample per update; a window's samples share one message
            return [v for e in sub.events if block in e[0] for v in e[0][block]["data"][field]]
        await until(lambda: len(samples("n_measurements")) >= 2, what="two posterior feed samples")
        mean = await threads.deferToThread(raw.tcpcmd, port, {"command": "getmean"})
        assert samples("n_measurements") == [1, 2] and samples("setting_0") == [2.9, 3.05]
        last = sub.events[-1][0][block]
        assert set(last["data"]) == {"n_measurements", "setting_0", "mean_x0", "std_x0", "mean_a",
                                     "std_a", "mean_b", "std_b"}
        assert len(last["timestamps"]) == len(last["data"]["n_measurements"])
        assert [samples(f)[-1] for f in ("mean_x0", "mean_a", "mean_b")] == mean
    finally:
        await sub.stop()


def test_serve_tcp_stop_restart_and_port_in_use(obe):
    c, port, _ = obe
    assert c.serve_tcp.status().session["data"] == {"interface": "127.0.0.1", "port": port}
    assert c.serve_tcp.stop().status == 0
    s = c.serve_tcp.wait(timeout=10).session
    assert s["success"] and f"Stopped serving on 127.0.0.1:{port}" in s["messages"][-2][1]
    with pytest.raises(OSError):
        raw.tcpcmd(port, {"command": "ready"})
    with socket.socket() as blocker:  # a taken port: a clear failure, the agent stays up
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        assert c.serve_tcp.start(port=taken).status == 0
        s = c.serve_tcp.wait(timeout=10).session
        assert s["success"] is False and f"cannot listen on 127.0.0.1:{taken}" in s["messages"][-2][1]
    assert c.serve_tcp.start().status == 0  # back on the configured port
    assert wait_tcp(port) == "OK"
    assert data(c.ready())["ready"] is True


def test_log_lines_have_the_one_format_and_no_object_reprs(obe):
    import re

    from test_logs import LINE
    lines = [line for line in obe[2].log_text().splitlines() if line.strip()]
    assert any("serving the classic OBE TCP protocol" in line for line in lines)
    for line in lines:
        assert re.match(LINE, line) and "object at 0x" not in line, line


def test_bad_run_config_file_is_a_clear_startup_error(router, tmp_path):
    router.add_instance("OBEAgent", "obe-badcfg", ["--db", ":memory:", "--no-tcp",
                                                    "--run-config", str(tmp_path / "missing.yaml")])
    agent = router.agent("obe-badcfg")
    try:
        deadline = time.monotonic() + 20
        while agent.returncode is None:
            assert time.monotonic() < deadline, agent.log_text()
            time.sleep(0.05)
        assert agent.returncode == 1
        assert "OBEAgent cannot start" in agent.log_text() and "missing.yaml" in agent.log_text()
        assert "Traceback" not in agent.log_text()
    finally:
        agent.terminate()


def test_adaptive_scan_drives_the_real_instrument_agent(router, obe):
    """OBE agent -> InstrumentAgent (Task measure(x)) -> SimulatedInstrument server, all real."""
    from ocs_core.testing import wait_listening

    c, _, _ = obe
    port = free_port()
    router.add_instance("SimulatedInstrument", "obe-e2e-sim", ["--port", port, "--seed", "2",
                                                               "--center", "2.5", "--noise", "0.05"])
    server = router.agent("obe-e2e-sim")
    agent = None
    try:
        wait_listening(port, alive=server)
        router.add_instance("InstrumentAgent", "obe-e2e-inst", ["--port", port, "--timeout", "5"])
        agent = router.agent("obe-e2e-inst")
        agent.wait_registered(15)
        run = {"model": "lorentzian", "settings": {"start": 2.0, "stop": 3.0, "num": 101},
               "priors": {"x0": {"uniform": [2.0, 3.0]}, "a": {"uniform": [0.5, 1.5]},
                          "b": {"normal": [0.0, 0.1]}},
               "n_particles": 3000, "noise_std": 0.05, "seed": 4}
        data(c.newrun(**run))
        s = run_scan(c, instrument="obe-e2e-inst", max_steps=30, sigma=0.05).session
        assert s["success"], s["messages"]
        assert s["data"]["n_measurements"] == 30 and abs(s["data"]["mean"]["x0"] - 2.5) < 0.02
    finally:
        if agent is not None:
            agent.terminate()
        server.terminate()


def test_tcp_port_is_served_while_the_router_is_down(tmp_path):
    """The classic TCP port does not wait for the router (it waited 25 s in one outage test)."""
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(RUN))
    port = free_port()
    site = write_site_config(tmp_path, free_port(), [{
        "agent-class": "OBEAgent", "instance-id": "obe-norouter",
        "arguments": ["--db", str(tmp_path / "obe.sqlite3"), "--tcp-port", str(port),
                      "--run-config", str(run_file)]}])
    with AgentProcess("obe-norouter", site, log_path=tmp_path / "obe.out") as agent:
        assert wait_tcp(port, timeout=15) == "OK", agent.log_text()[-2000:]
        assert raw.tcpcmd(port, {"command": "newrun"}) == "OK"
        assert len(raw.tcpcmd(port, {"command": "getmean"})) == 3
        assert agent.is_running() and "router unreachable" in agent.log_text()
