"""Access levels of ocs 0.12: policies, rules, the level a password grants, the director's messages.

Pure logic: no Twisted, no network. An agent holds one :class:`AccessControl`; every start,
stop and abort asks it (through :func:`ocs_core.runtime.operations.Operations.authorize`) for the
level a password grants and compares that with the op's ``min_privs``. Rules come from the
policy (``none``, ``override:<pw2>,<pw3>``, ``director:<id>``) and, under ``director:``, from
the Access Director's ``controls`` feed (:meth:`AccessControl.apply_controls`), which is
checked field by field: a bad message changes nothing and says why in one line.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import IntEnum
from fnmatch import fnmatchcase
from typing import Any, Callable

__all__ = ["AC_VERSION", "CredLevel", "SUPERUSER_KEY", "HashedPass", "ScopeSpec", "AccessRule",
           "AccessControl", "AccessRuleError", "parse_policy", "parse_rule", "pattern_match",
           "rejection_message", "NO_POLICY_DETAIL", "DEFAULT_DIRECTOR", "Policy", "short_md5",
           "PasswordFileEntry", "parse_password_file", "client_password", "FREE", "MAX_STRING"]

#: The access-control protocol version agents report and director messages carry.
AC_VERSION = 1
DEFAULT_DIRECTOR = "access-director"
NO_POLICY_DETAIL = "No access policy -- level 1 for all."
HASHES = ("none", "md5", "blocked")
#: Bounds on what a director message may hold (ocs has none): rules, and each string in them.
MAX_RULES = 1000
MAX_STRING = 256


class CredLevel(IntEnum):
    """A credential level; written ``<n>-<NAME>`` in replies, as in ocs."""

    BLOCKED = 0
    BASIC = 1
    ADVANCED = 2
    FULL = 3
    SUPERUSER = 4

    def __str__(self) -> str:
        return f"{self.value}-{self.name}"


class _SuperUserKey:
    """The key an agent starts and stops its own ops with; JSON can never carry it."""

    def __repr__(self) -> str:
        return "SUPERUSER_KEY"


#: Pass as the password to act at level 4 (startup ops, shutdown). Compared by identity.
SUPERUSER_KEY: Any = _SuperUserKey()


class AccessRuleError(ValueError):
    """A policy string or a rule from the director is malformed."""


def short_md5(text: str) -> str:
    """The first 16 hex digits of the MD5 of ``text`` (UTF-8): ocs's ``md5`` password hash."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class HashedPass:
    """A stored password: ``hash`` is ``none`` (clear text), ``md5`` or ``blocked``."""

    hash: str
    value: str = ""

    def check(self, password: Any) -> bool:
        """Whether ``password`` matches: blocked never does, an empty value always does."""
        if self.hash == "blocked":
            return False
        if self.value == "":
            return True
        if not isinstance(password, str):  # None, numbers, the super-user key: no password
            return False
        if self.hash == "md5":
            return short_md5(password) == self.value
        return password == self.value

    def as_dict(self) -> dict[str, str]:
        return {"hash": self.hash, "value": self.value}


FREE = HashedPass("none")
BLOCKED_PASS = HashedPass("blocked")


def pattern_match(target: str, pattern: str) -> bool:
    """ocs's pattern rule: comma-separated globs, ``!`` negates; match if (no positive glob or
    some positive glob matches) and no negative glob matches."""
    pos, neg = _globs(pattern)
    return (not pos or any(fnmatchcase(target, g) for g in pos)) and \
        not any(fnmatchcase(target, g) for g in neg)


def _globs(pattern: str) -> tuple[list[str], list[str]]:
    pos, neg = [], []
    for sub in pattern.split(","):
        if sub.startswith("!"):
            neg.append(sub[1:])
        else:
            pos.append(sub)
    return [g for g in pos if g], [g for g in neg if g]


