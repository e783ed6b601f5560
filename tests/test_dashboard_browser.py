"""The web dashboard in a real browser: headless Chromium on `ocs-core web`, on a real site.

One router (this module's own: the restart test stops it), one `ocs-core web`, one browser.
Screenshots of each view go to a temporary folder printed in the test log.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from browser import WebProcess, need_browser, quit_chromium, start_chromium, until
from clients.ocs_client import OK, OCSClient
from ocs_core.testing import running_router
from ci import need_module

pytestmark = pytest.mark.browser

FAKER, LATE, OCS_FAKER, OBE = "dash-faker", "dash-late", "dash-ocs-faker", "dash-obe"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    need_browser()
    with running_router(tmp_path_factory.mktemp("dash-site")) as router:
        router.add_instance("FakeDataAgent", FAKER, ["--mode", "acq", "--sample-rate", "20"])
        agent = router.agent(FAKER)
        try:
            agent.wait_registered(20)
            yield router
        finally:
            agent.terminate()


@pytest.fixture(scope="module")
def web(site):
    proc = WebProcess(site.site_file, site.log_dir / "web.out")
    yield proc
    assert proc.stop() == 0
    log = proc.log_text()
    assert "Traceback" not in log and "ERROR" not in log and "WARN" not in log, log
    assert "lost the router" not in log.strip().splitlines()[-1], log  # not at its own shutdown


@pytest.fixture(scope="module")
def browser(web):
    driver = start_chromium()
    yield driver
    quit_chromium(driver)


@pytest.fixture
def client(site):
    c = OCSClient(FAKER, site_file=str(site.site_file), site_host="localhost")
    yield c
    c.close()


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def rows(driver):
    """{instance-id: state} of the site view."""
    return js(driver, "var o={}; document.querySelectorAll('#agents tr').forEach(function(r){"
                      "o[r.getAttribute('data-address').split('.').pop()]=r.getAttribute('data-state');});"
                      "return o;")


def open_agent(driver, web, instance):
    driver.get(web.url + f"#/agent/{instance}")
    until(lambda: js(driver, "return document.querySelectorAll('.op-card').length") > 0, 15,
          lambda: f"agent view of {instance} not shown: {driver.find_element('id', 'view').text[:500]}")


def card_js(op, what):
    return f"var c=document.querySelector('.op-card[data-op=\"{op}\"]'); return c ? {what} : null;"


def reply_text(driver, op):
    return js(driver, card_js(op, "c.querySelector('pre.reply').textContent"))


def start_from_form(driver, op, values):
    js(driver, card_js(op, "(function(){var v=arguments[0]; for (var k in v) {"
                           "c.querySelector('[name=\"'+k+'\"]').value=v[k];}"
                           "c.querySelector('button.start').click(); return true;})(arguments[0])"), values)


def http(web, path, body=None, headers=None, method=None):
    request = urllib.request.Request(web.url + path, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        data = exc.read()
        try:
            return exc.code, json.loads(data)
        except ValueError:
            return exc.code, data.decode(errors="replace")


# -- site view --------------------------------------------------------------------------------
def test_site_view_lists_running_agents_within_3_s(site, web, browser, shots):
    t0 = time.monotonic()
    browser.get(web.url)
    until(lambda: rows(browser).get(FAKER) == "alive", 3.0,
          lambda: f"{FAKER} not listed alive within 3 s: {rows(browser)}")
    assert time.monotonic() - t0 < 3.5
    row = js(browser, f"var r=document.querySelector('#agents tr[data-address=\"observatory.{FAKER}\"]');"
                      "return [r.children[1].textContent, r.children[2].textContent, "
                      "Array.from(r.querySelectorAll('span.op')).map(function(s){"
                      "return s.getAttribute('data-op')+'='+s.getAttribute('data-code');})];")
    assert row[0] == "FakeDataAgent"
    until(lambda: js(browser, f"return document.querySelector('#agents tr[data-address=\"observatory.{FAKER}\"]')"
                              ".children[2].textContent") not in ("", "?"), 5, "the host is not shown")
    assert "acq=3" in row[2] and "delay_task=1" in row[2]  # acq runs (op code 3), delay_task never ran
    browser.save_screenshot(str(shots / "site.png"))


def test_new_agent_appears_and_killed_agent_turns_lost(site, web, browser):
    browser.get(web.url)
    until(lambda: FAKER in rows(browser), 5, "site view empty")
    site.add_instance("FakeDataAgent", LATE)
    late = site.agent(LATE)
    try:
        late.wait_registered(20)
        until(lambda: rows(browser).get(LATE) == "alive", 5, lambda: f"{LATE} did not appear: {rows(browser)}")
        os.kill(late.pid, signal.SIGKILL)
        late.proc.wait(5)
        t0 = time.monotonic()
        until(lambda: rows(browser).get(LATE) == "lost", 10, lambda: f"{LATE} not lost: {rows(browser)}")
        assert time.monotonic() - t0 > 3.0  # lost at 5 s of heartbeat age, not at once
        assert rows(browser).get(FAKER) == "alive"
    finally:
        late.terminate()


# -- agent view -------------------------------------------------------------------------------
def test_delay_task_from_the_form_runs_and_shows_its_messages(site, web, browser, client, shots):
    open_agent(browser, web, FAKER)
    hints = js(browser, card_js("delay_task", "c.querySelector('label.param .hint').textContent"))
    assert "float" in hints and "default 5" in hints and "min 0" in hints
    start_from_form(browser, "delay_task", {"delay": "1.5"})
    until(lambda: 'Started task "delay_task".' in (reply_text(browser, "delay_task") or ""), 10,
          lambda: f"no start reply: {reply_text(browser, 'delay_task')!r}")
    assert reply_text(browser, "delay_task").startswith('OCSReply: OK : Started task "delay_task".')
    done = client.delay_task.wait(15)
    assert done.status == OK and done.session["success"] is True
    assert done.session["data"]["requested_delay"] == 1.5
    until(lambda: "Exited after" in js(browser, card_js("delay_task", "c.querySelector('.session').textContent")),
          10, "the session view does not show the task's messages")
    tree = js(browser, card_js("delay_task", "c.querySelector('.data-tree').textContent"))
    assert "requested_delay: 1.5" in tree
    browser.save_screenshot(str(shots / "agent.png"))


def test_abort_from_the_page(site, web, browser, client):
    open_agent(browser, web, FAKER)
    start_from_form(browser, "delay_task", {"delay": "30"})
    until(lambda: client.delay_task.status().session.get("status") == "running", 10, "delay_task did not run")
    js(browser, card_js("delay_task", "c.querySelector('button.abort').click()"))
    until(lambda: "Requested abort on task" in (reply_text(browser, "delay_task") or ""), 10,
          lambda: f"no abort reply: {reply_text(browser, 'delay_task')!r}")
    done = client.delay_task.wait(15)
    assert done.session["success"] is False
    assert any(m[1].startswith("Aborted after") for m in done.session["messages"])
    until(lambda: "Aborted after" in js(browser, card_js("delay_task", "c.querySelector('.session').textContent")),
          10, "the session view does not show the abort")


def test_process_stop_and_start_from_the_page(site, web, browser, client):
    open_agent(browser, web, FAKER)
    badge = lambda: js(browser, card_js("count", "c.querySelector('.op.badge').getAttribute('data-code')"))
    until(lambda: badge() == "3", 10, "count (started by --mode acq) is not shown running")
    js(browser, card_js("count", "c.querySelector('button.stop').click()"))
    until(lambda: "Requested stop on process count" in (reply_text(browser, "count") or ""), 10,
          lambda: f"no stop reply: {reply_text(browser, 'count')!r}")
    assert client.count.wait(15).session["status"] == "done"
    until(lambda: badge() == "5", 10, "the op code badge does not show succeeded")
    assert js(browser, card_js("count", "!!c.querySelector('textarea.params')"))  # count declares no @param
    js(browser, card_js("count", "c.querySelector('button.start').click()"))
    until(lambda: 'Started process "count".' in (reply_text(browser, "count") or ""), 10,
          lambda: f"count not started: {reply_text(browser, 'count')!r}")
    until(lambda: client.count.status().session.get("status") == "running", 10, "count did not run")
    until(lambda: badge() == "3", 10, "the op code badge does not show running")


def test_bad_parameter_shows_the_agents_error_text(site, web, browser, client):
    open_agent(browser, web, FAKER)
    expected = client.delay_task.start(delay=-1).msg
    assert "below the minimum" in expected
    start_from_form(browser, "delay_task", {"delay": "-1"})
    until(lambda: expected in (reply_text(browser, "delay_task") or ""), 10,
          lambda: f"expected {expected!r}, the page shows {reply_text(browser, 'delay_task')!r}")
    assert reply_text(browser, "delay_task").startswith("OCSReply: ERROR : ")
    assert js(browser, card_js("delay_task", "c.querySelector('pre.reply').getAttribute('data-code')")) == "ERROR"


def test_live_plot_receives_fakedata_samples(site, web, browser, shots):
    open_agent(browser, web, FAKER)
    count = lambda: int(js(browser, "var p=document.querySelector('.feed-panel[data-feed=\"false_temperatures\"] .plot');"
                                    "return p ? p.getAttribute('data-points') : 0;") or 0)
    first = until(count, 10, "the live plot got no samples")
    until(lambda: count() >= first + 20, 10, lambda: f"the live plot stopped at {count()} points")
    fields = js(browser, "return Array.from(document.querySelectorAll('.feed-panel input[type=checkbox]'))"
                         ".map(function(i){return i.value+'='+i.checked;})")
    assert fields == ["channel_00=true", "channel_01=true"]
    # deselect a field: the plot draws the other one only
    js(browser, "document.querySelector('.feed-panel input[value=\"channel_01\"]').click()")
    until(lambda: js(browser, "return window.dashboard.plots['observatory.%s/false_temperatures'].plot.graph"
                              ".getLabels().join(',')" % FAKER) == "t,channel_00", 5, "field selection ignored")
    browser.save_screenshot(str(shots / "plot.png"))


def test_ocs_agent_is_shown_and_driven(site, web, browser, shots):
    need_module("ocs")
    site.add_instance("FakeDataAgent", OCS_FAKER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(site.log_dir / f"{OCS_FAKER}.out", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocs.agents.fake_data.agent", "--site-file", str(site.site_file),
             "--site-host", "localhost", "--instance-id", OCS_FAKER, "--crossbar-timeout", "60",
             "--access-policy", "override:level-2-pw,level-3-pw"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        browser.get(web.url)
        until(lambda: rows(browser).get(OCS_FAKER) == "alive", 30, lambda: f"ocs's agent not shown: {rows(browser)}")
        open_agent(browser, web, OCS_FAKER)
        # ocs answers null to ocs_core.param_specs: the form is a JSON field
        assert js(browser, card_js("delay_task", "!!c.querySelector('textarea.params')"))
        start = card_js("delay_task", "(function(text){c.querySelector('textarea.params').value=text;"
                                      "c.querySelector('button.start').click(); return 1;})(arguments[0])")
        # under override:, ocs's delay_task needs level 2: refused without the password ...
        js(browser, start, '{"delay": 0.2}')
        until(lambda: "requires credential level 2-ADVANCED but the client has only level 1-BASIC" in (reply_text(browser, "delay_task") or ""),
              10, lambda: f"not refused at level 1: {reply_text(browser, 'delay_task')!r}")
        # ... and run with the one the person types
        js(browser, "document.getElementById('password').value='level-2-pw'")
        js(browser, start, '{"delay": 0.2}')
        until(lambda: 'Started task "delay_task".' in (reply_text(browser, "delay_task") or ""), 10,
              lambda: f"ocs's delay_task not started: {reply_text(browser, 'delay_task')!r}")
        until(lambda: js(browser, card_js("delay_task", "c.querySelector('.session').getAttribute('data-status')")) == "done",
              10, "ocs's delay_task did not finish on the page")
        browser.save_screenshot(str(shots / "ocs-agent.png"))
    finally:
        proc.terminate()
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_history_plot_from_the_feed_archiver(site, web, browser, tmp_path):
    """History plots come from the FeedArchiver's query Task."""
    site.add_instance("FeedArchiver", "dash-archiver", ["--data-dir", str(tmp_path / "archive")])
    archiver = site.agent("dash-archiver")
    try:
        archiver.wait_registered(30)
        now = time.time()
        query = (f"api/history?address=observatory.{FAKER}&feed=false_temperatures"
                 f"&start={now - 3600}&stop={now + 60}&max_points=2000&fields=channel_00")
        until(lambda: (lambda r: r[0] == 200 and len(r[1]["series"].get("channel_00", {}).get("t", [])) > 10)(
            http(web, query)), 30, lambda: f"the archive has no history: {http(web, query)}")
        open_agent(browser, web, FAKER)
        until(lambda: js(browser, "return document.querySelectorAll('.feed-panel .fields input').length") == 2, 10,
              "no fields listed")
        js(browser, "var s=document.querySelector('.feed-panel select.range'); s.value='86400';"
                    "s.dispatchEvent(new Event('change'));")
        note = lambda: js(browser, "return document.querySelector('.feed-panel .controls .hint').textContent")
        until(lambda: "from observatory.dash-archiver" in note(), 30, lambda: f"no history drawn: {note()!r}")
        drawn = int(js(browser, "return document.querySelector('.feed-panel .plot').getAttribute('data-points')"))
        assert 0 < drawn <= 2000  # a day, downsampled by the archive
        js(browser, "var s=document.querySelector('.feed-panel select.range'); s.value='live';"
                    "s.dispatchEvent(new Event('change'));")
    finally:
        archiver.terminate()


