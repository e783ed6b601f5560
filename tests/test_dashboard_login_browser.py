"""The dashboard of an authenticated site in a real browser: its key, the login form, logout.

A real router with `hub.auth: cryptosign`, a FakeDataAgent joined with its key, `ocs-core web`
as a process (it makes a key and prints it in its address line only) and headless Chromium.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from browser import WebProcess, need_browser, quit_chromium, start_chromium, until
from ocs_core.testing import running_router

pytestmark = pytest.mark.browser

FAKER = "login-faker"


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def agents_listed(driver):
    return js(driver, "return Array.from(document.querySelectorAll('#agents tr')).map(function(r){"
                      "return r.getAttribute('data-address') + '=' + r.getAttribute('data-state');})")


def login_note(driver):
    return js(driver, "var e=document.getElementById('login-error'); return e ? e.textContent : null;")


def type_key(driver, key):
    field = driver.find_element("id", "login-key")
    field.clear()
    field.send_keys(key)
    driver.find_element("css selector", "form.login button[type=submit]").click()


def test_login_with_the_printed_key_on_an_authenticated_site(tmp_path_factory, shots):
    need_browser()
    instances = [{"agent-class": "FakeDataAgent", "instance-id": FAKER, "arguments": []}]
    with running_router(tmp_path_factory.mktemp("dash-login"), instances=instances, auth=True) as site:
        agent = site.agent(FAKER)
        web = driver = None
        try:
            agent.wait_registered(20)
            web = WebProcess(site.site_file, site.log_dir / "web.out")
            lines = until(lambda: [l for l in web.log_text().splitlines() if "dashboard at " in l], 10,
                          lambda: f"no address line: {web.log_text()[-2000:]}")
            assert len(lines) == 1 and "a new key for this run" in lines[0], lines
            key = re.search(rf"dashboard at {re.escape(web.url)}\?key=([A-Za-z0-9_-]{{43}}) ", lines[0]).group(1)
            code, body = get(web.url + "api/site")  # no cookie
            assert code == 401 and body["error"].startswith("not logged in: this dashboard needs its key")

            driver = start_chromium()
            driver.get(web.url)
            until(lambda: js(driver, "return !!document.getElementById('login-key')"), 10,
                  lambda: f"no login form: {driver.find_element('id', 'view').text[:500]}")
            assert agents_listed(driver) == []
            type_key(driver, "not-the-key")
            until(lambda: (login_note(driver) or "").startswith("wrong key"), 10,
                  lambda: f"a wrong key was not refused with a message: {login_note(driver)!r}")
            driver.save_screenshot(str(shots / "login.png"))
            type_key(driver, key)
            until(lambda: f"observatory.{FAKER}=alive" in agents_listed(driver), 10,
                  lambda: f"the site view does not list {FAKER}: {agents_listed(driver)}")
            assert js(driver, "return getComputedStyle(document.getElementById('logout')).display") != "none"
            driver.find_element("id", "logout").click()
            until(lambda: login_note(driver) == "Logged out.", 10, "logout did not bring back the login form")

            # the key in the address logs in directly (also into a deep link), then leaves the address
            driver.get(web.url + f"?key={key}#/agent/{FAKER}")
            until(lambda: js(driver, "return document.querySelectorAll('.op-card').length") > 0, 15,
                  lambda: f"the agent view is not shown: {driver.find_element('id', 'view').text[:500]}")
            assert driver.current_url == web.url + f"#/agent/{FAKER}"
            # the session ends elsewhere (another tab's Log out): the stream is refused, the form is back
            js(driver, "fetch('/auth/logout', {method: 'POST', headers: {'Content-Type': 'application/json'},"
                       " body: '{}'}).then(function () { connect(); });")
            until(lambda: (login_note(driver) or "").startswith("Your session has ended"), 10,
                  lambda: f"the page did not notice its session ended: {login_note(driver)!r}")
            driver.delete_all_cookies()
            driver.get(web.url + "?key=wrong-key-in-the-address")
            until(lambda: login_note(driver) == "The key in the address was refused: type the key.", 10,
                  lambda: f"no note for a refused key in the address: {login_note(driver)!r}")
            assert driver.current_url == web.url
        finally:
            if driver is not None:
                quit_chromium(driver)
            if web is not None:
                assert web.stop() == 0
            agent.terminate()
    log = web.log_text()
    assert log.count(key) == 1, log  # the address line only
    assert "Traceback" not in log and "ERROR" not in log and "WARN" not in log, log
