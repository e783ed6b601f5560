"""Access levels (pure): policies, rule matching, lockouts, director messages, password files.

Where ocs 0.12.1 is installed, seeded random rule sets are checked against ocs's own
``ocs.access.agent_get_creds`` and ``client_get_password`` (the facts of the wire reference §9).
"""
import random

import pytest

from ci import need_module
from ocs_core.runtime.access import (
    SUPERUSER_KEY, AccessControl, AccessRuleError, CredLevel, HashedPass, ScopeSpec,
    client_password, parse_password_file, parse_policy, pattern_match, short_md5)

GOOD_RULE = {"hashed_pass": {"hash": "md5", "value": short_md5("pw")}, "cred_level": 3,
             "scope_spec": {"default": True, "agent_class": None, "instance_id": None},
             "lockout_id": None, "lockout_owner": None, "lockout_levels": []}


def reset(rules, step=1, **extra):
    return {"reset": True, "ac_version": 1, "step": step, "rules": rules, **extra}


def test_levels_are_written_as_ocs_writes_them():
    assert str(CredLevel(2)) == "2-ADVANCED" and str(CredLevel(0)) == "0-BLOCKED"


def test_policy_none_gives_level_1_to_everyone_with_ocs_detail():
    ac = AccessControl("none", "faker1", "FakeDataAgent")
    assert ac.level("anything") == (1, "No access policy -- level 1 for all.")
    assert ac.check(2, "anything") == (1, "The action requires credential level 2-ADVANCED but "
                                          "the client has only level 1-BASIC No access policy -- "
                                          "level 1 for all.")
    assert ac.check(2, "x", with_detail=False)[1].endswith("only level 1-BASIC")
    assert ac.check(3, SUPERUSER_KEY) == (1, None)  # startup and shutdown always pass
    assert ac.info()["policy"] == "none"


def test_override_policy_levels():
    ac = AccessControl("override:two,three", "faker1")
    assert [ac.level(p)[0] for p in (None, "", "wrong", "two", "three", 2)] == [1, 1, 1, 2, 3, 1]
    assert ac.level(SUPERUSER_KEY)[0] == 4
    assert ac.check(3, "two")[1] == ("The action requires credential level 3-FULL but the client "
                                     "has only level 2-ADVANCED")


def test_director_policy_starts_blocked():
    ac = AccessControl("director:", "faker1")
    assert ac.director_id == "access-director"
    assert ac.level("anything")[0] == 0
    assert AccessControl("director:ad2", "x").director_id == "ad2"


@pytest.mark.parametrize("text", ["override:only-one", "override", "director", "strict", "override:a,b,c"])
def test_bad_policies_are_refused_with_the_text(text):
    with pytest.raises(AccessRuleError, match="access policy"):
        parse_policy(text)


def test_patterns_and_specificity():
    assert pattern_match("FakeDataAgent", "*Agent,!FakeDataAgent") is False
    assert pattern_match("HWPAgent", "*Agent,!FakeDataAgent") is True
    assert pattern_match("compute7", "compute*,login*,!*9,!*8") is True
    assert pattern_match("anything", "!other") is True
    assert ScopeSpec(instance_id="faker4").specificity() == 8
    assert ScopeSpec(agent_class="A", instance_id="!x").specificity() == 6
    assert ScopeSpec(default=True, instance_id="x").specificity() == 0
    assert not ScopeSpec().check("x", "A")


def test_md5_and_blocked_passwords():
    assert short_md5("a") == "0cc175b9c0f1b6a8"
    assert HashedPass("md5", short_md5("a")).check("a")
    assert not HashedPass("blocked").check("")
    assert HashedPass("none", "").check(None)
    assert not HashedPass("none", "x").check(["x"])  # non-string passwords match nothing


def test_lockout_diminishes_others_and_names_the_grant():
    ac = AccessControl("director:", "faker1", "FakeDataAgent")
    grant = dict(GOOD_RULE, hashed_pass={"hash": "md5", "value": short_md5("grantpw")},
                 lockout_id="obs", lockout_owner="alice", lockout_levels=[2, 3])
    assert ac.apply_controls(reset([GOOD_RULE, grant], step=7))[0]
    assert ac.level("grantpw") == (3, "")
    assert ac.level("pw") == (1, "Privileges diminished; lockouts active: ['obs[alice]']")
    assert ac.check(2, "pw")[1].endswith("only level 1-BASIC Privileges diminished; lockouts "
                                         "active: ['obs[alice]']")
    assert ac.info()["update_count"] == 1 and ac.info()["step"] == 7


