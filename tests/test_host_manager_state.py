"""The host manager's database (pure: an explicit clock, no processes)."""
import pytest

from agents.host_manager.children import Database, check_requests, stability
from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.site.config import parse_site_config

SITE = """\
hub: {wamp_server: "ws://127.0.0.1:1/ws", wamp_realm: r, address_root: observatory}
hosts:
  h:
    agent-instances:
      - {agent-class: HostManager, instance-id: hm}
      - {agent-class: FakeDataAgent, instance-id: up1}
      - {agent-class: FakeDataAgent, instance-id: down1, manage: host/down}
      - {agent-class: FakeDataAgent, instance-id: dock, manage: docker}
      - {agent-class: FakeDataAgent, instance-id: quiet, manage: ignore}
"""


def host(text=SITE):
    return parse_site_config(text).hosts["h"]


def started(db, now, pids=iter(range(100, 1000))):
    actions = db.step(now)
    for action, iid in actions:
        if action == "spawn":
            db.instances[iid].child.spawned(now, next(pids))
    return actions


def test_reload_lists_what_ocs_lists():
    db = Database()
    messages = db.reload(host())
    assert set(db.instances) == {"up1", "down1", "dock"}  # not itself, not 'ignore'
    assert db.instances["dock"].agent_class == "FakeDataAgent[d?]" and not db.instances["dock"].operable
    assert any("dock: docker-managed" in m for m in messages)
    states = {c["instance_id"]: c for c in db.child_states(0.0)}
    assert states["up1"]["target_state"] == "up" and states["down1"]["target_state"] == "down"
    assert states["dock"]["next_action"] == "?"
    assert set(states["up1"]) >= {"next_action", "target_state", "stability", "agent_class",
                                  "instance_id", "operable", "restart_required"}


def test_targets_restart_and_config_failure():
    db = Database(BackoffPolicy(initial=1))
    db.reload(host())
    assert started(db, 0.0) == [("spawn", "up1")]
    up1 = db.instances["up1"]
    up1.child.ready(0.5)
    assert up1.next_action() == "up"
    assert db.apply([["up1", "restart"]]) == []
    assert db.step(1.0) == [("terminate", "up1")]
    db.exited("up1", 1.5, 0)
    assert started(db, 1.6) == [("spawn", "up1")] and up1.child.restarts == 1
    assert up1.fail_times == []  # an exit asked for is no failure
    db.exited("up1", 2.0, 78)  # a configuration error while starting: not retried
    assert up1.child.state.value == "failed" and db.step(100.0) == []
    db.apply([["up1", "up"]])  # asked for again: it tries again
    assert started(db, 101.0) == [("spawn", "up1")]
    msgs = db.apply([["all", "down"], ["nope", "up"], ["up1", "sideways"]])
    assert msgs == ["Ignoring invalid target, nope", 'Ignoring request for "up1" -> invalid state "sideways".']
    assert db.step(102.0) == [("terminate", "up1")]


def test_an_instance_gone_from_the_file_is_retired():
    db = Database()
    db.reload(host())
    started(db, 0.0)
    messages = db.reload(host(SITE.replace("instance-id: up1", "instance-id: renamed")))
    assert any("Retiring FakeDataAgent:up1" in m for m in messages)
    assert db.step(1.0) == [("terminate", "up1"), ("spawn", "renamed")]
    db.exited("up1", 2.0, 0)
    db.step(2.1)
    assert "up1" not in db.instances


def test_stability_as_ocs_computes_it():
    assert stability([], 100.0) == 1.0
    assert stability([90.0], 100.0) == pytest.approx(0.5)
    assert stability([0.0], 1000.0) == 1.0  # outside the window


@pytest.mark.parametrize("requests,message", [
    ("all", "requests: expected a list"),
    ([["a", "up", "x"]], "requests[0]: expected [instance-id or 'all', state]"),
    ([[1, "up"]], "requests[0]"),
])
def test_malformed_requests_are_named(requests, message):
    assert message in check_requests(requests)
    assert check_requests([["all", "up"], ("x", "down")]) is None
