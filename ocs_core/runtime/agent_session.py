"""AgentSession: an OCSAgent's WAMP session, which joins (with its key) and hands every event to it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig

from ocs_core.runtime.cryptosign import answer_challenge, join_options
from ocs_core.runtime.wire import GuardedSession

if TYPE_CHECKING:
    from ocs_core.runtime.agent import OCSAgent

__all__ = ["AgentSession"]


class AgentSession(GuardedSession, ApplicationSession):
    """The WAMP session; it hands every event to its agent (and answers undecodable messages)."""

    def __init__(self, config: ComponentConfig, agent: OCSAgent) -> None:
        super().__init__(config)
        self._agent = agent

    def onConnect(self):  # noqa: N802 (autobahn's name)
        self.join(self.config.realm, **join_options(self._agent.config.instance_id,
                                                    self._agent.config.auth_key))

    def onChallenge(self, challenge):  # noqa: N802
        return answer_challenge(self._agent.config.auth_key, challenge.method, challenge.extra)

    def onJoin(self, details):  # noqa: N802
        return self._agent._joined(self, details)

    def onLeave(self, details):  # noqa: N802
        self._agent._left(self, details)
        self.disconnect()

    def onDisconnect(self):  # noqa: N802
        self._agent._disconnected(self)
