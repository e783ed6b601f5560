"""OCSClient: drive an agent's Tasks and Processes from a script, over crossbar's HTTP bridge.

    >>> from clients.ocs_client import OCSClient
    >>> client = OCSClient('fake-data1')
    >>> client.delay_task(delay=1)          # start, then wait
    >>> client.acq.start(); client.acq.stop()

Every call returns an :class:`OCSReply` ``(status, msg, session)``. Porting an ocs script changes
one import.
"""
from __future__ import annotations

import time
import warnings
from collections import namedtuple
from typing import Any

from ocs_core.runtime.codes import ERROR, OK, START_AND_WAIT, TIMEOUT, ResponseCode

from clients.client_http import DEFAULT_TIMEOUT, ControlClient, ControlClientError
from clients.passwords import password_for
from clients.site import resolve_hub

__all__ = ["OCSClient", "OCSReply", "ControlClientError", "OK", "ERROR", "TIMEOUT", "ResponseCode"]

_HANDLED_KEYS = {"op_name", "session_id", "status", "start_time", "end_time", "messages", "success"}


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.6f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.1f} mins"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} hrs"
    return f"{seconds / 86400:.1f} days"


_NO_SESSION_NEVER_RAN = "  (no session -- op has never run)"
_NO_SESSION_REFUSED = "  (no session in this reply: the request was refused; the op's own session is unchanged)"


