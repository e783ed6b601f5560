"""Server profiles: what an instrument agent must know about the server family it talks to.

Pure logic (no Twisted). Servers that speak the tab-separated line protocol differ in a few ways
that a client cannot guess from the wire:

* which commands are answered by silence (sm-bluesky's ``connect_hardware`` and
  ``disconnect_hardware`` run and send nothing; the agent follows them with a ``ping`` fence,
  whose reply proves they finished, and a ``0`` reply before it is their error);
* whether a connection may be held (ours serve many clients at once) or must be given up so that
  other clients get their turn (sm-bluesky serves one client at a time: a held connection locks
  a bluesky plan out), and after how long without calls;
* how commands are discovered (``command_list``, and ``help`` where the server has it);
* what ``shutdown`` means: a reply, then the server stops (ours), or the server closes the
  connection without a reply and stops (sm-bluesky), which counts as success;
* whether reply fields are escaped (none of these: replies are passed on byte-for-byte).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from agents.instrument.signatures import DEFAULT_COMMANDS

__all__ = ["ServerProfile", "PROFILES", "profile_named"]


@dataclass(frozen=True)
class ServerProfile:
    """How one family of instrument servers behaves on the line protocol.

    Attributes:
        name: the profile's name (``--profile``), shown in the agent's session data.
        no_reply: commands the server answers with nothing on success.
        idle_release: seconds a connection is kept after its last reply before the agent closes
            it (0: one connection per burst of commands); None: hold it for good and reconnect
            when it drops.
        help_command: the command listing usages (None: the server has none; only
            ``command_list`` is asked).
        shutdown_closes: True: ``shutdown`` closes the connection without a reply, and that is
            its success; False: ``shutdown`` is answered like any command.
        unescape: undo ``\\\\``, ``\\t``, ``\\n``, ``\\r`` escapes in reply fields (an opt-in for
            servers that escape; off: replies are passed on as they are).
        fence: the command sent after a no-reply command (its reply marks the end).
        default_commands: the Tasks exposed when the site config gives no ``--commands``.
    """

    name: str
    no_reply: frozenset[str] = field(default_factory=frozenset)
    idle_release: float | None = None
    help_command: str | None = "help"
    shutdown_closes: bool = False
    unescape: bool = False
    fence: str = "ping"
    default_commands: str = "ping,command_list"

    def expects(self, command: str) -> str:
        """What answers ``command``: ``"reply"``, ``"none"`` (fenced) or ``"close"``."""
        if command == "shutdown" and self.shutdown_closes:
            return "close"
        return "none" if command in self.no_reply else "reply"

    def with_options(self, *, idle_release: float | None | str = "keep", unescape: bool | None = None,
                     no_reply: tuple[str, ...] = ()) -> ServerProfile:
        """A copy with the agent's command-line overrides applied."""
        changes: dict[str, Any] = {}
        if idle_release != "keep":
            changes["idle_release"] = idle_release
        if unescape is not None:
            changes["unescape"] = unescape
        if no_reply:
            changes["no_reply"] = self.no_reply | frozenset(no_reply)
        return replace(self, **changes) if changes else self

    def describe(self) -> dict[str, Any]:
        """The profile as plain data (the agent's session data carries its name)."""
        return {"name": self.name, "no_reply": sorted(self.no_reply), "idle_release": self.idle_release,
                "help_command": self.help_command, "shutdown_closes": self.shutdown_closes,
                "unescape": self.unescape}


PROFILES: dict[str, ServerProfile] = {
    # ocs-core's InstrumentServer and servers like it: every command answered, many clients at once
    "generic": ServerProfile("generic", default_commands=DEFAULT_COMMANDS),
    # sm-bluesky's AbstractInstrumentServer (1.4): one client at a time, silent hardware commands
    "sm-bluesky": ServerProfile(
        "sm-bluesky", no_reply=frozenset({"connect_hardware", "disconnect_hardware"}), idle_release=0.0,
        help_command=None, shutdown_closes=True,
        default_commands="ping,command_list,connect_hardware,disconnect_hardware"),
}


def profile_named(name: str) -> ServerProfile:
    """The profile called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown server profile {name!r} (known: {', '.join(sorted(PROFILES))})") from None
