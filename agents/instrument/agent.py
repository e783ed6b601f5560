"""InstrumentAgent: an instrument server's commands as Tasks, a polling ``acq``, and a self-healing link.

The agent keeps one :class:`~agents.instrument.link.InstrumentLink` to its server. Every command
listed in ``--commands`` is a Task (``measure(x)``, ``ping``, ...); the ``command(name, args)``
Task sends any other. Process ``acq`` polls ``--poll-command`` into the recorded feed
``instrument``. When the link drops, Tasks fail at once with a clear message, ``acq`` turns
degraded, and both recover by themselves once the link is back.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from agents.instrument.link import InstrumentError, InstrumentLink, LinkDown, LinkTimeout
from agents.instrument.signatures import (DEFAULT_COMMANDS, Signature, decode_value, parse_command_specs,
                                          parse_help)
from ocs_core.site import args as site_args
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.framing.lines import Reply
from ocs_core.runtime.params import PARAMS_ATTR, ParamError, param
from ocs_core.runtime.session import OpSession
from ocs_core.runtime.text import brief
from ocs_core.runtime.timing import dsleep

FEED = "instrument"
BLOCK = "instrument"
log = Logger(namespace="agents.instrument.agent")


class CommandTask:
    """The start function of one command's Task (its docstring follows the server's ``help``)."""

    def __init__(self, owner: InstrumentAgent, signature: Signature) -> None:
        self.owner = owner
        self.signature = signature
        setattr(self, PARAMS_ATTR, signature.param_specs())
        self.__doc__ = signature.docstring()

    def __call__(self, session: OpSession, params: dict) -> Any:
        return self.owner.run_command(session, self.signature, params)


class InstrumentAgent:
    """The ops of an instrument agent, registered on ``agent`` and served over ``link``.

    Args:
        agent: the OCS agent.
        link: the link to the instrument server (started by the caller).
        signatures: the commands exposed as Tasks.
        poll_command: the command ``acq`` polls (its reply must be a number).
        poll_interval: seconds between polls.
    """

    def __init__(self, agent: OCSAgent, link: InstrumentLink, signatures: Sequence[Signature],
                 poll_command: str = "read", poll_interval: float = 1.0) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll interval must be positive, got {poll_interval!r}")
        self.agent = agent
        self.link = link
        self.tasks = {sig.name: CommandTask(self, sig) for sig in signatures}
        self.poll_command = poll_command
        self.poll_interval = float(poll_interval)
        self.server_commands: list[str] | None = None  #: from ``command_list``, refreshed on each link-up
        self.server_help: dict[str, tuple[str, str]] = {}
        self.down_reason = "not connected yet"
        self._was_up = False
        self._closing = False
        self._acq: OpSession | None = None
        self._acq_problem: dict[str, str] = {}  # cause ("link", "poll") -> message
        self._acq_tick: defer.Deferred | None = None
        agent.register_feed(FEED, record=True, agg_params={"frame_length": 60}, buffer_time=0.0)
        link.add_listener(on_up=self._link_up, on_down=self._link_down)

    def register(self, acq_at_startup: bool = False) -> None:
        """Register one Task per command, the ``command`` Task and the ``acq`` Process."""
        for name, task in self.tasks.items():
            self.agent.register_task(name, task, blocking=False)
        self.agent.register_task("command", self.command, blocking=False)
        self.agent.register_process("acq", self.acq, self._stop_acq, blocking=False,
                                    startup=acq_at_startup)

    # -- Tasks ------------------------------------------------------------------------------
    @param("name", type=str)
    @param("args", default=None, type=list)
    async def command(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """command(name, args=[])

        **Task** - Send any command the server knows, with positional ``args`` (numbers, strings,
        booleans); ``session.data`` holds ``command``, ``args``, ``value`` (the decoded reply),
        ``reply`` and ``timestamp``. The server's ``command_list`` names them.
        """
        sig = Signature(params["name"], varargs=True, declared=False)
        return await self.run_command(session, sig, {"args": params["args"]})

    async def run_command(self, session: OpSession, sig: Signature, params: dict) -> tuple[bool, str]:
        """Send ``sig.name`` with ``params`` as its arguments; the reply goes into ``session.data``."""
        try:
            args = sig.arguments(params)
        except ParamError as exc:
            return False, f"ERROR: {exc}"
        if not self.link.connected:
            session.add_message(f"link to {self.link.label} is down: {self.down_reason}")
            return False, self.unreachable()
        try:
            reply: Reply = await self.link.call_reply(sig.name, *args)
        except LinkDown as exc:
            return False, f"instrument server {self.link.label}: {exc}; retrying in the background"
        except (LinkTimeout, ValueError) as exc:
            return False, str(exc)
        if not reply.ok:
            return False, reply.data
        data: dict[str, Any] = {"command": sig.name}
        data.update({k: v for k, v in params.items() if v is not None})
        data.update({"value": decode_value(reply.fields), "reply": reply.data, "timestamp": time.time()})
        session.data = data
        return True, f"{sig.name} done"

    def unreachable(self) -> str:
        """The message of a Task started while the link is down."""
        return f"instrument server {self.link.label} is not reachable; retrying in the background"

    # -- acq --------------------------------------------------------------------------------
    @param("test_mode", default=False, type=bool)
    async def acq(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """acq(test_mode=False)

        **Process** - Poll the instrument (``--poll-command``, default ``read``) every
        ``--poll-interval`` seconds into the recorded feed ``instrument`` (block ``instrument``,
        field ``value``). ``session.data`` holds ``{"value": v, "timestamp": t, "command": c}``.
        While the link is down (or polls fail) the session is degraded; it recovers by itself.

        Parameters:
            test_mode (bool): stop after one successful poll.
        """
        self._acq, self._acq_problem = session, {}
        if not self.link.connected:
            self._set_problem("link", f"link to {self.link.label} is down: {self.down_reason}")
        try:
            while session.status == "running":
                if self.link.connected and await self._poll_once(session) and params["test_mode"]:
                    break
                if session.status != "running":
                    break
                self._acq_tick = dsleep(self.poll_interval, self.agent.reactor)
                try:
                    await self._acq_tick
                except defer.CancelledError:
                    pass  # stopped, or the link came back: look again now
                finally:
                    self._acq_tick = None
        finally:
            self._acq = None
            self.agent.flush_feed(FEED)
        return True, "Acquisition exited cleanly."

    async def _poll_once(self, session: OpSession) -> bool:
        cmd = self.poll_command
        try:
            reply: Reply = await self.link.call_reply(cmd)
        except LinkDown:
            return False  # the link listener marks the session degraded
        except LinkTimeout as exc:
            self._set_problem("poll", f"poll {cmd} failed: {exc}")
            return False
        value = decode_value(reply.fields) if reply.ok else None
        if not reply.ok:
            self._set_problem("poll", f"poll {cmd} failed: {reply.data}")
            return False
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._set_problem("poll", f"poll {cmd} failed: reply {brief(reply.data)} is not a number")
            return False
        now = time.time()
        self.agent.publish_to_feed(FEED, {"block_name": BLOCK, "timestamp": now, "data": {"value": value}})
        session.data = {"value": value, "timestamp": now, "command": cmd}
        self._clear_problem("poll", f"poll {cmd} succeeds again")
        return True

    def _stop_acq(self, session: OpSession, params: Any) -> tuple[bool, str]:
        session.set_status("stopping")
        self._wake_acq()
        return True, "Requested process stop."

    def _wake_acq(self) -> None:
        if self._acq_tick is not None and not self._acq_tick.called:
            self._acq_tick.cancel()

    def _set_problem(self, cause: str, message: str) -> None:
        session = self._acq
        if session is None or self._acq_problem.get(cause) == message:
            return
        self._acq_problem[cause] = message
        session.degraded = True
        session.add_message(message)

    def _clear_problem(self, cause: str, message: str) -> None:
        session = self._acq
        if session is None or cause not in self._acq_problem:
            return
        del self._acq_problem[cause]
        session.degraded = bool(self._acq_problem)
        session.add_message(message)

    # -- link events ------------------------------------------------------------------------
    def _link_down(self, reason: str) -> None:
        self.down_reason = reason = reason.rstrip(".") or "closed"
        if self._closing:
            log.info("link to {link} closed", link=self.link.label)
            return
        log.info("link to {link} lost: {why}; reconnecting in the background", link=self.link.label, why=reason)
        self._set_problem("link", f"link to {self.link.label} lost: {reason}")

    def _link_up(self) -> None:
        log.info("link to {link} {what}", link=self.link.label, what="restored" if self._was_up else "up")
        self._was_up = True
        self.down_reason = "reconnecting"
        self._clear_problem("link", "link restored")
        self._wake_acq()
        defer.ensureDeferred(self.refresh()).addErrback(
            lambda f: log.warn("{link}: reading the server's command list failed: {why}",
                               link=self.link.label, why=f.getErrorMessage()))

    def close(self) -> defer.Deferred:
        """Close the link for good (at shutdown): no reconnecting, no degraded messages."""
        self._closing = True
        return self.link.stop()

    async def refresh(self) -> None:
        """Ask the server ``command_list`` and ``help``; update the Tasks' docstrings, warn of gaps."""
        listing = await self.link.call_reply("command_list")
        if not listing.ok:
            raise InstrumentError("command_list", listing.data)
        self.server_commands = sorted(f for f in listing.fields if f)
        helped = await self.link.call_reply("help")
        self.server_help = parse_help(helped.fields) if helped.ok else {}
        for name, task in self.tasks.items():
            usage, description = self.server_help.get(name, ("", ""))
            if description:
                task.__doc__ = task.signature.docstring(description)
        missing = sorted(set(self.tasks) - set(self.server_commands))
        if missing:
            log.warn("{link}: the server does not offer {missing}; those Tasks will fail",
                     link=self.link.label, missing=", ".join(missing))
        mismatched = [f"{n} (server: {self.server_help[n][0]})" for n, t in self.tasks.items()
                      if t.signature.declared and n in self.server_help
                      and self.server_help[n][0] != t.signature.usage()]
        if mismatched:
            log.warn("{link}: declared arguments differ from the server's for {which}",
                     link=self.link.label, which="; ".join(mismatched))


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The agent's own options, added to the site options."""
    parser = site_args.add_arguments(parser)
    group = parser.add_argument_group("InstrumentAgent options")
    group.add_argument("--host", default="127.0.0.1", help="instrument server host (default 127.0.0.1)")
    group.add_argument("--port", type=int, default=None, help="instrument server TCP port (required)")
    group.add_argument("--commands", nargs="+", default=[DEFAULT_COMMANDS], metavar="SPEC",
                       help="commands exposed as Tasks, comma- or space-separated: a bare name "
                            "(its usage known or free 'args') or a usage like 'set_v <volts:float>' "
                            f"(default: {DEFAULT_COMMANDS})")
    group.add_argument("--timeout", type=float, default=15.0,
                       help="seconds to wait for a reply (more than the server's own deadline)")
    group.add_argument("--poll-command", default="read", help="command acq polls (default read)")
    group.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    group.add_argument("--max-backoff", type=float, default=5.0,
                       help="longest delay between reconnect attempts, seconds")
    group.add_argument("--mode", default="idle", choices=["idle", "acq"], help="'acq' starts acq at startup")
    return parser


