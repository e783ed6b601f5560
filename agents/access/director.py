"""The Access Director's state (pure): rules, exclusive grants, their expiry, and the feed messages.

:class:`Director` answers ``agent_poll`` and ``request_exclusive`` with ocs 0.12's result dicts
and texts, and says what to publish on the ``controls`` feed: a ``reset`` with every rule (at
start, on every change, and every minute) or a ``target`` message with one agent's rules.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from ocs_core.runtime.access import AC_VERSION, MAX_STRING, AccessRule

from agents.access.config import DirectorConfig, grant_rules

__all__ = ["Director", "Grant", "DEFAULT_GRANT_S", "MAX_GRANT_S"]

#: A grant acquired without ``expire_at`` lasts this long (ocs: 60 s).
DEFAULT_GRANT_S = 60.0
#: No grant outlives this (ocs has no bound); renew to keep it.
MAX_GRANT_S = 24 * 3600.0
ACTIONS = ("acquire", "renew", "release")


@dataclass
class Grant:
    """An acquired exclusive-access grant."""

    name: str
    rules: tuple[AccessRule, ...]
    expire_at: float
    grantee: str | None

    def summary(self) -> dict[str, Any]:
        """What the manager's session shows (not the rules: they hold the password's hash)."""
        return {"name": self.name, "expire_at": self.expire_at, "grantee": self.grantee}


class Director:
    """Rules, grants and pending feed messages of one Access Director.

    Args:
        config: the parsed config file.
        clock: time source (for expiry; injectable in tests).
    """

    def __init__(self, config: DirectorConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.config = config
        self.grants: dict[str, Grant] = {}
        self.step = 1
        self.pending: list[dict[str, Any]] = [self._reset()]

    def reload(self, config: DirectorConfig) -> None:
        """New standing rules and blocks; grants already held stay until they expire."""
        self.config = config
        self.changed()

    def changed(self) -> None:
        """A new step: every agent gets every rule again."""
        self.step += 1
        self.pending.append(self._reset())

    def announce(self) -> None:
        """Every rule again, same step (the periodic reset)."""
        self.pending.append(self._reset())

    def all_rules(self) -> list[AccessRule]:
        rules = list(self.config.rules)
        for grant in self.grants.values():
            rules.extend(grant.rules)
        return rules

    def _reset(self) -> dict[str, Any]:
        return {"reset": True}

    def take_messages(self) -> list[dict[str, Any]]:
        """The controls messages to publish now (encoded at this moment's step and rules)."""
        pending, self.pending = self.pending, []
        out = []
        for item in pending:
            rules = self.all_rules()
            if "target" in item:
                rules = [r for r in rules if r.scope_spec.check(item["target"], item["agent_class"])]
                head: dict[str, Any] = {"target": item["target"]}
            else:
                head = {"reset": True}
            out.append({**head, "ac_version": AC_VERSION, "step": self.step,
                        "rules": [r.as_dict() for r in rules]})
        return out

    def agent_poll(self, instance_id: Any = None, agent_class: Any = None) -> bool:
        """Queue one agent's rules; False (nothing queued) for anything but two short strings."""
        for value in (instance_id, agent_class):
            if not isinstance(value, str) or not value or len(value) > MAX_STRING \
                    or "," in value or "!" in value:
                return False
        self.pending.append({"target": instance_id, "agent_class": agent_class})
        return True

    def expire(self) -> list[str]:
        """Drop the grants whose time is up; return their names."""
        now = self._clock()
        gone = [name for name, g in self.grants.items() if g.expire_at <= now]
        for name in gone:
            del self.grants[name]
        if gone:
            self.changed()
        return gone

    def _expiry(self, expire_at: Any) -> float:
        now = self._clock()
        if expire_at is None:
            return now + DEFAULT_GRANT_S
        return min(float(expire_at), now + MAX_GRANT_S)

    def request_exclusive(self, grant_name: Any = None, password: Any = None, action: Any = None,
                          expire_at: Any = None, grantee: Any = None, strict: Any = None,
                          **unexpected: Any) -> dict[str, Any]:
        """ocs's ``request_exclusive``: acquire, renew or release a grant (results and error
        texts as ocs 0.12.1's, plus clear errors for arguments ocs would crash on)."""
        if grant_name is None:
            return {"error": "No grant_name specified."}
        if unexpected:
            return {"error": f"Unexpected argument(s) {sorted(unexpected)[:5]}."}
        strict = True if strict is None else bool(strict)
        if not isinstance(grant_name, str) or grant_name not in self.config.blocks:
            return {"error": f"Named grant not found ({str(grant_name)[:MAX_STRING]})"}
        block = self.config.blocks[grant_name]
        if block.password is not None and block.password != password:
            return {"error": f"Credential failed to access ({grant_name})"}
        if action not in ACTIONS:
            return {"error": f"Unknown action {str(action)[:40]!r}; expected acquire, renew or release."}
        if expire_at is not None and (isinstance(expire_at, bool) or not isinstance(expire_at, (int, float))
                                      or not math.isfinite(expire_at)):
            return {"error": "expire_at must be a unix time (a number) or null."}
        if grantee is not None and not isinstance(grantee, str):
            return {"error": "grantee must be a string or null."}
        grantee = grantee[:MAX_STRING] if grantee else grantee
        held = self.grants.get(grant_name)
        if action == "acquire":
            if held is not None and strict:
                return {"error": f"Grant is already held (grantee: {held.grantee}); release it first."}
            secret, rules = grant_rules(block, grantee)
            grant = self.grants[grant_name] = Grant(grant_name, rules, self._expiry(expire_at), grantee)
            self.changed()
            return {"message": "grant acquired", "password": secret, "grant_name": grant_name,
                    "expire_at": grant.expire_at, "step": self.step}
        if action == "renew":
            if held is None:
                return {"error": "Grant is not currently held; cannot renew."}
            held.expire_at = self._expiry(expire_at)
            return {"message": "grant renewed", "grant_name": grant_name,
                    "expire_at": held.expire_at, "step": self.step}
        if held is None:
            if strict:
                return {"error": "Grant is not currently held; cannot release."}
        else:
            del self.grants[grant_name]
            self.changed()
        return {"message": "grant released", "grant_name": grant_name, "step": self.step}
