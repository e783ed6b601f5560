"""RigAgent: the rig Service calls as Tasks, announced on a feed and bridged to iblutil UDP rigs.

Tasks ``init``, ``start``, ``stop``, ``status``, ``info`` and ``cleanup`` publish the event on the
feed ``rig_events`` (so ``OCSClient('rig-1').start(exp_ref=...)`` informs every rig listening
through the router) and send it to the configured UDP peers (``--udp-peer``). With
``--udp-port`` the agent also listens for iblutil rigs' datagrams and republishes what they
send on the feed ``rig_events_remote``. Every Task leaves the rig's state in ``session.data``.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable, Optional

from twisted.internet import defer, threads
from twisted.logger import Logger, LogLevel

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.session import OpSession

from agents.rig.events import ExpMessage, validate_exp_ref, validate_status
from agents.rig.feed_format import FEED_NAME, REMOTE_FEED_NAME, encode_payload
from agents.rig.messages import RigMessage, make_message
from agents.rig.state import RigState
from agents.rig.udp import DEFAULT_ECHO_TIMEOUT, udp_communicator
from agents.rig.uri import is_valid_ip, split_uri, validate_uri
from agents.rig.wamp import agent_communicator

log = Logger(namespace="agents.rig.agent")
AGENT_CLASS = "RigAgent"


class _Checked:
    """A param ``cast`` whose repr says what was expected (it appears in the ERROR reply)."""

    def __init__(self, func: Callable[[Any], Any], expected: str):
        self.func, self.expected = func, expected

    def __call__(self, value: Any) -> Any:
        return self.func(value)

    def __repr__(self) -> str:
        return self.expected


EXP_REF = _Checked(validate_exp_ref, "an exp_ref of the form yyyy-mm-dd_n_subject (e.g. 2026-11-23_1_mouse)")
STATUS = _Checked(lambda v: int(validate_status(v)),
                  "an ExpStatus (CONNECTED, INITIALIZED, RUNNING, STOPPED or 0, 10, 20, 30)")


class RigAgent:
    """The rig's Tasks, its state, its WAMP feed and its UDP bridge, registered on ``agent``.

    Args:
        agent: The OCSAgent.
        udp_peers: ``udp://host:port`` URIs of iblutil rigs to inform.
        udp_port: UDP port to listen on for iblutil rigs (None: listen only if there are
            peers, on a free port; 0: a free port).
        udp_interface: IP address the UDP socket binds.
        listen: Instance-ids of other rigs (or ``'*'``) whose WAMP events update ``remotes``.
        echo_timeout: Seconds to wait for a UDP peer's echo.
    """

    def __init__(self, agent: OCSAgent, udp_peers: tuple[str, ...] = (), udp_port: Optional[int] = None,
                 udp_interface: str = "127.0.0.1", listen: tuple[str, ...] = (),
                 echo_timeout: float = DEFAULT_ECHO_TIMEOUT):
        self.agent = agent
        self.state = RigState()
        self.udp_peer_uris = tuple(udp_peers)
        self.udp_port = udp_port
        self.udp_interface = udp_interface
        self.echo_timeout = echo_timeout
        self.peers: list[tuple[str, int]] = []
        self.udp: Any = None
        self.wamp = agent_communicator(agent, listen=list(listen) or None, logger=_bridged_logger())
        self.wamp.assign_callback(ExpMessage.any(), self.state.heard)
        agent.register_feed(REMOTE_FEED_NAME, record=False)

    # -- UDP bridge ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def open_udp(self):
        """Resolve the peers and open the UDP socket (if there are peers or a port)."""
        if not self.udp_peer_uris and self.udp_port is None:
            return None
        peers = []
        for uri in self.udp_peer_uris:
            if not is_valid_ip(split_uri(validate_uri(uri, resolve_host=False))[1]):
                uri = yield threads.deferToThread(validate_uri, uri)
            _, host, port = split_uri(validate_uri(uri, resolve_host=False))
            peers.append((host, port))
        self.udp = yield udp_communicator(interface=self.udp_interface, port=self.udp_port or 0,
                                          name="udp", echo_timeout=self.echo_timeout,
                                          logger=_bridged_logger())
        self.peers = peers
        self.udp.assign_callback(ExpMessage.any(), self._relay_udp)
        return self.udp

    def _relay_udp(self, message: RigMessage) -> None:
        """Republish an event from an iblutil rig on ``rig_events_remote``."""
        self.state.heard(message)
        payload = encode_payload(message, self.agent.agent_address, source=message.source)
        self.agent.publish_to_feed(REMOTE_FEED_NAME, payload)

    # -- announcing ------------------------------------------------------------------------
    async def _announce(self, session: OpSession, message: RigMessage) -> tuple[bool, str]:
        self.state.apply(message)
        name = message.event.name
        targets = [f"feed {FEED_NAME}"]
        sends = [self.wamp.send(message)]
        if self.peers and self.udp is None:
            sends.append(defer.fail(ConnectionError("the UDP socket is not open yet")))
            targets.append("udp peers")
        elif self.udp is not None:
            for peer in self.peers:
                targets.append(f"udp://{peer[0]}:{peer[1]}")
                sends.append(self.udp.send(message, addr=peer))
        results = await defer.DeferredList(sends, consumeErrors=True)
        failed = {t: f"{r.type.__name__}: {r.getErrorMessage()}" for t, (ok, r) in zip(targets, results) if not ok}
        delivered = [t for t in targets if t not in failed]
        session.data = {"event": name, "delivered": delivered, "failed": failed, **self.state.snapshot()}
        if failed:
            why = "; ".join(f"{t} ({e})" for t, e in failed.items())
            return False, f"{name}: rig state is {self.state.status.name}, but not delivered to {why}"
        return True, f"{name} delivered to {', '.join(delivered)}; rig state is {self.state.status.name}"

    @param("data", default=None)
    async def init(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """init(data=None)

        **Task** - Announce EXPINIT (the experiment is initialising); the rig becomes INITIALIZED.

        Parameters:
            data: any JSON value sent with the event.
        """
        return await self._announce(session, make_message(ExpMessage.EXPINIT, params["data"]))

    @param("exp_ref", cast=EXP_REF)
    @param("data", default=None)
    async def start(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """start(exp_ref, data=None)

        **Task** - Announce EXPSTART for ``exp_ref``; the rig becomes RUNNING.

        Parameters:
            exp_ref (str): ``yyyy-mm-dd_n_subject``, e.g. ``2026-11-23_1_mouse``.
            data: any JSON value sent with the event.
        """
        return await self._announce(session, make_message(ExpMessage.EXPSTART, params["exp_ref"], params["data"]))

    @param("data", default=None)
    @param("immediately", default=False, type=bool)
    async def stop(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """stop(data=None, immediately=False)

        **Task** - Announce EXPEND, or EXPINTERRUPT when ``immediately``; the rig becomes STOPPED.
        """
        event = ExpMessage.EXPINTERRUPT if params["immediately"] else ExpMessage.EXPEND
        return await self._announce(session, make_message(event, params["data"]))

    @param("status", default=None, cast=STATUS)
    async def status(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """status(status=None)

        **Task** - Announce EXPSTATUS with ``status`` (default: the rig's current status).
        ``session.data`` holds the rig's state (also after every other Task):
        ``{status, exp_ref, last_event, last_data, last_time, remotes, event, delivered, failed}``.
        """
        status = self.state.status if params["status"] is None else params["status"]
        return await self._announce(session, make_message(ExpMessage.EXPSTATUS, status))

    @param("status", default=None, cast=STATUS)
    @param("data", default=None)
    async def info(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """info(status=None, data=None)

        **Task** - Announce EXPINFO: a status (default: the current one) with details.
        """
        status = self.state.status if params["status"] is None else params["status"]
        return await self._announce(session, make_message(ExpMessage.EXPINFO, status, params["data"]))

    @param("data", default=None)
    async def cleanup(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """cleanup(data=None)

        **Task** - Announce EXPCLEANUP (experiment clean-up has begun).
        """
        return await self._announce(session, make_message(ExpMessage.EXPCLEANUP, params["data"]))


class _TwistedLogHandler(logging.Handler):
    """Forwards the Communicator's stdlib log records to the agent's (Twisted) log, one line each."""

    _LEVELS = {logging.DEBUG: LogLevel.debug, logging.INFO: LogLevel.info,
               logging.WARNING: LogLevel.warn, logging.ERROR: LogLevel.error}

    def emit(self, record: logging.LogRecord) -> None:
        level = self._LEVELS.get(record.levelno, LogLevel.critical)
        Logger(namespace="agents.rig").emit(level, "{text}", text=record.getMessage())


def _bridged_logger() -> logging.Logger:
    logger = logging.getLogger("agents.rig.agent")
    if not any(isinstance(h, _TwistedLogHandler) for h in logger.handlers):
        logger.addHandler(_TwistedLogHandler())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def _udp_uri(text: str) -> str:
    try:
        uri = validate_uri(text, resolve_host=False)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if split_uri(uri)[0].lower() != "udp":
        raise argparse.ArgumentTypeError(f"{text!r} is not a udp:// address")
    return uri


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number in 0..65535")
    return value


def _ip(text: str) -> str:
    if not is_valid_ip(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address")
    return text


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The agent's own options, added to the site options."""
    parser = site_args.add_arguments(parser)
    group = parser.add_argument_group("RigAgent options")
    group.add_argument("--udp-peer", action="append", default=[], type=_udp_uri, metavar="URI",
                       help="an iblutil rig to inform, e.g. udp://127.0.0.1:11001 (repeatable)")
    group.add_argument("--udp-port", default=None, type=_port,
                       help="listen for iblutil rigs on this UDP port (0: a free one); their "
                            "events are republished on the feed rig_events_remote")
    group.add_argument("--udp-interface", default="127.0.0.1", type=_ip,
                       help="IP address the UDP socket binds (default: loopback)")
    group.add_argument("--listen", action="append", default=[], metavar="INSTANCE_ID",
                       help="another rig agent (or '*' for all) whose events are kept in the "
                            "state's 'remotes' (repeatable)")
    group.add_argument("--echo-timeout", default=DEFAULT_ECHO_TIMEOUT, type=float,
                       help="seconds to wait for a UDP peer's echo")
    return parser


def main(args: list[str] | None = None) -> None:
    """Run a RigAgent from the site config (``ocs-core agent rig-1``)."""
    parsed = site_args.parse_args(agent_class=AGENT_CLASS, parser=make_parser(), args=args)
    agent = init_site_agent(parsed, AGENT_CLASS)
    rig = RigAgent(agent, tuple(parsed.udp_peer), parsed.udp_port, parsed.udp_interface,
                   tuple(parsed.listen), parsed.echo_timeout)
    agent.register_task("init", rig.init, blocking=False)
    agent.register_task("start", rig.start, blocking=False)
    agent.register_task("stop", rig.stop, blocking=False)
    agent.register_task("status", rig.status, blocking=False)
    agent.register_task("info", rig.info, blocking=False)
    agent.register_task("cleanup", rig.cleanup, blocking=False)

    def udp_failed(failure):
        log.error("cannot open the UDP bridge: {why}", why=f"{failure.type.__name__}: {failure.getErrorMessage()}")
        agent.exit_code = 1
        agent.shutdown()

    agent.reactor.callWhenRunning(lambda: rig.open_udp().addErrback(udp_failed))
    agent.run()


if __name__ == "__main__":
    main()