@dataclass(frozen=True)
class ScopeSpec:
    """Which agents a rule applies to: all (``default``), or by agent class and instance-id globs."""

    default: bool = False
    agent_class: str | None = None
    instance_id: str | None = None

    def check(self, instance_id: str, agent_class: str | None) -> bool:
        if self.default:
            return True
        if self.agent_class is None and self.instance_id is None:
            return False
        if self.agent_class is not None and not pattern_match(agent_class or "", self.agent_class):
            return False
        return self.instance_id is None or pattern_match(instance_id, self.instance_id)

    def specificity(self) -> int:
        """8 positive instance_id + 4 positive agent_class + 2 negative instance_id + 1 negative
        agent_class; 0 for default (ocs's password-file ranking)."""
        if self.default:
            return 0
        bits = 0
        for pattern, pos_bit, neg_bit in ((self.instance_id, 8, 2), (self.agent_class, 4, 1)):
            if pattern is not None:
                pos, neg = _globs(pattern)
                bits += (pos_bit if pos else 0) + (neg_bit if neg else 0)
        return bits if bits else -1

    def as_dict(self) -> dict[str, Any]:
        return {"default": self.default, "agent_class": self.agent_class,
                "instance_id": self.instance_id}


@dataclass(frozen=True)
class AccessRule:
    """One rule: a password for a level in a scope; an exclusive grant also locks levels out."""

    hashed_pass: HashedPass
    cred_level: int
    scope_spec: ScopeSpec = ScopeSpec(default=True)
    lockout_id: str | None = None
    lockout_owner: str | None = None
    lockout_levels: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The rule as the director distributes it (ocs's field names)."""
        return {"hashed_pass": self.hashed_pass.as_dict(), "cred_level": self.cred_level,
                "scope_spec": self.scope_spec.as_dict(), "lockout_id": self.lockout_id,
                "lockout_owner": self.lockout_owner, "lockout_levels": list(self.lockout_levels)}


# -- checking what arrives from the network ---------------------------------------------------
def _str(value: Any, where: str, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise AccessRuleError(f"{where}: expected a string{' or null' if optional else ''}, "
                              f"got {type(value).__name__}")
    if len(value) > MAX_STRING:
        raise AccessRuleError(f"{where}: string of {len(value)} characters (at most {MAX_STRING})")
    return value


def _level(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise AccessRuleError(f"{where}: expected a credential level 0..4, got {value!r}"[:200])
    return value


def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise AccessRuleError(f"{where}: expected an object, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise AccessRuleError(f"{where}: unknown key(s) {unknown[:5]} (expected {', '.join(keys)})")
    return value


def parse_rule(doc: Any, where: str = "rule") -> AccessRule:
    """Build one :class:`AccessRule` from its wire form, checking every field.

    Raises:
        AccessRuleError: naming the field that is wrong.
    """
    doc = _mapping(doc, where, ("hashed_pass", "cred_level", "scope_spec", "lockout_id",
                                "lockout_owner", "lockout_levels"))
    hp = _mapping(doc.get("hashed_pass"), f"{where}.hashed_pass", ("hash", "value"))
    hash_name = hp.get("hash")
    if hash_name not in HASHES:
        raise AccessRuleError(f"{where}.hashed_pass.hash: expected one of {', '.join(HASHES)}, "
                              f"got {hash_name!r}"[:200])
    value = _str(hp.get("value", ""), f"{where}.hashed_pass.value", optional=False)
    scope_doc = doc.get("scope_spec", {"default": True})
    scope_doc = _mapping(scope_doc, f"{where}.scope_spec", ("default", "agent_class", "instance_id"))
    default = scope_doc.get("default") or False
    if not isinstance(default, bool):
        raise AccessRuleError(f"{where}.scope_spec.default: expected true or false, got {default!r}"[:200])
    scope = ScopeSpec(default, _str(scope_doc.get("agent_class"), f"{where}.scope_spec.agent_class"),
                      _str(scope_doc.get("instance_id"), f"{where}.scope_spec.instance_id"))
    levels = doc.get("lockout_levels") or []
    if not isinstance(levels, list) or len(levels) > 5:
        raise AccessRuleError(f"{where}.lockout_levels: expected a list of at most 5 levels")
    return AccessRule(
        hashed_pass=HashedPass(hash_name, value or ""),
        cred_level=_level(doc.get("cred_level"), f"{where}.cred_level"),
        scope_spec=scope,
        lockout_id=_str(doc.get("lockout_id"), f"{where}.lockout_id"),
        lockout_owner=_str(doc.get("lockout_owner"), f"{where}.lockout_owner"),
        lockout_levels=tuple(_level(v, f"{where}.lockout_levels[{i}]") for i, v in enumerate(levels)))


@dataclass(frozen=True)
class Policy:
    """A parsed ``--access-policy``: its kind, the director's id, and the starting rules."""

    kind: str  # "none", "override" or "director"
    rules: tuple[AccessRule, ...]
    director_id: str | None = None


def parse_policy(text: str | None) -> Policy:
    """Parse ``none`` (or empty/None), ``override:<pw2>,<pw3>`` or ``director:[<id>]``.

    Raises:
        AccessRuleError: any other text, or an override without exactly two passwords.
    """
    if text in (None, "", "none"):
        return Policy("none", tuple(AccessRule(FREE, level) for level in (1, 2, 3)))
    kind, sep, arg = text.partition(":")
    if kind == "director" and sep:
        blocked = tuple(AccessRule(BLOCKED_PASS, level) for level in (1, 2, 3))
        return Policy("director", blocked, arg or DEFAULT_DIRECTOR)
    if kind == "override" and sep:
        pws = arg.split(",")
        if len(pws) != 2:
            raise AccessRuleError(f"access policy {text!r}: override takes two passwords, "
                                  f"override:<level-2 password>,<level-3 password>")
        return Policy("override", (AccessRule(FREE, 1), AccessRule(HashedPass("none", pws[0]), 2),
                                   AccessRule(HashedPass("none", pws[1]), 3)))
    raise AccessRuleError(f"access policy {text!r}: expected none, override:<pw2>,<pw3> or "
                          f"director:<instance-id>")


def rejection_message(have: int, need: int, detail: str = "") -> str:
    """ocs's refusal text (the detail follows after one space when there is one)."""
    text = (f"The action requires credential level {CredLevel(need)} but the client has only "
            f"level {CredLevel(have)}")
    return f"{text} {detail}" if detail else text


class AccessControl:
    """One agent's access policy and current rules.

    Args:
        policy: the ``--access-policy`` text (or the hub's ``access_policy``).
        instance_id, agent_class: the agent the rules are matched against.
        clock: time source for ``update_timestamp``.

    Raises:
        AccessRuleError: a malformed policy.
    """

    def __init__(self, policy: str | None, instance_id: str, agent_class: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        parsed = parse_policy(policy)
        self.policy = parsed.kind
        self.director_id = parsed.director_id
        self.rules: tuple[AccessRule, ...] = parsed.rules
        self.instance_id = instance_id
        self.agent_class = agent_class
        self._clock = clock
        self.update_timestamp = clock()
        self.update_count = 0
        self.step = 0

    def info(self) -> dict[str, Any]:
        """The ``access_control`` block of ``get_api``."""
        return {"version": AC_VERSION, "policy": self.policy,
                "update_timestamp": self.update_timestamp, "update_count": self.update_count,
                "step": self.step}

    def level(self, password: Any) -> tuple[CredLevel, str]:
        """The level ``password`` grants here, with ocs's detail text (lockouts, no policy)."""
        if self.policy == "none":
            return CredLevel.BASIC, NO_POLICY_DETAIL
        if password is SUPERUSER_KEY:
            return CredLevel.SUPERUSER, "Super-user."
        granted, blocked, owners = [0], set(), []
        for rule in self.rules:
            if not rule.scope_spec.check(self.instance_id, self.agent_class):
                continue
            if rule.hashed_pass.check(password):
                granted.append(rule.cred_level)
            elif rule.lockout_levels:
                blocked.update(rule.lockout_levels)
                owner = f"{rule.lockout_id}[{rule.lockout_owner}]"
                if owner not in owners:
                    owners.append(owner)
        level, diminished = max(granted), False
        while level > 0 and level in blocked:
            level, diminished = level - 1, True
        detail = f"Privileges diminished; lockouts active: {owners}" if diminished else ""
        return CredLevel(level), detail

    def check(self, min_privs: int, password: Any, with_detail: bool = True) -> tuple[int, str | None]:
        """``(granted level, None)`` when ``password`` reaches ``min_privs``, else
        ``(granted level, refusal text)``. The super-user key always passes (under policy
        ``none`` the session still records level 1, as in ocs)."""
        level, detail = self.level(password)
        if password is SUPERUSER_KEY or level >= min_privs:
            return int(level), None
        return int(level), rejection_message(level, min_privs, detail if with_detail else "")

    def apply_controls(self, message: Any) -> tuple[bool, str]:
        """Apply one event of the director's ``controls`` feed (``[payload, feed_info]`` or the
        payload alone).

        Returns:
            ``(True, summary)`` when the rules were replaced, ``(False, reason)`` when the
            message was not for this agent (reason ``""``) or was malformed (the rules stay).
        """
        if isinstance(message, (list, tuple)) and message:
            message = message[0]
        if not isinstance(message, dict):
            return False, f"controls message is {type(message).__name__}, not an object; ignored"
        if message.get("ac_version") != AC_VERSION:
            return False, (f"controls message has ac_version {message.get('ac_version')!r}"[:120]
                           + f", this agent speaks {AC_VERSION}; ignored")
        if not (message.get("reset") is True or message.get("target") == self.instance_id):
            return False, ""
        step, rules_doc = message.get("step"), message.get("rules")
        if isinstance(step, bool) or not isinstance(step, int):
            return False, f"controls message: step must be an integer, got {step!r}"[:160] + "; ignored"
        if not isinstance(rules_doc, list) or len(rules_doc) > MAX_RULES:
            return False, f"controls message: rules must be a list of at most {MAX_RULES}; ignored"
        try:
            rules = tuple(parse_rule(r, f"rules[{i}]") for i, r in enumerate(rules_doc))
        except AccessRuleError as exc:
            return False, f"controls message: {exc}; ignored, previous rules kept"
        self.rules = rules
        self.update_count += 1
        self.step = step
        self.update_timestamp = self._clock()
        return True, f"access rules updated from the director: {len(rules)} rule(s), step {step}"


@dataclass
class PasswordFileEntry:
    """One entry of a client password file (``~/.ocs-passwords.yaml``)."""

    scope: ScopeSpec
    passwords: dict[int, str] = field(default_factory=dict)


def parse_password_file(doc: Any, where: str = "password file") -> list[PasswordFileEntry]:
    """Check a loaded client password file: a list of ``{default|agent_class|instance_id,
    password_2, password_3}``.

    Raises:
        AccessRuleError: naming the entry and key that are wrong.
    """
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise AccessRuleError(f"{where}: expected a list of entries, got {type(doc).__name__}")
    entries = []
    for i, row in enumerate(doc):
        at = f"{where}[{i}]"
        row = _mapping(row, at, ("default", "agent_class", "instance_id", "password_1",
                                 "password_2", "password_3", "password_4"))
        default = row.get("default") or False
        if not isinstance(default, bool):
            raise AccessRuleError(f"{at}.default: expected true or false")
        scope = ScopeSpec(default, _str(row.get("agent_class"), f"{at}.agent_class"),
                          _str(row.get("instance_id"), f"{at}.instance_id"))
        pws = {}
        for level in (2, 3):
            if f"password_{level}" in row:
                pws[level] = _str(row[f"password_{level}"], f"{at}.password_{level}", optional=False)
        entries.append(PasswordFileEntry(scope, pws))
    return entries


def client_password(entries: list[PasswordFileEntry], level: int, instance_id: str,
                    agent_class: str | None) -> str:
    """The password a client sends for ``level`` (1, 2 or 3), per ocs's rules: level 1 -> ``""``;
    else the matching entry with a password_2 (level 2 only) or password_3, ranked by
    (specificity, position); no match -> ``""``."""
    if level == 1:
        return ""
    candidates = []
    for i, entry in enumerate(entries):
        if not entry.scope.check(instance_id, agent_class):
            continue
        if 2 in entry.passwords and level <= 2:  # ocs prefers password_2 when both are given
            candidates.append((entry.scope.specificity(), i, entry.passwords[2]))
        elif 3 in entry.passwords:
            candidates.append((entry.scope.specificity(), i, entry.passwords[3]))
    return max(candidates)[2] if candidates else ""
