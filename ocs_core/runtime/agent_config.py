"""AgentConfig: where an agent lives on the router, and how it behaves when the router goes away."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocs_core.runtime.backoff import BackoffPolicy

__all__ = ["AgentConfig"]


@dataclass
class AgentConfig:
    """Where an agent lives on the router, and how it behaves when the router goes away."""

    instance_id: str
    address_root: str = "observatory"
    wamp_server: str = "ws://127.0.0.1:8001/ws"
    realm: str = "test_realm"
    agent_class: str | None = None
    crossbar_timeout: float = 0.0  #: seconds without the router before giving up; 0 = never
    replay_delay: float = 1.0  #: seconds after a rejoin before queued feed events are replayed
    heartbeat_period: float = 1.0
    #: Reconnect delays cap at this plus up to ``retry_jitter``: an agent is callable again within
    #: ~1 s of the router being back (attempts to a dead router on loopback cost nothing).
    max_retry_delay: float = 0.5
    retry_jitter: float = 0.25

    def reconnect_policy(self) -> BackoffPolicy:
        """The delays between attempts to reach the router (0.1 s, growing to the cap, plus jitter)."""
        return BackoffPolicy(initial=min(0.1, self.max_retry_delay), factor=1.5,
                             maximum=self.max_retry_delay, jitter=self.retry_jitter)

    @property
    def address(self) -> str:
        return f"{self.address_root}.{self.instance_id}"

    @classmethod
    def from_args(cls, args: Any, agent_class: str | None = None) -> AgentConfig:
        """Build from parsed site arguments (``ocs_core.site.args.parse_args``)."""
        return cls(instance_id=args.instance_id, address_root=args.address_root,
                   wamp_server=args.site_hub, realm=args.site_realm, agent_class=agent_class,
                   crossbar_timeout=float(getattr(args, "crossbar_timeout", 0) or 0))
