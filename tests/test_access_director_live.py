"""The Access Director on a real router (open mode), with real agent processes:

* agents under ``director:`` start blocked, then follow our director; ocs 0.12.1's FakeDataAgent
  follows it too, with the same replies as ours;
* an exclusive grant (ExclusiveAccess) locks others out, refuses a second holder, is released,
  and a grant left alone expires;
* ocs 0.12.1's own Access Director drives our agent (and ocs's ExclusiveAccessClient works on it);
* garbage on the controls feed is ignored with a log line, the rules stay, the agent stays up.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
import yaml
from autobahn.wamp.types import PublishOptions

from clients.exclusive import ExclusiveAccess, ExclusiveAccessError
from clients.ocs_client import OCSClient
from wamp_helpers import connect
from ci import need_module

pytestmark = pytest.mark.interop

DIRECTOR, OCS_DIRECTOR = "ad-ours", "ad-theirs"
OUR_FAKER, OCS_FAKER, FOLLOWS_OCS = "adf-ours", "adf-ocs", "adf-ocs-director"
CONFIG = {
    "passwords": [
        {"default": True, "password_1": ""},
        {"agent_class": "FakeDataAgent", "password_2": "fd-two", "password_3": "fd-three"},
    ],
    "exclusive_access_blocks": [{
        "name": "fake-subsystem", "password": "grant-pw",
        "grants": [{"agent_class": "FakeDataAgent", "cred_level": 3, "lockout_levels": [2, 3]}],
    }],
}
BLOCKED = "The action requires credential level 1-BASIC but the client has only level 0-BLOCKED"
LOCKED = ("The action requires credential level 2-ADVANCED but the client has only level 1-BASIC "
          "Privileges diminished; lockouts active: ['fake-subsystem[tester]']")


def _site(router):
    return ["--site-file", str(router.site_file), "--site-host", "localhost"]


def _until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


def _ocs_agent(router, module, agent_class, instance_id, *argv):
    router.add_instance(agent_class, instance_id)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    router.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(router.log_dir / f"{instance_id}.out", "ab")
    proc = subprocess.Popen([sys.executable, "-m", module, *_site(router), "--instance-id",
                             instance_id, "--crossbar-timeout", "60", *argv],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    log.close()
    _until(lambda: proc.poll() is None and "error" not in router.call(
        router.address(instance_id), "get_agent_class", timeout=2), what=f"{instance_id} up")
    return proc


def _ac(router, instance_id):
    return OCSClient(instance_id, args=_site(router)).api["access_control"]


def _start(router, instance_id, privs, op="delay_task", **params):
    reply = OCSClient(instance_id, privs=privs, args=_site(router)).__dict__[op].start(**params)
    if reply.status == 0:
        OCSClient(instance_id, privs=privs, args=_site(router)).__dict__[op].wait(timeout=10)
    return reply.status, reply.msg, reply.session.get("cred_level")


@pytest.fixture(scope="module")
def site(router, tmp_path_factory):
    need_module("ocs")
    config = tmp_path_factory.mktemp("access") / "access.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    procs, ours = [], []
    try:
        for iid, policy in ((OUR_FAKER, f"director:{DIRECTOR}"), (FOLLOWS_OCS, f"director:{OCS_DIRECTOR}")):
            router.add_instance("FakeDataAgent", iid, ["--access-policy", policy])
            ours.append(router.agent(iid))
        for agent in ours:
            agent.wait_registered(15)
        procs.append(_ocs_agent(router, "ocs.agents.fake_data.agent", "FakeDataAgent", OCS_FAKER,
                                "--access-policy", f"director:{DIRECTOR}"))
        # before any director: blocked, whatever the password
        for iid in (OUR_FAKER, OCS_FAKER):
            assert _start(router, iid, "fd-three", "set_heartbeat") == (-1, BLOCKED, None)
            assert _ac(router, iid)["update_count"] == 0
        router.add_instance("AccessDirector", DIRECTOR, ["--config-file", str(config)])
        ours.append(router.agent(DIRECTOR))
        ours[-1].wait_registered(15)
        procs.append(_ocs_agent(router, "ocs.agents.access_director.agent", "AccessDirector",
                                OCS_DIRECTOR,
                                "--config-file", str(config)))
        for iid in (OUR_FAKER, OCS_FAKER, FOLLOWS_OCS):
            _until(lambda iid=iid: _ac(router, iid)["update_count"] >= 1, what=f"{iid} got rules")
        yield {agent.instance_id: agent for agent in ours}
    finally:
        for agent in ours:
            agent.terminate()
        for proc in procs:
            proc.kill()
            proc.wait()


def scenario(router, iid):
    return [_start(router, iid, privs, delay=0.05) for privs in (None, "fd-two", "fd-three", "x")]


def test_agents_follow_our_director_like_ocs_agents(router, site):
    ours, theirs = scenario(router, OUR_FAKER), scenario(router, OCS_FAKER)
    assert ours == theirs
    assert [r[2] for r in ours] == [None, 2, 3, None]
    assert ours[0] == (-1, "The action requires credential level 2-ADVANCED but the client has "
                           "only level 1-BASIC", None)
    assert _ac(router, OUR_FAKER)["policy"] == "director"


def _wait_step(router, step):
    for iid in (OUR_FAKER, OCS_FAKER):
        _until(lambda iid=iid: _ac(router, iid)["step"] >= step, what=f"{iid} at step {step}")


def test_exclusive_grant_locks_others_out_and_is_released(router, site):
    with ExclusiveAccess("fake-subsystem", password="grant-pw", grantee="tester",
                         director=DIRECTOR, args=_site(router)) as grant:
        step = OCSClient(DIRECTOR, args=_site(router)).manager.status().session["data"]
        assert step["grants"][0]["name"] == "fake-subsystem" and "rules" not in step["grants"][0]
        _wait_step(router, grant._call("renew")["step"])
        for iid in (OUR_FAKER, OCS_FAKER):
            assert _start(router, iid, grant.password, delay=0.05) == (0, 'Started task "delay_task".', 3)
            assert _start(router, iid, "fd-three", delay=0.05) == (-1, LOCKED, None)
        with pytest.raises(ExclusiveAccessError, match=r"Grant is already held \(grantee: tester\)"):
            ExclusiveAccess("fake-subsystem", password="grant-pw", director=DIRECTOR,
                            args=_site(router)).acquire()
    with pytest.raises(ExclusiveAccessError, match="Credential failed to access"):
        ExclusiveAccess("fake-subsystem", password="wrong", director=DIRECTOR,
                        args=_site(router)).acquire()
    _until(lambda: _start(router, OUR_FAKER, "fd-three", delay=0.05)[0] == 0, what="lockout lifted")


def test_a_grant_left_alone_expires(router, site):
    grant = ExclusiveAccess("fake-subsystem", password="grant-pw", grantee="tester",
                            director=DIRECTOR, args=_site(router))
    result = grant._call("acquire", expire_at=time.time() + 5)  # not renewed
    _wait_step(router, result["step"])
    assert _start(router, OUR_FAKER, "fd-two", delay=0.05) == (-1, LOCKED, None)
    _until(lambda: _start(router, OUR_FAKER, "fd-two", delay=0.05)[0] == 0, what="grant expired")
    assert "grant expired: fake-subsystem" in router.agent(DIRECTOR, start=False).log_text()


def test_ocs_director_drives_our_agent(router, site):
    from ocs.access import ExclusiveAccessClient
    from ocs.ocs_client import OCSClient as TheirClient

    assert _start(router, FOLLOWS_OCS, "fd-two", delay=0.05) == (0, 'Started task "delay_task".', 2)
    client = ExclusiveAccessClient(TheirClient(OCS_DIRECTOR, args=_site(router)), "tester",
                                   "fake-subsystem", "grant-pw")
    ok, detail = client.acquire()
    assert ok, detail
    try:
        _until(lambda: _ac(router, FOLLOWS_OCS)["step"] >= detail["step"], what="ocs grant arrived")
        assert _start(router, FOLLOWS_OCS, "fd-two", delay=0.05) == (-1, LOCKED, None)
        assert _start(router, FOLLOWS_OCS, client.password, delay=0.05)[2] == 3
    finally:
        client.release()


@pytest_twisted.ensureDeferred
async def test_garbage_on_the_controls_feed_is_ignored(router, site):
    before = _ac(router, OUR_FAKER)
    session = await connect(router.ws_url)
    topic = f"{router.address_root}.{DIRECTOR}.feeds.controls"
    garbage = ["text", {"reset": True, "ac_version": 2, "step": 9, "rules": []},
               {"reset": True, "ac_version": 1, "step": 9, "rules": [{"cred_level": "high"}]},
               {"reset": True, "ac_version": 1, "step": 9, "rules": [
                   {"hashed_pass": {"hash": "none", "value": "x" * 100_000}, "cred_level": 3}]},
               [None, None]]
    for payload in garbage:
        await session.publish(topic, payload, options=PublishOptions(acknowledge=True))
    session.leave()
    agent_log = router.agent(OUR_FAKER, start=False)
    _until(lambda: agent_log.log_text().count("access director: controls message") >= len(garbage),
           what="one log line per bad message")
    after = _ac(router, OUR_FAKER)
    assert (after["update_count"], after["step"]) == (before["update_count"], before["step"])
    assert _start(router, OUR_FAKER, "fd-two", delay=0.05)[0] == 0


def test_the_grant_is_renewed_in_the_background(router, site):
    with ExclusiveAccess("fake-subsystem", password="grant-pw", grantee="tester", lifetime=3.0,
                         director=DIRECTOR, args=_site(router)) as grant:
        first = grant.expire_at
        _until(lambda: grant.expire_at > first, timeout=10, what="a background renewal")
        _wait_step(router, grant._call("renew")["step"])
        time.sleep(3.5)  # a duration, not a synchronisation: past the first expiry time
        assert time.time() > first
        assert _start(router, OUR_FAKER, "fd-two", delay=0.05) == (-1, LOCKED, None)
        assert grant.renew_error is None
    _until(lambda: _start(router, OUR_FAKER, "fd-two", delay=0.05)[0] == 0, what="released")


def test_agents_keep_the_last_rules_while_the_director_is_away(router, site):
    site[DIRECTOR].terminate()
    _until(lambda: "error" in router.call(router.address(DIRECTOR), "get_agent_class", timeout=2),
           what="director gone")
    assert _start(router, OUR_FAKER, "fd-two", delay=0.05) == (0, 'Started task "delay_task".', 2)
    assert _start(router, OUR_FAKER, None, delay=0.05)[0] == -1
