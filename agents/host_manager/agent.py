"""HostManager: supervise one host's agent instances, with ocs 0.12 HostManager's ops and data.

Process ``manager(requests=[], reload_config=True)`` reads the host's entry of the site file and
keeps every managed instance at its target state: it starts ``host/up`` instances, restarts one
that dies (backoff doubling from 1 s), gives up on one that exits with a configuration or usage
error, and, when stopped, brings every instance down before it ends. Task ``update(requests=[],
reload_config=False)`` sets target states: ``[[instance-id or 'all', 'up'|'down'|'restart'], ...]``.
Task ``die`` stops the manager Process and then the agent. The ``manager`` session data is
ocs's: ``child_states``, ``config_parse_status``, ``orphans``, ``new_tags``; so ocs's ``ocsbow``
and HostManager clients drive this agent. One per host; the site file names it with agent-class
``HostManager`` (what ``ocsbow`` looks for) or ``OcsCoreHostManager`` (ocs's registry name).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.process import reapAllProcesses

from agents.host_manager.children import Database, check_requests
from agents.host_manager.processes import (SIGKILL, SIGTERM, AdoptedProcess, ChildProcess, agent_command,
                                           find_agent_process, spawn_agent)
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.backoff import BackoffPolicy
from ocs_core.runtime.params import ParamError, param
from ocs_core.runtime.session import OpSession
from ocs_core.runtime.timing import dsleep
from ocs_core.site import args as site_args
from ocs_core.site.config import load_site_config
from ocs_core.supervisor.child import ChildState
from ocs_core.supervisor.plan import readiness_probe

AGENT_CLASS = "HostManager"
_TICK = 0.2


def _requests(value: Any) -> list[list[str]]:
    """The ``requests`` parameter, checked: a clear error names the bad entry."""
    problem = check_requests(value)
    if problem:
        raise ParamError(f"Param {problem}")
    return [list(item) for item in value]


class HostManager:
    """The host manager's ops, registered on ``agent``."""

    def __init__(self, agent: OCSAgent, site_file: str, site_host: str, log_dir: str,
                 policy: BackoffPolicy | None = None, stop_timeout: float = 10.0):
        self.agent = agent
        self.site_file, self.site_host, self.log_dir = site_file, site_host, log_dir
        self.database = Database(policy)
        self.procs: dict[str, ChildProcess] = {}
        self.stop_timeout = stop_timeout
        self.running = False
        self.config_parse_status: dict[str, Any] = {}
        self._probing: set[str] = set()

    # -- site file -------------------------------------------------------------------------
    async def _reload(self, session: OpSession) -> None:
        try:
            cfg = await threads.deferToThread(load_site_config, self.site_file)
            host = cfg.host(self.site_host)
        except Exception as exc:  # keep the current database; say why once
            message = f"Failed to read site config file: {exc}"
            session.add_message(message)
            self.config_parse_status["[SCF]"] = (False, time.time(), message)
            return
        self.config_parse_status["[SCF]"] = (True, time.time(), "")
        for message in self.database.reload(host):
            session.add_message(message)

    def _data(self) -> dict[str, Any]:
        return {"child_states": self.database.child_states(time.time()),
                "config_parse_status": self.config_parse_status, "orphans": {}, "new_tags": {}}

    # -- ops -------------------------------------------------------------------------------
    @param("requests", default=[], cast=_requests, doc="[[instance-id or 'all', 'up'|'down'|'restart'], ...]")
    @param("reload_config", default=True, type=bool)
    async def manager(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """manager(requests=[], reload_config=True)

        **Process** - Keep this host's managed instances at their target states: start them,
        restart one that dies (with backoff), leave one that failed with a configuration error
        down. Stopping the Process brings every instance down first.

        ``session.data`` is ocs's: ``{"child_states": [{"instance_id", "agent_class",
        "next_action", "target_state", "stability", "operable", "restart_required", "pid",
        "restarts"}, ...], "config_parse_status": {...}, "orphans": {}, "new_tags": {}}``.
        """
        self.running = True
        if params["reload_config"] or not self.database.instances:
            await self._reload(session)
        for message in self.database.apply(params["requests"]):
            session.add_message(message)
        session.data = self._data()
        while self.running or self.database.any_alive():
            if not self.running:
                self.database.all_down()
            self._tick(session)
            session.data = self._data()
            await dsleep(_TICK)
        session.data = self._data()
        return True, "Exited."

    def _stop_manager(self, session: OpSession, params: Any) -> tuple[bool, str]:
        if session.status == "done":
            return True, "Not running."
        session.set_status("stopping")
        self.running = False
        return True, "Stop initiated."

    @param("requests", default=[], cast=_requests, doc="[[instance-id or 'all', 'up'|'down'|'restart'], ...]")
    @param("reload_config", default=False, type=bool)
    async def update(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """update(requests=[], reload_config=False)

        **Task** - Set target states of managed instances, in order: each request is
        ``[instance-id or 'all', state]`` with state ``up``, ``down`` or ``restart`` (stop,
        then up). ``reload_config`` re-reads the site file first (new instances are added,
        removed ones brought down). Needs the ``manager`` Process running.
        """
        if not self.running:
            return False, "Manager process is not running; params not updated."
        if params["reload_config"]:
            await self._reload(session)
        for message in self.database.apply(params["requests"]):
            session.add_message(message)
        return True, "Update requested."

    @param("_no_check_strays")
    async def die(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """die()

        **Task** - Stop the ``manager`` Process (its instances go down), then exit the agent.
        """
        if self.running:
            session.add_message("Requesting exit of manager process.")
            self.agent.operations.stop("stop", "manager", {})
            waited = self.agent.operations.wait("manager", timeout=self.stop_timeout + 5)
            if isinstance(waited, defer.Deferred):
                await waited
        else:
            session.add_message("Manager process is not running.")
        self.agent.reactor.callLater(1.0, self.agent.shutdown)
        return True, "This HostManager should terminate in about 1 second."

    # -- children --------------------------------------------------------------------------
    def _tick(self, session: OpSession) -> None:
        reapAllProcesses()  # agents run the reactor without signal handlers: no SIGCHLD reaping
        for proc in list(self.procs.values()):
            if isinstance(proc, AdoptedProcess):
                proc.poll()
        now = time.monotonic()
        for action, iid in self.database.step(now):
            minst = self.database.instances[iid]
            if action == "terminate":
                self._terminate(session, iid)
            elif not minst.looked or minst.unmanaged:
                self._look_for_running(session, iid)  # never two copies of one instance
            else:
                self._spawn(session, iid)
        for iid, minst in self.database.instances.items():
            if minst.child.state is ChildState.STARTING and iid not in self._probing:
                self._probe(iid, minst.agent_class)

    def _spawn(self, session: OpSession, iid: str) -> None:
        minst = self.database.instances[iid]
        command = agent_command(iid, self.site_file, self.site_host, self.log_dir)
        proc = spawn_agent(self.agent.reactor, command, Path(self.log_dir) / f"{iid}.out",
                           lambda code, iid=iid: self._exited(session, iid, code))
        self.procs[iid] = proc
        session.add_message(f"Requested launch for {minst.agent_class}:{iid}")
        session.add_message(str(minst.child.spawned(time.monotonic(), proc.pid)))

    def _terminate(self, session: OpSession, iid: str) -> None:
        proc = self.procs.get(iid)
        if proc is None:
            return
        session.add_message(f"Requesting termination of {iid} (SIGTERM to pid {proc.pid})")
        proc.signal_group(SIGTERM)
        self.agent.reactor.callLater(self.stop_timeout, self._kill_if_alive, session, iid, proc)

    def _kill_if_alive(self, session: OpSession, iid: str, proc: ChildProcess) -> None:
        if not proc.ended:
            session.add_message(f"{iid}: still running after {self.stop_timeout:g} s, SIGKILL")
            proc.signal_group(SIGKILL)

    def _exited(self, session: OpSession, iid: str, code: int | None) -> None:
        self.procs.pop(iid, None)
        for line in self.database.exited(iid, time.monotonic(), code):
            session.add_message(line)

    def _look_for_running(self, session: OpSession, iid: str) -> None:
        """Before a first start (and while it is unmanaged), look for the instance already
        running: one a manager left when it died is managed again (its pid found in /proc);
        one that answers from elsewhere is reported ``unmanaged`` and not started twice."""
        if iid in self._probing or self.agent.session is None:
            return
        self._probing.add(iid)
        defer.ensureDeferred(self._look(session, iid))

    async def _look(self, session: OpSession, iid: str) -> None:
        minst = self.database.instances[iid]
        answers = await self._answers(iid)
        pid = await threads.deferToThread(find_agent_process, iid, self.site_file) if answers else None
        self._probing.discard(iid)
        if self.database.instances.get(iid) is not minst:
            return
        if pid is not None and iid not in self.procs:
            now = time.monotonic()
            self.procs[iid] = AdoptedProcess(pid, lambda code: self._exited(session, iid, code))
            minst.child.spawned(now, pid)
            minst.child.ready(now)
            minst.looked, minst.unmanaged = True, False
            session.add_message(f"{iid} is already running (pid {pid}, left by a manager that "
                                f"died): managed again")
            return
        if answers and not minst.unmanaged:
            session.add_message(f"{iid} answers but runs elsewhere: reported as unmanaged until "
                                f"it stops")
        elif not answers and minst.unmanaged:
            session.add_message(f"{iid} (unmanaged) has stopped answering: starting it")
        minst.looked, minst.unmanaged = True, answers
        if answers:  # look again in a while
            self._probing.add(iid)
            self.agent.reactor.callLater(2.0, self._probing.discard, iid)

    def _answers(self, iid: str) -> defer.Deferred:
        """Fires True when the instance answers: ``get_agent_class`` for an agent, the entry
        point's own ``ready_probe`` for a plain server (finding and running it in a thread)."""
        minst = self.database.instances[iid]

        def ask(probe) -> Any:
            if probe is not None:
                return threads.deferToThread(probe, list(minst.arguments))
            if self.agent.session is None:
                return False
            call = self.agent.session.call(f"{self.agent.config.address_root}.{iid}", "get_agent_class")
            return call.addCallbacks(lambda _: True, lambda _: False)
        d = threads.deferToThread(readiness_probe, minst.agent_class.split("[")[0])
        d.addCallback(ask)
        d.addCallbacks(bool, lambda _: False)
        return d

    def _probe(self, iid: str, agent_class: str) -> None:  # noqa: ARG002
        """A starting instance is running once it answers."""
        self._probing.add(iid)
        minst = self.database.instances[iid]

        def done(ok: bool) -> None:
            self._probing.discard(iid)
            current = self.database.instances.get(iid)
            if ok and current is minst and iid in self.procs:
                minst.child.ready(time.monotonic())
        self._answers(iid).addCallback(done)


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """ocs's HostManager options (docker ones accepted and unused), added to the site options."""
    parser = site_args.add_arguments(parser)
    group = parser.add_argument_group("HostManager options")
    group.add_argument("--initial-state", default=None, choices=["up", "down"],
                       help="one target state for every instance at start-up")
    group.add_argument("--docker-compose", default=None, help="(ocs's; not used: no docker here)")
    group.add_argument("--docker-service-prefix", default="ocs-", help="(ocs's; not used)")
    group.add_argument("--docker-compose-bin", default=None, help="(ocs's; not used)")
    group.add_argument("--quiet", action="store_true", help="(ocs's; output goes to the log anyway)")
    group.add_argument("--stop-timeout", default=10.0, type=float,
                       help="seconds between SIGTERM and SIGKILL when stopping an instance")
    return parser


def main(args: list[str] | None = None) -> None:
    """Run a HostManager from the site config (``ocs-core agent INSTANCE_ID``)."""
    parsed = site_args.parse_args(agent_class=AGENT_CLASS, parser=make_parser(), args=args)
    agent = init_site_agent(parsed, AGENT_CLASS)
    log_dir = parsed.log_dir or str(Path(parsed.working_dir) / "logs")
    manager = HostManager(agent, parsed.site_file, parsed.site_host, log_dir,
                          stop_timeout=parsed.stop_timeout)
    startup: dict = {"requests": [["all", parsed.initial_state]]} if parsed.initial_state else {}
    agent.register_process("manager", manager.manager, manager._stop_manager, blocking=False,
                           startup=startup)  # a dict, even empty: the Process starts at start-up
    agent.register_task("update", manager.update, blocking=False)
    agent.register_task("die", manager.die, blocking=False)
    agent.run()


if __name__ == "__main__":
    main()