def test_router_restart_banner_then_recovery(site, web, browser):
    open_agent(browser, web, FAKER)
    count = lambda: int(js(browser, "var p=document.querySelector('.feed-panel .plot');"
                                    "return p ? p.getAttribute('data-points') : 0;") or 0)
    until(count, 10, "no samples before the restart")
    shown = lambda: js(browser, "return document.getElementById('banner').getAttribute('data-shown')")
    assert shown() == "false"
    site.stop()
    until(lambda: shown() == "true", 10, "no banner after the router stopped")
    assert "Lost the router" in js(browser, "return document.getElementById('banner').textContent")
    before = count()
    site.start()
    until(lambda: shown() == "false", 30, "the banner stayed after the router came back")
    until(lambda: count() > before + 10, 30, lambda: f"the plot did not continue ({before} -> {count()})")


def test_obe_panel_shows_posterior_and_settings_live(site, web, browser, tmp_path, shots):
    run = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
           "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                      "b": {"normal": [50000.0, 1000.0]}}, "n_particles": 2000, "noise_std": 100.0, "seed": 3}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    site.add_instance("OBEAgent", OBE, ["--no-tcp", "--db", ":memory:", "--run-config", str(tmp_path / "run.yaml")])
    agent = site.agent(OBE)
    obe = None
    try:
        agent.wait_registered(30)
        obe = OCSClient(OBE, site_file=str(site.site_file), site_host="localhost")
        assert obe.newrun().session["success"] is True
        open_agent(browser, web, OBE)
        points = lambda sel: int(js(browser, f"var p=document.querySelector('{sel}');"
                                             "return p ? p.getAttribute('data-points') : 0;") or 0)
        for i in range(10):
            x = obe.optset().session["data"]["setting"][0]
            y = 50000.0 - 1500.0 / (((x - 3.1) / 0.1) ** 2 + 1)
            assert obe.newdat(x=x, y=y, s=100.0).session["success"] is True
            if i == 2:  # the panel follows while measurements come in
                until(lambda: points('.obe-param[data-param="x0"]') >= 3, 10, "the OBE panel is not live")
        x0 = '.obe-param[data-param="x0"]'
        until(lambda: points(x0) == 10, 10, lambda: f"the x0 panel has {points(x0)} points, not 10")
        assert {p: points(f'.obe-param[data-param="{p}"]') for p in ("a", "b")} == {"a": 10, "b": 10}
        assert points(".obe-settings") == 10
        labels = js(browser, "return window.dashboard.obe.plots.x0.graph.getLabels()")
        assert labels == ["n", "x0"]
        browser.save_screenshot(str(shots / "obe.png"))
    finally:
        if obe is not None:
            obe.close()
        agent.terminate()


