"""AccessDirector: hands access rules and exclusive grants to agents under ``director:`` policy.

ocs 0.12's interface: Process ``manager`` (started at startup) publishes on the ``controls``
feed and serves ``<root>.<id>.agent_poll`` and ``<root>.<id>.request_exclusive``; Task
``reload_config`` re-reads the config file (:mod:`agents.access.config`). The state and the
message texts live in :mod:`agents.access.director`; this module moves them over WAMP.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import yaml

from ocs_core.runtime.access import AccessRuleError
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.session import OpSession
from ocs_core.runtime.timing import dsleep
from ocs_core.site import args as site_args
from twisted.logger import Logger

from agents.access.config import DirectorConfig, parse_director_config
from agents.access.director import Director

log = Logger(namespace="agents.access")

#: Seconds between full ``reset`` messages (ocs: 60).
RESET_PERIOD = 60.0


def load_config(path: str) -> DirectorConfig:
    """Read and check the config file.

    Raises:
        AccessRuleError: the file is missing, not YAML, or breaks the format (one line).
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise AccessRuleError(f"{path}: cannot read the access config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AccessRuleError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_director_config(doc, path)


class AccessDirector:
    """The director's ops and procedures, registered on ``agent``."""

    def __init__(self, agent: OCSAgent, config_file: str) -> None:
        self.agent = agent
        self.config_file = config_file
        self.director = Director(load_config(config_file))
        self._manager: OpSession | None = None
        self._last_reset = 0.0
        agent.register_feed("controls", record=False, outbox_size=0)
        agent.register_procedure(self.agent_poll, "agent_poll")
        agent.register_procedure(self.request_exclusive, "request_exclusive")

    @param("_")
    async def manager(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """manager()

        **Process** - Publish access rules on the ``controls`` feed: every rule at start, on
        every change and every minute; one agent's rules when it polls. Expires grants.
        ``session.data`` lists the active grants: ``{"grants": [{"name", "expire_at",
        "grantee"}]}``.
        """
        self._manager = session
        self._last_reset = self.agent.reactor.seconds()
        self.director.changed()
        while session.status == "running":
            expired = self.director.expire()
            for name in expired:
                log.info("grant expired: {name}", name=name)
            if self.agent.reactor.seconds() - self._last_reset >= RESET_PERIOD:
                self.director.announce()
            self._publish()
            await dsleep(1.0)
        self._manager = None
        return True, "Exited."

    def _stop_manager(self, session: OpSession, params: Any) -> None:
        session.set_status("stopping")

    def _publish(self) -> None:
        if self._manager is None:
            return
        for message in self.director.take_messages():
            if message.get("reset"):
                self._last_reset = self.agent.reactor.seconds()
            self.agent.publish_to_feed("controls", message)
        self._manager.data = {"grants": [g.summary() for g in self.director.grants.values()]}

    @param("_")
    def reload_config(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """reload_config()

        **Task** - Re-read the config file; on an error the current rules stay.
        """
        try:
            self.director.reload(load_config(self.config_file))
        except AccessRuleError as exc:
            return False, f"Config not reloaded: {exc}"
        self._publish()
        return True, "Update requested."

    def agent_poll(self, instance_id: Any = None, agent_class: Any = None, **_: Any) -> bool:
        """*Procedure* - queue the rules of one agent on the feed; False for bad arguments."""
        queued = self.director.agent_poll(instance_id, agent_class)
        if queued:  # answered by the manager's next round (within 1 s, as in ocs), by when the
            # agent's subscription to the feed, made just before it polled, is in place
            log.info("agent-poll from {cls}:{iid}", cls=agent_class, iid=instance_id)
        else:
            log.warn("agent-poll with bad arguments ignored: instance_id={iid!r:.60} "
                     "agent_class={cls!r:.60}", iid=instance_id, cls=agent_class)
        return queued

    def request_exclusive(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """*Procedure* - acquire, renew or release an exclusive grant (ocs's keywords)."""
        if args:
            return {"error": "request_exclusive takes keyword arguments only."}
        result = self.director.request_exclusive(**kwargs)
        if "error" in result:
            log.info("request_exclusive refused: {e}", e=result["error"])
        else:
            log.info("{m}: {g}", m=result["message"], g=result["grant_name"])
        self._publish()
        return result


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = site_args.add_arguments(parser)
    group = parser.add_argument_group("AccessDirector options")
    group.add_argument("--config-file", required=True,
                       help="the access config (YAML; relative paths are from the site file)")
    return parser


def main(args: list[str] | None = None) -> None:
    """Run an AccessDirector (``ocs-core agent access-director``)."""
    parsed = site_args.parse_args(agent_class="AccessDirector", parser=make_parser(), args=args)
    config_file = parsed.config_file
    if not os.path.isabs(config_file):
        config_file = os.path.join(os.path.dirname(parsed.site_file), config_file)
    parsed.access_policy = "none"  # the director never waits for rules from itself (as in ocs)
    agent = init_site_agent(parsed, "AccessDirector")
    try:
        director = AccessDirector(agent, config_file)
    except AccessRuleError as exc:
        raise SystemExit(f"{agent.config.instance_id}: error: {exc}") from None
    agent.register_process("manager", director.manager, director._stop_manager, blocking=False,
                           startup=True)
    agent.register_task("reload_config", director.reload_config, blocking=False)
    agent.run()


if __name__ == "__main__":
    main()
