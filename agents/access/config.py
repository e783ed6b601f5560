"""The Access Director's config file (ocs 0.12's format), checked into rules and grant blocks.

Pure: no Twisted. The file (YAML)::

    passwords_block_default_hashfunc: none   # how string passwords below are read
    distrib_hashfunc: md5                    # the hash agents receive
    passwords:
      - {default: true, password_1: "", password_2: "pw2"}
      - {agent_class: FakeDataAgent, password_3: {hash: md5, value: 3ce7b7b44b9ba8b8}}
    exclusive_access_blocks:
      - name: fake-subsystem
        password: "grant-pw"                 # optional: needed to acquire the grant
        grants:
          - {agent_class: FakeDataAgent, cred_level: 3, lockout_levels: [2, 3]}
          - {default: true, cred_level: 1, lockout_levels: [3]}

Every problem is one :class:`AccessRuleError` naming the entry and key.
"""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from ocs_core.runtime.access import (
    FREE, MAX_STRING, AccessRule, AccessRuleError, HashedPass, ScopeSpec, short_md5)

__all__ = ["DirectorConfig", "GrantBlock", "parse_director_config", "grant_rules", "hash_password"]

_TOP_KEYS = ("passwords_block_default_hashfunc", "distrib_hashfunc", "passwords",
             "exclusive_access_blocks")
_SCOPE_KEYS = ("default", "agent_class", "instance_id")
_HASHES = ("none", "md5")


def hash_password(hash_name: str, clear: str) -> HashedPass:
    """``clear`` stored with ``hash_name`` (``none`` keeps it, ``md5`` keeps 16 hex digits)."""
    return HashedPass(hash_name, short_md5(clear) if hash_name == "md5" else clear)


@dataclass(frozen=True)
class GrantBlock:
    """An exclusive-access block: who may acquire it and what it grants and locks out."""

    name: str
    password: str | None
    hash: str
    grants: tuple[tuple[ScopeSpec, int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class DirectorConfig:
    """The director's standing rules and its exclusive-access blocks."""

    rules: tuple[AccessRule, ...]
    blocks: dict[str, GrantBlock]


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise AccessRuleError(f"{where}: {what}")


def _text(value: Any, where: str) -> str:
    _check(isinstance(value, str) and len(value) <= MAX_STRING, where,
           f"expected a string of at most {MAX_STRING} characters, got {type(value).__name__}")
    return value


def _scope(entry: dict, where: str) -> ScopeSpec:
    default = entry.get("default") or False
    _check(isinstance(default, bool), f"{where}.default", "expected true or false")
    pats = {k: None if entry.get(k) is None else _text(entry[k], f"{where}.{k}")
            for k in ("agent_class", "instance_id")}
    _check(default or any(pats.values()), where, "needs default: true, agent_class or instance_id")
    return ScopeSpec(default, pats["agent_class"], pats["instance_id"])


def _level_list(value: Any, where: str, low: int = 0) -> tuple[int, ...]:
    value = value or []
    _check(isinstance(value, list), where, "expected a list of levels")
    for v in value:
        _check(not isinstance(v, bool) and isinstance(v, int) and low <= v <= 3, where,
               f"levels must be {low}..3, got {v!r}")
    return tuple(value)


def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    _check(isinstance(value, dict), where, f"expected a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in keys]
    _check(not unknown, where, f"unknown key(s) {unknown} (expected {', '.join(keys)})")
    return value


def parse_director_config(doc: Any, where: str = "access config") -> DirectorConfig:
    """Check a loaded config file and build the rules the director distributes.

    Raises:
        AccessRuleError: naming the entry and key that are wrong.
    """
    doc = _mapping({} if doc is None else doc, where, _TOP_KEYS)
    read_hash = doc.get("passwords_block_default_hashfunc", "none")
    distrib = doc.get("distrib_hashfunc", "md5")
    for key, value in (("passwords_block_default_hashfunc", read_hash), ("distrib_hashfunc", distrib)):
        _check(value in _HASHES, f"{where}.{key}", f"expected none or md5, got {value!r}")

    def stored(value: Any, at: str) -> HashedPass:
        if isinstance(value, dict):
            value = _mapping(value, at, ("hash", "value"))
            _check(value.get("hash") in _HASHES, f"{at}.hash", "expected none or md5")
            clear = _text(value.get("value", ""), f"{at}.value")
            hashed = HashedPass(value["hash"], clear)
        else:
            hashed = HashedPass(read_hash, _text(value, at))
        if hashed.value == "":
            return FREE
        if hashed.hash == "none":  # clear text in the file: hash it for the wire
            return hash_password(distrib, hashed.value)
        return hashed

    rules = []
    entries = doc.get("passwords") or []
    _check(isinstance(entries, list), f"{where}.passwords", "expected a list")
    for i, entry in enumerate(entries):
        at = f"{where}.passwords[{i}]"
        entry = _mapping(entry, at, _SCOPE_KEYS + tuple(f"password_{n}" for n in range(1, 5)))
        scope = _scope(entry, at)
        for level in range(1, 5):
            if entry.get(f"password_{level}") is not None:
                rules.append(AccessRule(stored(entry[f"password_{level}"], f"{at}.password_{level}"),
                                        level, scope))
    blocks: dict[str, GrantBlock] = {}
    block_docs = doc.get("exclusive_access_blocks") or []
    _check(isinstance(block_docs, list), f"{where}.exclusive_access_blocks", "expected a list")
    for i, block in enumerate(block_docs):
        at = f"{where}.exclusive_access_blocks[{i}]"
        block = _mapping(block, at, ("name", "password", "hash", "grants"))
        name = _text(block.get("name"), f"{at}.name")
        _check(name not in blocks, f"{at}.name", f"duplicate block name {name!r}")
        password = None if block.get("password") is None else _text(block["password"], f"{at}.password")
        hash_name = block.get("hash", "md5")
        _check(hash_name in _HASHES, f"{at}.hash", "expected none or md5")
        grants = []
        grant_docs = block.get("grants") or []
        _check(isinstance(grant_docs, list) and grant_docs, f"{at}.grants", "expected a non-empty list")
        for j, grant in enumerate(grant_docs):
            gat = f"{at}.grants[{j}]"
            grant = _mapping(grant, gat, _SCOPE_KEYS + ("cred_level", "lockout_levels"))
            level = grant.get("cred_level")
            _check(not isinstance(level, bool) and isinstance(level, int) and 1 <= level <= 3,
                   f"{gat}.cred_level", f"expected 1..3, got {level!r}")
            grants.append((_scope(grant, gat), level,
                           _level_list(grant.get("lockout_levels"), f"{gat}.lockout_levels", 1)))
        blocks[name] = GrantBlock(name, password, hash_name, tuple(grants))
    return DirectorConfig(tuple(rules), blocks)


def grant_rules(block: GrantBlock, owner: str | None) -> tuple[str, tuple[AccessRule, ...]]:
    """A fresh password (8 random letters, as in ocs) and the rules an acquired grant adds."""
    password = "".join(secrets.choice(string.ascii_letters) for _ in range(8))
    hashed = hash_password(block.hash, password)
    return password, tuple(AccessRule(hashed, level, scope, block.name, owner, lockout)
                           for scope, level, lockout in block.grants)