# -- the HTTP API's refusals ------------------------------------------------------------------
def test_api_refuses_bad_requests_with_clear_errors(web):
    json_headers = {"Content-Type": "application/json"}
    code, body = http(web, "api/op", b"{not json", json_headers)
    assert code == 400 and body["error"].startswith("the body is not JSON")
    code, body = http(web, "api/op", json.dumps({"agent": "nobody", "op": "x", "action": "start"}).encode(),
                      json_headers)
    assert code == 400 and body["error"] == "no agent 'nobody' has been seen on the heartbeats"
    code, body = http(web, "api/op", json.dumps({"agent": FAKER, "op": "acq", "action": "explode"}).encode(),
                      json_headers)
    assert code == 400 and "action 'explode' is not one of start, stop, abort, status, wait" == body["error"]
    code, body = http(web, "api/op", b"{}", {"Content-Type": "text/plain"})
    assert code == 415
    code, body = http(web, "api/op", b"{}", {**json_headers, "Origin": "http://evil.example"})
    assert code == 403
    code, body = http(web, "api/op", b"x" * (65 * 1024), json_headers)
    assert code == 413
    code, body = http(web, "api/history?address=observatory.x&feed=f&start=0&stop=10")
    assert code == 503 and "no FeedArchiver is running" in body["error"]
    code, body = http(web, "api/history?address=observatory.x&feed=f&start=abc&stop=10")
    assert code == 400 and body["error"] == "start='abc' is not a number"
    code, body = http(web, "api/nothing")
    assert code == 404
