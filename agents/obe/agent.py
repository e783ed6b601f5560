"""OBEAgent: optimal Bayesian experiment design as Tasks, over the classic TCP protocol, with restore.

Tasks ``newrun``, ``newdat``, ``optset``, ``goodset``, ``getmean``, ``getstd``, ``getcov``,
``getwgt``, ``getpar``, ``getset``, ``getcon``, ``ready``, ``runs``, ``run_info``, ``measurements``;
Processes ``serve_tcp`` (optbayesexpt's protocol, started at startup) and ``adaptive_scan``;
recorded feed ``posterior``. Every Task and the TCP server share one
:class:`~agents.obe.service.OBEService`. See ``docs/obe-agent.md``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.session import OpSession
from clients.client_t import TaskClient

from agents.obe.classic import server as classic_server
from agents.obe.agent_options import build_service, make_parser
from agents.obe.feed import PosteriorFeed
from agents.obe.scan import ScanPlan, run_scan
from agents.obe.service import DEFAULT_MAX_ITEMS, OBEService

__all__ = ["OBEAgent", "make_parser", "main"]

log = Logger(namespace="agents.obe.agent")
_CONFIG_PARAMS = ("model", "settings", "priors", "constants", "n_particles", "n_draws", "utility",
                  "selection", "pickiness", "noise_std", "noise_parameter", "choke", "a_param",
                  "resample_threshold", "scale", "resampler", "cost", "seed",
                  "likelihood_precision", "utility_precision", "lolim", "hilim", "steps")


def _refusals(name: str) -> Callable:
    """Turn ValueError/KeyError of a Task body into a failed session with a clear message."""
    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def body(self: "OBEAgent", session: OpSession, params: dict) -> tuple[bool, str]:
            try:
                return func(self, session, params)
            except (ValueError, KeyError) as exc:
                text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                return False, f"{name}: {text}"
        return body
    return wrap


class OBEAgent:
    """The OBE agent's operations on ``agent``, around one shared ``service``.

    Args:
        agent: the OCSAgent to register on.
        service: the run service (shared with the TCP server).
        tcp_port, tcp_interface: where ``serve_tcp`` listens by default.
        max_items: default cap of values per reply for the array getters.
    """

    def __init__(self, agent: OCSAgent, service: OBEService, *, tcp_port: int = classic_server.DEFAULT_PORT,
                 tcp_interface: str = classic_server.DEFAULT_INTERFACE, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        self.agent = agent
        self.service = service
        self.tcp_port = tcp_port
        self.tcp_interface = tcp_interface
        self.max_items = max_items
        self._tcp_stop: defer.Deferred | None = None
        self._scan_stop = False
        self.feed = PosteriorFeed(agent)
        service.on_update = self.feed.publish

    def register(self, *, serve_tcp: bool = True) -> None:
        """Register every Task and Process; ``serve_tcp`` starts with the reactor if asked.

        The TCP port does not depend on the router: it is served from the moment the agent runs,
        whether or not the router is there yet (a startup op would wait for the first join).
        """
        a = self.agent
        for name in ("newrun", "getwgt", "getpar", "getset", "getcon", "runs", "run_info", "measurements"):
            a.register_task(name, getattr(self, name))
        # Engine calls measured cheap for this posterior run in the reactor when the lock is free.
        for name in ("optset", "goodset", "getmean", "getstd", "getcov"):
            a.register_task(name, getattr(self, name), inline=self._inline_chooser(name))
        a.register_task("newdat", self.newdat, inline=self._inline_newdat)
        a.register_task("ready", self.ready, blocking=False)
        a.register_process("serve_tcp", self.serve_tcp, self._stop_tcp, blocking=False)
        a.register_process("adaptive_scan", self.adaptive_scan, self._stop_scan, blocking=False)
        if serve_tcp:
            a.reactor.callWhenRunning(self._start_tcp)

    def _inline_chooser(self, name: str) -> Callable[[Any], Any]:
        return lambda params: self.service.inline_lock(name)

    def _inline_newdat(self, params: Any) -> Any:
        single = isinstance(params, dict) and params.get("records") is None
        return self.service.inline_lock("newdat") if single else None

    def _start_tcp(self) -> None:
        reply = self.agent.operations.start("serve_tcp", {})
        if reply[0] != 0:
            log.error("serve_tcp did not start: {msg}", msg=reply[1])

    # ------------------------------------------------------------------ runs
    @param("model", default=None, type=str)
    @param("settings", default=None)
    @param("priors", default=None, type=dict)
    @param("particles", default=None)
    @param("weights", default=None, type=list)
    @param("constants", default=None)
    @param("n_particles", default=None, type=int, min=1)
    @param("n_draws", default=None, type=int, min=2)
    @param("utility", default=None, type=str)
    @param("selection", default=None, type=str)
    @param("pickiness", default=None, type=float, min=0, max=1000)
    @param("noise_std", default=None)
    @param("noise_parameter", default=None)
    @param("choke", default=None, type=float)
    @param("a_param", default=None, type=float)
    @param("resample_threshold", default=None, type=float)
    @param("scale", default=None, type=bool)
    @param("resampler", default=None, type=str)
    @param("cost", default=None)
    @param("seed", default=None, type=int, min=0)
    @param("likelihood_precision", default=None, type=str)
    @param("utility_precision", default=None, type=str)
    @param("lolim", default=None, type=float)
    @param("hilim", default=None, type=float)
    @param("steps", default=None, type=int, min=1)
    @_refusals("newrun")
    def newrun(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """newrun(model=None, settings=None, priors=None, ..., seed=None)

        **Task** - Start a new run; the previous one is replaced only if this one is valid.

        Parameters are the run configuration keys (see docs/obe-agent.md): model, settings
        (list, {start, stop, num} or a list of those), priors ({name: {"uniform": [lo, hi]}}),
        particles and weights (explicit prior samples instead of priors), constants,
        n_particles, n_draws, utility, selection, pickiness, noise_std, seed, ...
        Omitted keys come from the agent's --run-config; lolim/hilim/steps set its single axis.

        session.data: ``{"run_id", "config", "parameters", "setting_names", "constants",
        "n_knobs", "n_settings", "n_channels", "n_particles", "n_measurements"}``.
        """
        message = {k: v for k, v in params.items() if v is not None}
        session.data = self.service.newrun(message)
        return True, f"Started run {session.data['run_id']}."

    @param("x", default=None)
    @param("y", default=None)
    @param("s", default=None)
    @param("records", default=None, type=list)
    @_refusals("newdat")
    def newdat(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """newdat(x=None, y=None, s=None, records=None)

        **Task** - Apply one measurement (x: settings, y: value or one per channel, s: sigma)
        or a batch (records: list of {"x", "y", "s"} or [x, y, s]; all or nothing).

        session.data: ``{"run_id", "index", "count", "n_measurements", "parameters", "mean", "std"}``
        (index: the first new measurement's index in the run).
        """
        single = [k for k in ("x", "y", "s") if params[k] is not None]
        if params["records"] is not None:
            if single:
                raise ValueError("give either x, y, s or records, not both")
            session.data = self.service.add_measurements(params["records"])
        elif len(single) != 3:
            raise ValueError("x, y and s are all required (or records for a batch)")
        else:
            session.data = self.service.newdat(params["x"], params["y"], params["s"])
        return True, (f"Applied {session.data['count']} measurement(s) from index "
                      f"{session.data['index']}.")

    # ------------------------------------------------------------------ settings
    @param("_")
    @_refusals("optset")
    def optset(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """optset()

        **Task** - The setting of highest utility. session.data: ``{"setting": [x, ...]}``.
        """
        session.data = {"setting": self.service.optset()}
        return True, "Optimal setting chosen."

    @param("pickiness", default=None, type=float, min=0, max=1000)
    @_refusals("goodset")
    def goodset(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """goodset(pickiness=None)

        **Task** - A setting drawn with probability utility**pickiness (None: the run's).
        session.data: ``{"setting": [x, ...]}``.
        """
        session.data = {"setting": self.service.goodset(params["pickiness"])}
        return True, "Good setting chosen."

    # ------------------------------------------------------------------ posterior getters
    def _stat(self, session: OpSession, key: str) -> tuple[bool, str]:
        session.data = self.service.statistic(key)
        return True, f"{key} of run {session.data['run_id']}."

    @param("_")
    @_refusals("getmean")
    def getmean(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getmean()

        **Task** - Posterior mean. session.data: ``{"mean": [...], "parameters": [...],
        "n_measurements": n, "run_id": id}``.
        """
        return self._stat(session, "mean")

    @param("_")
    @_refusals("getstd")
    def getstd(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getstd()

        **Task** - Posterior standard deviation (population). session.data like getmean, key ``std``.
        """
        return self._stat(session, "std")

    @param("_")
    @_refusals("getcov")
    def getcov(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getcov()

        **Task** - Posterior covariance. session.data like getmean, key ``cov`` (n x n lists).
        """
        return self._stat(session, "cov")

    @param("_")
    @_refusals("getcon")
    def getcon(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getcon()

        **Task** - Model constants. session.data: ``{"values": [...], "names": [...]}``.
        """
        session.data = self.service.constants()
        return True, "Constants."

    def _window(self, session: OpSession, what: str, params: dict) -> tuple[bool, str]:
        limit = self.max_items if params["max_items"] is None else params["max_items"]
        session.data = self.service.window(what, params["offset"], limit)
        if what == "particles":
            session.data["parameters"] = self.service.summary()["parameters"]
        more = " (truncated)" if session.data["truncated"] else ""
        return True, f"{session.data['count']} of {session.data['total']} {what}{more}."

    @param("offset", default=0, type=int, min=0)
    @param("max_items", default=None, type=int, min=1)
    @_refusals("getwgt")
    def getwgt(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getwgt(offset=0, max_items=None)

        **Task** - Particle weights, at most max_items values per reply (default: the agent's
        --max-items). session.data: ``{"values", "offset", "count", "total", "truncated"}``.
        """
        return self._window(session, "weights", params)

    @param("offset", default=0, type=int, min=0)
    @param("max_items", default=None, type=int, min=1)
    @_refusals("getpar")
    def getpar(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getpar(offset=0, max_items=None)

        **Task** - Particles, one list per parameter, at most max_items values in all.
        session.data: ``{"values": [[...], ...], "parameters", "offset", "count", "total", "truncated"}``.
        """
        return self._window(session, "particles", params)

    @param("offset", default=0, type=int, min=0)
    @param("max_items", default=None, type=int, min=1)
    @_refusals("getset")
    def getset(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """getset(offset=0, max_items=None)

        **Task** - The settings grid, one list per knob. session.data as getpar (without parameters).
        """
        return self._window(session, "settings", params)

    def ready(self, session: OpSession, params: Any) -> tuple[bool, str]:
        """ready()

        **Task** - Liveness check. session.data: ``{"ready": true, "run_id": id or null,
        "n_measurements": n or null, "restored": {...} or null, "inline": {"budget_ms",
        "estimates_ms": {command: ms}, "max_inline_ms"}}`` (the engine calls' measured costs).
        """
        engine = self.service.engine
        session.data = {"ready": True, "run_id": self.service.run_id,
                        "n_measurements": None if engine is None else engine.n_measurements,
                        "restored": self.service.restored, "inline": self.service.budget.summary()}
        return True, "OK"

    # ------------------------------------------------------------------ earlier runs
    @param("_")
    def runs(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """runs()

        **Task** - Every stored run. session.data: ``{"runs": [{"id", "created", "status",
        "n_measurements"}, ...], "current": id}``.
        """
        runs = self.service.store.list_runs()
        session.data = {"runs": runs, "current": self.service.run_id}
        return True, f"{len(runs)} run(s)."

    @param("run_id", type=int, min=1)
    @_refusals("run_info")
    def run_info(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """run_info(run_id)

        **Task** - One stored run. session.data: ``{"id", "created", "config", "status",
        "n_measurements"}``.
        """
        session.data = self.service.store.run(params["run_id"])
        return True, f"Run {params['run_id']}."

    @param("run_id", type=int, min=1)
    @param("offset", default=0, type=int, min=0)
    @param("max_items", default=1000, type=int, min=1, max=100_000)
    @_refusals("measurements")
    def measurements(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """measurements(run_id, offset=0, max_items=1000)

        **Task** - A stored run's measurements from index offset. session.data:
        ``{"run_id", "measurements": [{"index", "x", "y", "s", "time"}], "offset", "count",
        "total", "truncated"}``.
        """
        store, rid = self.service.store, params["run_id"]
        total = store.run(rid)["n_measurements"]
        rows = store.measurements(rid, since_index=params["offset"], limit=params["max_items"])
        session.data = {"run_id": rid, "offset": params["offset"], "count": len(rows), "total": total,
                        "truncated": params["offset"] + len(rows) < total,
                        "measurements": [{"index": m.index, "x": m.settings, "y": m.y, "s": m.sigma,
                                          "time": m.time} for m in rows]}
        return True, f"{len(rows)} of {total} measurements of run {rid}."

    # ------------------------------------------------------------------ serve_tcp
    @param("port", default=None, type=int, min=0, max=65535)
    @param("interface", default=None, type=str)
    async def serve_tcp(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """serve_tcp(port=None, interface=None)

        **Process** - Serve optbayesexpt's classic TCP protocol (10-digit length prefix + JSON)
        on the shared run; starts at startup on --tcp-interface:--tcp-port (127.0.0.1:61981).
        session.data: ``{"interface": str, "port": int}``.
        """
        port = self.tcp_port if params["port"] is None else params["port"]
        interface = params["interface"] or self.tcp_interface
        try:
            listening = classic_server.listen(self.service, port, interface, reactor=self.agent.reactor)
        except CannotListenError as exc:
            return False, f"serve_tcp: cannot listen on {interface}:{port}: {exc.socketError}"
        actual = listening.getHost().port
        session.data = {"interface": interface, "port": actual}
        log.info("serving the classic OBE TCP protocol on {i}:{p}", i=interface, p=actual)
        self._tcp_stop = defer.Deferred()
        await self._tcp_stop
        await listening.stopListening()
        return True, f"Stopped serving on {interface}:{actual}."

    def _stop_tcp(self, session: OpSession, params: Any) -> None:
        session.set_status("stopping")
        if self._tcp_stop is not None and not self._tcp_stop.called:
            self._tcp_stop.callback(None)

    # ------------------------------------------------------------------ adaptive_scan
    @param("instrument", type=str)
    @param("task", default="measure", type=str)
    @param("setting_param", default="x", type=str)
    @param("value_key", default="value", type=str)
    @param("sigma", default=None, type=float)
    @param("sigma_key", default="sigma", type=str)
    @param("max_steps", default=None, type=int, min=1)
    @param("target_std", default=None, type=float, min=0)
    @param("target_param", default=None, type=str)
    @param("selection", default="optimal", choices=["optimal", "good"])
    @param("pickiness", default=None, type=float, min=0, max=1000)
    @param("measure_timeout", default=60.0, type=float, min=0.1)
    async def adaptive_scan(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """adaptive_scan(instrument, task='measure', setting_param='x', value_key='value',
        sigma=None, sigma_key='sigma', max_steps=None, target_std=None, target_param=None,
        selection='optimal', pickiness=None, measure_timeout=60)

        **Process** - Loop: optset (or goodset) -> the instrument agent's Task (instance-id
        ``instrument``) with ``{setting_param: x}`` -> newdat with its ``data[value_key]`` and
        ``sigma`` (or its ``data[sigma_key]``), until max_steps and/or the std of target_param
        reaches target_std, or stop. session.data: ``{"instrument", "run_id", "step",
        "max_steps", "n_measurements", "last_setting", "last_value", "last_sigma", "mean": {...},
        "std": {...}, "target"}``.
        """
        plan_args = {k: params[k] for k in ScanPlan.__dataclass_fields__ if k != "instrument"}
        plan = ScanPlan(instrument=f"{self.agent.config.address_root}.{params['instrument']}",
                        **plan_args)
        if not self.service.has_run():
            return False, "adaptive_scan: no run exists yet; start one with newrun"
        try:
            plan.check(self.service.summary()["parameters"])
        except ValueError as exc:
            return False, f"adaptive_scan: {exc}"
        self._scan_stop = False
        session.data = {"instrument": plan.instrument, "step": 0, "max_steps": plan.max_steps}

        def publish(progress: dict) -> None:
            session.data = progress

        client = TaskClient(self.agent, plan.instrument, plan.task)
        return await run_scan(plan, self.service, client, threads.deferToThread,
                              lambda: self._scan_stop or session.status == "stopping", publish)

    def _stop_scan(self, session: OpSession, params: Any) -> None:
        session.set_status("stopping")
        self._scan_stop = True


def main(args: list[str] | None = None) -> None:
    """Run an OBEAgent from the site config (``ocs-core agent INSTANCE_ID``)."""
    parsed = site_args.parse_args(agent_class="OBEAgent", parser=make_parser(), args=args)
    agent = init_site_agent(parsed, "OBEAgent")
    service = build_service(parsed)
    obe = OBEAgent(agent, service, tcp_port=parsed.tcp_port, tcp_interface=parsed.tcp_interface,
                   max_items=parsed.max_items)
    obe.register(serve_tcp=not parsed.no_tcp)
    agent.run()


if __name__ == "__main__":
    main()
