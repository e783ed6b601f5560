"""The Access Director's pure parts: its config file, request_exclusive, expiry, feed messages."""
import pytest

from agents.access.config import parse_director_config
from agents.access.director import DEFAULT_GRANT_S, Director
from ocs_core.runtime.access import AccessControl, AccessRuleError, short_md5
from ci import need_module

CONFIG = {
    "passwords": [
        {"default": True, "password_1": ""},
        {"agent_class": "FakeDataAgent", "password_2": "two", "password_3": {"hash": "md5", "value": short_md5("three")}},
        {"instance_id": "special", "password_4": "su"},
    ],
    "exclusive_access_blocks": [
        {"name": "block", "password": "bpw",
         "grants": [{"agent_class": "FakeDataAgent", "cred_level": 3, "lockout_levels": [2, 3]}]},
        {"name": "open", "grants": [{"default": True, "cred_level": 2}]},
    ],
}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def director():
    return Director(parse_director_config(CONFIG), clock=Clock())


def test_config_rules_match_ocs():
    ocs_access = need_module("ocs.access")
    theirs = ocs_access.director_parse_config(CONFIG)["_rules"]
    ours = parse_director_config(CONFIG).rules
    assert [r.as_dict() for r in ours] == [ocs_access.asdict(r) for r in theirs]


@pytest.mark.parametrize("doc,where", [
    ({"passwords": [{"password_2": "x"}]}, "passwords[0]: needs default: true"),
    ({"passwords": [{"default": True, "password_5": "x"}]}, "unknown key(s) ['password_5']"),
    ({"distrib_hashfunc": "sha1"}, "distrib_hashfunc: expected none or md5"),
    ({"passwords": [{"default": True, "password_2": 7}]}, "passwords[0].password_2: expected a string"),
    ({"exclusive_access_blocks": [{"name": "b", "grants": []}]}, "grants: expected a non-empty list"),
    ({"exclusive_access_blocks": [{"name": "b", "grants": [{"default": True, "cred_level": 4}]}]},
     "cred_level: expected 1..3"),
    ({"surprise": 1}, "unknown key(s) ['surprise']"),
])
def test_bad_config_is_one_clear_error(doc, where):
    with pytest.raises(AccessRuleError) as err:
        parse_director_config(doc, "access.yaml")
    assert where in str(err.value) and str(err.value).startswith("access.yaml")


def test_request_exclusive_results_and_texts(director):
    r = director.request_exclusive
    assert r() == {"error": "No grant_name specified."}
    assert r(grant_name="nope", action="acquire") == {"error": "Named grant not found (nope)"}
    assert r(grant_name="block", password="bad", action="acquire") == {
        "error": "Credential failed to access (block)"}
    assert r(grant_name="open", action="renew") == {"error": "Grant is not currently held; cannot renew."}
    assert r(grant_name="open", action="release") == {"error": "Grant is not currently held; cannot release."}
    assert r(grant_name="open", action="release", strict=False)["message"] == "grant released"
    got = r(grant_name="block", password="bpw", action="acquire", grantee="me")
    assert got["message"] == "grant acquired" and len(got["password"]) == 8 and got["password"].isalpha()
    assert got["expire_at"] == 1000.0 + DEFAULT_GRANT_S
    assert r(grant_name="block", password="bpw", action="acquire") == {
        "error": "Grant is already held (grantee: me); release it first."}
    assert r(grant_name="block", password="bpw", action="renew", expire_at=2000.0)["expire_at"] == 2000.0
    assert r(grant_name="block", password="bpw", action="renew", expire_at=1e12)["expire_at"] < 1e6
    assert r(grant_name="block", password="bpw", action="fly")["error"].startswith("Unknown action")
    assert r(grant_name="block", password="bpw", action="renew", expire_at="soon")["error"].startswith("expire_at")
    assert r(grant_name="block", password="bpw", action="renew", expire_at=float("nan"))["error"].startswith("expire_at")
    assert r(grant_name=["block"], action="acquire")["error"].startswith("Named grant not found")
    assert r(grant_name="block", password="bpw", action="release")["message"] == "grant released"


def test_grant_reaches_agents_and_expires(director):
    agent = AccessControl("director:", "faker1", "FakeDataAgent")
    for message in director.take_messages():
        assert agent.apply_controls(message)[0]
    assert agent.level("two")[0] == 2 and agent.level("three")[0] == 3
    secret = director.request_exclusive(grant_name="block", password="bpw", action="acquire",
                                        grantee="me", expire_at=1010.0)["password"]
    for message in director.take_messages():
        agent.apply_controls(message)
    assert agent.level(secret)[0] == 3
    assert agent.level("three") == (1, "Privileges diminished; lockouts active: ['block[me]']")
    director._clock.now = 1011.0
    assert director.expire() == ["block"]
    for message in director.take_messages():
        agent.apply_controls(message)
    assert agent.level("three")[0] == 3 and agent.step == director.step


def test_poll_answers_one_agent_with_its_rules_only(director):
    director.take_messages()
    assert director.agent_poll("special", "OtherAgent")
    assert not director.agent_poll(None, "X") and not director.agent_poll("a", 5)
    assert not director.agent_poll("a,b", "X")
    [message] = director.take_messages()
    assert message["target"] == "special" and message["ac_version"] == 1
    assert sorted(r["cred_level"] for r in message["rules"]) == [1, 4]