BAD_MESSAGES = [
    ("not a dict", "not an object"),
    ({"reset": True, "ac_version": 2, "step": 1, "rules": []}, "ac_version 2"),
    (reset("rules"), "rules must be a list"),
    (reset([GOOD_RULE], step="1"), "step must be an integer"),
    (reset([dict(GOOD_RULE, cred_level=9)]), "rules[0].cred_level"),
    (reset([dict(GOOD_RULE, cred_level=True)]), "rules[0].cred_level"),
    (reset([dict(GOOD_RULE, hashed_pass={"hash": "sha1", "value": ""})]), "hashed_pass.hash"),
    (reset([dict(GOOD_RULE, hashed_pass={"hash": "none", "value": "x" * 10_000})]), "10000 characters"),
    (reset([dict(GOOD_RULE, hashed_pass={"hash": "none", "value": 42})]), "hashed_pass.value"),
    (reset([dict(GOOD_RULE, scope_spec={"default": "yes"})]), "scope_spec.default"),
    (reset([dict(GOOD_RULE, evil=1)]), "unknown key"),
    (reset([GOOD_RULE] * 1001), "at most 1000"),
    (reset([None]), "rules[0]: expected an object"),
]


@pytest.mark.parametrize("message,why", BAD_MESSAGES, ids=[w for _, w in BAD_MESSAGES])
def test_bad_director_messages_change_nothing(message, why):
    ac = AccessControl("override:a,b", "faker1")
    before = (ac.rules, ac.info())
    applied, reason = ac.apply_controls(message)
    assert not applied and why in reason and "ignored" in reason
    assert (ac.rules, ac.info()) == before


def test_messages_for_other_agents_are_skipped_silently():
    ac = AccessControl("director:", "faker1")
    assert ac.apply_controls({"target": "faker2", "ac_version": 1, "step": 1, "rules": []}) == (False, "")
    applied, _ = ac.apply_controls([{"target": "faker1", "ac_version": 1, "step": 2,
                                     "rules": [GOOD_RULE]}, {"feed_name": "controls"}])
    assert applied and ac.level("pw")[0] == 3


PASSWORD_FILE = [
    {"default": True, "password_3": "general-access-password"},
    {"agent_class": "FakeDataAgent", "instance_id": "!faker4,!faker1", "password_2": "normal-faker"},
    {"instance_id": "faker*", "password_2": "special-faker"},
    {"instance_id": "faker4", "password_2": "special-faker4"},
]


def test_client_password_file_specificity():
    entries = parse_password_file(PASSWORD_FILE)
    assert client_password(entries, 2, "faker1", "FakeDataAgent") == "special-faker"
    assert client_password(entries, 2, "faker4", "FakeDataAgent") == "special-faker4"
    assert client_password(entries, 3, "faker4", "FakeDataAgent") == "general-access-password"
    assert client_password(entries, 1, "faker4", "FakeDataAgent") == ""
    assert client_password([], 3, "x", None) == ""
    with pytest.raises(AccessRuleError, match=r"password file\[0\]\.password_2"):
        parse_password_file([{"default": True, "password_2": 5}])


# -- against ocs's own implementation ----------------------------------------------------------
def _random_rule(rng):
    pw = rng.choice(["", "a", "b", "c"])
    hash_name = rng.choice(["none", "md5", "blocked"])
    value = short_md5(pw) if hash_name == "md5" and pw else pw
    scope = rng.choice([{"default": True}, {"instance_id": "faker*"}, {"instance_id": "!faker1"},
                        {"agent_class": "Fake*", "instance_id": "faker1,faker2"}, {}])
    levels = rng.choice([[], [2], [2, 3], [1, 2, 3]])
    return {"hashed_pass": {"hash": hash_name, "value": value}, "cred_level": rng.randint(1, 3),
            "scope_spec": {"default": False, "agent_class": None, "instance_id": None, **scope},
            "lockout_id": "g" if levels else None, "lockout_owner": "o" if levels else None,
            "lockout_levels": levels}


def test_levels_match_ocs_on_random_rules():
    ocs_access = need_module("ocs.access")
    rng = random.Random(17)
    for _ in range(300):
        docs = [_random_rule(rng) for _ in range(rng.randint(0, 5))]
        ours = AccessControl("director:", "faker1", "FakeDataAgent")
        assert ours.apply_controls(reset(docs))[0]
        theirs = ocs_access.AgentAccessRules(
            policy="director", rules=[ocs_access.AccessRule(**d) for d in docs])
        spec = ocs_access.AgentSpec(instance_id="faker1", agent_class="FakeDataAgent")
        for pw in (None, "", "a", "b", "c", "z"):
            level, detail = ocs_access.agent_get_creds(pw, theirs, spec)
            assert ours.level(pw) == (int(level), detail), (docs, pw)


def test_password_file_matches_ocs(tmp_path, monkeypatch):
    ocs_access = need_module("ocs.access")
    import yaml
    path = tmp_path / "pw.yaml"
    path.write_text(yaml.safe_dump(PASSWORD_FILE))
    monkeypatch.setenv("OCS_PASSWORDS_FILE", str(path))
    entries = parse_password_file(PASSWORD_FILE)
    for iid in ("faker1", "faker2", "faker4", "other"):
        for level in (1, 2, 3):
            assert client_password(entries, level, iid, "FakeDataAgent") == \
                ocs_access.client_get_password(level, "FakeDataAgent", iid)
