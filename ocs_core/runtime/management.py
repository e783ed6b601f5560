"""The agent's management procedure ``<root>.<instance-id>``: ocs 0.12's queries and ocs-core's own.

ocs's queries: ``get_api``, ``get_tasks``, ``get_processes``, ``get_feeds``, ``get_agent_class``.
ocs-core's are named ``ocs_core.<name>`` (``features``, ``param_specs``, ``feed_history``, see
docs/agents.md); an unknown query is answered with None, as ocs does, so ocs's tools see no change.
"""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Callable, Mapping

from autobahn.wamp.exception import ApplicationError

from ocs_core.runtime.codes import FEATURES_QUERY, START_AND_WAIT
from ocs_core.runtime.feed_history import FEED_HISTORY_QUERY, answer_feed_history
from ocs_core.runtime.param_specs import PARAM_SPECS_QUERY, encode_param_specs

if TYPE_CHECKING:
    from ocs_core.runtime.agent import OCSAgent

__all__ = ["RUNTIME_ERROR", "FEATURES", "answer_management", "describe_agent"]

RUNTIME_ERROR = "wamp.error.runtime_error"

#: The answer to the management query ``ocs_core.features`` (ocs 0.12 agents answer null): what
#: an ocs-core agent serves beyond ocs's protocol. ``ops_actions``: extra actions of ``.ops``.
FEATURES: dict[str, Any] = {"ops_actions": [START_AND_WAIT]}


def answer_management(agent: OCSAgent, q: str | None, kwargs: Mapping[str, Any]) -> Any:
    """The answer to management query ``q`` (None for a query this agent does not know)."""
    if q is None:
        raise ApplicationError(RUNTIME_ERROR, "management call needs one argument: "
                               "get_api, get_tasks, get_processes, get_feeds or get_agent_class")
    if q == "get_api":
        return describe_agent(agent)
    if q == "get_tasks":
        return [[o.name, o.encoded_session(), o.op_info()] for o in agent.operations.tasks()]
    if q == "get_processes":
        return [[o.name, o.encoded_session(), o.op_info()] for o in agent.operations.processes()]
    if q == "get_feeds":
        return _feed_list(agent)
    if q == "get_agent_class":
        return agent.agent_class
    if q == FEATURES_QUERY:
        return FEATURES
    if q == PARAM_SPECS_QUERY:
        return encode_param_specs(agent.operations)
    if q == FEED_HISTORY_QUERY:
        return _answer_query(answer_feed_history, agent.feeds, kwargs)
    return None


def describe_agent(agent: OCSAgent) -> dict[str, Any]:
    """ocs 0.12's ``get_api``: class, host, pid, feeds, processes, tasks, access control."""
    ops = agent.operations
    return {
        "agent_class": agent.agent_class,
        "instance_hostname": socket.gethostname(),
        "instance_pid": os.getpid(),
        "feeds": _feed_list(agent),
        "processes": [[o.name, o.encoded_session(), o.op_info()] for o in ops.processes()],
        "tasks": [[o.name, o.encoded_session(), o.op_info()] for o in ops.tasks()],
        "access_control": agent.access.info(),
    }


def _feed_list(agent: OCSAgent) -> list[list[Any]]:
    feeds = list(agent.feeds.values()) + [agent._heartbeat]
    return [[f.name, f.feed_info()] for f in feeds]


def _answer_query(answer: Callable, *args: Any) -> Any:
    """Run a pure query handler; its ValueError becomes a WAMP error with its text."""
    try:
        return answer(*args)
    except ValueError as exc:
        raise ApplicationError(RUNTIME_ERROR, str(exc)) from None