class OCSReply(namedtuple("OCSReply", ["status", "msg", "session"])):
    """The reply to an operation call: ``status`` (OK, ERROR, TIMEOUT), ``msg`` and ``session``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return self.format()

    def format(self, now: float | None = None) -> str:
        """The readable block shown by ``repr``; ``now`` (unix time) fixes "for"/"ago" durations."""
        try:
            code = ResponseCode(self.status).name
        except ValueError:
            code = "???"
        lines = [f"OCSReply: {code} : {self.msg}"]
        session = self.session
        if not session:
            lines.append(_NO_SESSION_REFUSED if self.status == ERROR else _NO_SESSION_NEVER_RAN)
            return "\n".join(lines)
        try:
            lines.extend(_describe_session(session, time.time() if now is None else now))
        except Exception:
            lines.append(f"  (session could not be decoded) {session!r}")
        return "\n".join(lines)


def _describe_session(session: dict, now: float) -> list[str]:
    head = f"  {session['op_name']}[session={session['session_id']}]; status={session['status']}"
    status = session["status"]
    if status in ("starting", "running"):
        head += f" for {_duration(now - session['start_time'])}"
    elif status == "done":
        outcome = "without error" if session.get("success") else "with ERROR"
        end = session.get("end_time") or now
        head += (f" {outcome} {_duration(now - end)} ago, "
                 f"took {_duration(end - session['start_time'])}")
    lines = [head]
    messages = session.get("messages") or []
    lines.append(f"  messages ({min(5, len(messages))} of {len(messages)}):")
    lines.extend(f"    {m[0]:.3f} {m[1]}" for m in messages)
    others = [k for k in session if k not in _HANDLED_KEYS]
    lines.append(f"  other keys in .session: {', '.join(others)}")
    return lines


class _Operation:
    """An agent operation as an attribute of :class:`OCSClient`."""

    def __init__(self, client: ControlClient, name: str, password: str | None,
                 docstring: str | None = None) -> None:
        self._client = client
        self._name = name
        self._password = password
        self.__doc__ = docstring

        def start(**params: Any) -> OCSReply:
            return self._request("start", params)
        start.__doc__ = docstring or _Operation.start.__doc__
        self.start = start  # type: ignore[method-assign]  (carries the op's docstring)

    def _request(self, action: str, params: Any = None, **kw: Any) -> OCSReply:
        if self._password:
            kw["password"] = self._password
        return OCSReply(*self._client.request(action, self._name, params, **kw))

    def start(self, **params: Any) -> OCSReply:
        """Start the operation with ``params``; returns at once."""
        return self._request("start", params)

    def status(self) -> OCSReply:
        """The current (or most recent) session."""
        return self._request("status")

    def wait(self, timeout: float | None = None) -> OCSReply:
        """Wait until the operation is done, or ``timeout`` seconds (a TIMEOUT reply, not an error).

        Long waits are split into requests of a few seconds each, so a vanished router raises
        ControlClientError instead of hanging.
        """
        return self._wait_from(None, timeout)

    def _wait_from(self, params: dict | None, timeout: float | None) -> OCSReply:
        """Wait (as :meth:`wait`); with ``params``, the first request also starts the op."""
        chunk = max(0.5, self._client.timeout - 2.0)
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        if params is not None:
            reply = self._request(START_AND_WAIT, params, timeout=chunk,
                                  request_timeout=chunk + self._client.timeout)
            if reply.status != ResponseCode.TIMEOUT:
                return reply
        while True:
            step = chunk if deadline is None else min(chunk, max(0.0, deadline - time.monotonic()))
            reply = self._request("wait", timeout=step, request_timeout=step + self._client.timeout)
            if reply.status != ResponseCode.TIMEOUT:
                return reply
            if deadline is not None and time.monotonic() >= deadline:
                return reply


class _Task(_Operation):
    def abort(self) -> OCSReply:
        """Ask the task to abort."""
        return self._request("abort")

    def __call__(self, **params: Any) -> OCSReply:
        """Start the task and, if it started, wait for it to finish.

        One request when the agent is an ocs-core agent (``start_and_wait``); start then wait
        for an ocs agent.
        """
        if self._client.supports(START_AND_WAIT):
            return self._wait_from(params, None)
        reply = self.start(**params)
        if reply.status != ResponseCode.OK:
            return reply
        return self.wait()


class _Process(_Operation):
    def stop(self) -> OCSReply:
        """Ask the process to stop."""
        return self._request("stop")

    def __call__(self) -> OCSReply:
        """Same as :meth:`status`."""
        return self.status()


class OCSClient:
    """A client for one agent, with one attribute per Task and Process.

    Args:
        instance_id: the agent's instance-id.
        privs: a password string, or a level 1, 2 or 3 looked up in ocs's password file
            (``$OCS_PASSWORDS_FILE``, else ``~/.ocs-passwords.yaml``); sent only to agents
            that report access control.
        args: site options (``['--site-file', 'x.yaml']``) or a parsed namespace; by default
            the site file is ``$OCS_CONFIG_DIR/default.yaml`` when ``$OCS_CONFIG_DIR`` is set,
            else ``$OCS_SITE_FILE``, else ``./site-config.yaml`` (docs/site-and-router.md).
        site_file, site_host: the same as the options, as keywords.
        timeout: seconds each HTTP request may take.
    """

    def __init__(self, instance_id: str, privs: str | int | None = None, args: Any = None, *,
                 site_file: str | None = None, site_host: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        hub = resolve_hub(args, site_file=site_file, site_host=site_host)
        self.instance_id = instance_id
        self.agent_address = f"{hub.address_root}.{instance_id}"
        self._client = ControlClient(self.agent_address, hub.wamp_http, timeout=timeout,
                                     signing=hub.signing)
        api = self._client.get_api()
        if not isinstance(api, dict):
            raise ControlClientError(f"{self.agent_address} did not answer get_api with a "
                                     f"description (got {api!r}); is it an ocs agent?",
                                     "client_http.error.bad_api")
        self.api = api
        password = password_for(privs, instance_id, api.get("agent_class")) or None
        if password and "access_control" not in api:
            warnings.warn(f"{self.agent_address} has no access control (ocs < 0.12); "
                          "privs not sent", stacklevel=2)
            password = None
        self._ops: dict[str, _Operation] = {}
        for kind, cls in (("tasks", _Task), ("processes", _Process)):
            for name, _session, info in api.get(kind, []):
                op = cls(self._client, name, password, info.get("docstring"))
                attr = name.replace("-", "_").replace(" ", "_")
                self._ops[attr] = op
                setattr(self, attr, op)

    def __repr__(self) -> str:
        return f"OCSClient('{self.instance_id}')"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._ops))

    def close(self) -> None:
        """Close the keep-alive HTTP connection."""
        self._client.close()
