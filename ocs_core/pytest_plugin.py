"""pytest fixtures: a session-wide real router and a factory of agent subprocesses.

Use them from a ``conftest.py``: ``from ocs_core.pytest_plugin import router, start_agent``
(or ``pytest_plugins = ["ocs_core.pytest_plugin"]`` in a root conftest).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import pytest

from ocs_core.testing import AgentProcess, RouterFixture, running_router

__all__ = ["router", "start_agent"]


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterFixture]:
    """A real crossbar on a free loopback port for the whole test session.

    Yields a :class:`~ocs_core.testing.RouterFixture`: ``.port``, ``.hub``, ``.site_file``,
    ``.http_url``, ``.ws_url``, ``.add_instance(...)``, ``.call(...)``, ``.agent(...)``.
    """
    with running_router(tmp_path_factory.mktemp("router")) as fixture:
        yield fixture


@pytest.fixture
def start_agent(router: RouterFixture) -> Iterator[Callable[..., AgentProcess]]:
    """Factory: add an instance to the session's site file, launch it, wait until callable.

    ``start_agent(instance_id, agent_class="FakeDataAgent", arguments=(), args=(),
    wait=True, timeout=10, env=None) -> AgentProcess``; every agent is terminated at teardown.
    """
    agents: list[AgentProcess] = []

    def start(instance_id: str, agent_class: str = "FakeDataAgent", arguments: Iterable[Any] = (),
              args: Iterable[str] = (), wait: bool = True, timeout: float = 10.0,
              env: dict[str, str] | None = None) -> AgentProcess:
        router.add_instance(agent_class, instance_id, arguments)
        agent = router.agent(instance_id, args=args, env=env)
        agents.append(agent)
        if wait:
            agent.wait_registered(timeout)
        return agent

    yield start
    for agent in agents:
        agent.terminate()