def check_args(parsed: argparse.Namespace, fail: Callable[[str], Any]) -> list[Signature]:
    """Validate the agent's options; return the command signatures (``fail(message)`` on error)."""
    if parsed.port is None or not 0 < parsed.port < 65536:
        fail(f"--port must name the instrument server's TCP port (1-65535), got {parsed.port!r}")
    for opt in ("timeout", "poll_interval", "max_backoff"):
        if not getattr(parsed, opt) > 0:
            fail(f"--{opt.replace('_', '-')} must be positive, got {getattr(parsed, opt)!r}")
    try:
        return parse_command_specs(parsed.commands)
    except ValueError as exc:
        fail(f"--commands: {exc}")
        raise


def main(args: list[str] | None = None) -> None:
    """Run an InstrumentAgent from the site config (``ocs-core agent INSTANCE_ID``)."""
    parser = make_parser()
    parsed = site_args.parse_args(agent_class="InstrumentAgent", parser=parser, args=args)
    signatures = check_args(parsed, parser.error)
    agent = init_site_agent(parsed, "InstrumentAgent")
    link = InstrumentLink(agent.reactor, parsed.host, parsed.port, timeout=parsed.timeout,
                          max_backoff=parsed.max_backoff)
    instrument = InstrumentAgent(agent, link, signatures, parsed.poll_command, parsed.poll_interval)
    instrument.register(acq_at_startup=parsed.mode == "acq")
    agent.reactor.callWhenRunning(link.start)
    agent.reactor.addSystemEventTrigger("before", "shutdown", instrument.close)
    agent.run()


if __name__ == "__main__":
    main(sys.argv[1:])
