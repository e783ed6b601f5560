"""OBEService: the one current OBE run, shared by the agent's WAMP Tasks and the classic TCP server.

No Twisted here. The service holds the current :class:`~agents.obe.engine.obe_engine.OBEEngine` and its run
id behind one lock (callers use worker threads, or the reactor's thread for a call that
:meth:`OBEService.inline_lock` allows: measured cheap, lock free), persists through
:class:`~agents.obe.run_store.RunStore`, and implements the
:class:`~agents.obe.classic.commands.OBEBackend` protocol.

Persistence and exact restore:

* ``newrun`` stores the run's configuration (with its seed, so the prior is rebuilt exactly);
* every accepted measurement is committed to the store before the call returns;
* every ``snapshot_every`` measurements the posterior (``engine.get_state()``) is stored;
* the random stream of each update is re-keyed from ``(seed, measurement index)``, so an update's
  resampling does not depend on how many settings were chosen before it; restoring the latest
  snapshot and replaying the later measurements therefore gives exactly the live posterior.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from agents.obe.engine.obe_engine import OBEEngine, ZeroLikelihoodError
from agents.obe.inline_budget import InlineBudget
from agents.obe.newrun import NewrunHandler, default_newrun_handler
from agents.obe.run_store import RunStore
from ocs_core.runtime.text import brief

__all__ = ["OBEService", "NoRunError", "DEFAULT_SNAPSHOT_EVERY", "DEFAULT_MAX_ITEMS"]

DEFAULT_SNAPSHOT_EVERY = 50
DEFAULT_MAX_ITEMS = 10_000
MAX_BATCH = 10_000
#: Value lists (getset, getpar, getwgt) up to this many values may be answered in the caller's
#: (the reactor's) thread; engine calls go by their measured cost (:class:`InlineBudget`).
INLINE_MAX_VALUES = 1_000
#: Engine calls whose measured cost decides whether they may run in the caller's thread.
BUDGETED = ("getmean", "getstd", "getcov", "optset", "goodset", "newdat")
#: The estimate of a newdat that resampled, kept apart from the others' (``"newdat"``).
RESAMPLING_NEWDAT = "newdat_resampling"
_LISTS = {"getset": "settings_grid", "getpar": "particles", "getwgt": "weights"}

_log = logging.getLogger(__name__)

UpdateListener = Callable[[dict], None]


class NoRunError(ValueError):
    """A request that needs a run came before any run exists."""


def _plain(value: Any) -> Any:
    """Numbers as floats, sequences as lists (what the store keeps and replays)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {brief(value)}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise ValueError(f"expected a number or a list of numbers, got {brief(value)}")


def _record(item: Any, i: int) -> tuple[Any, Any, Any]:
    """One batch item, ``{"x", "y", "s"}`` or ``[x, y, s]``, as a stored record."""
    if isinstance(item, Mapping):
        missing = [k for k in ("x", "y", "s") if k not in item]
        if missing:
            raise ValueError(f"record {i} lacks {', '.join(missing)}")
        x, y, s = item["x"], item["y"], item["s"]
    elif isinstance(item, (list, tuple)) and len(item) == 3:
        x, y, s = item
    else:
        raise ValueError(f"record {i} must be {{x, y, s}} or [x, y, s], got {brief(item)}")
    try:
        x = _plain(x)
        return (x if isinstance(x, list) else [x]), _plain(y), _plain(s)
    except ValueError as exc:
        raise ValueError(f"record {i}: {exc}") from None


class OBEService:
    """The current run of one OBE agent, with persistence.

    Args:
        store: where runs, measurements and snapshots go.
        default_config: the site's default run configuration (``--run-config``), or None.
        newrun_handler: turns a newrun message into a configuration (default
            :func:`~agents.obe.newrun.default_newrun_handler`); subclasses may instead
            override :meth:`make_config`.
        snapshot_every: store the posterior every this many measurements.
        on_update: called after each accepted ``newdat`` (outside the lock) with
            ``{"run_id", "n_measurements", "parameters", "mean", "std", "setting"}``.
        inline_budget: the measured-cost rule of :meth:`inline_lock` (default: 0.5 ms).
    """

    def __init__(self, store: RunStore, *, default_config: Mapping[str, Any] | None = None,
                 newrun_handler: NewrunHandler | None = None,
                 snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 on_update: UpdateListener | None = None,
                 inline_budget: InlineBudget | None = None) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self.store = store
        self.default_config = dict(default_config) if default_config else None
        self.newrun_handler = newrun_handler or default_newrun_handler
        self.snapshot_every = int(snapshot_every)
        self.on_update = on_update
        self.engine: OBEEngine | None = None
        self.run_id: int | None = None
        self.restored: dict | None = None
        self._lock = threading.RLock()
        self.budget = inline_budget if inline_budget is not None else InlineBudget()
        self._with_store = _BothLocks(self._lock, store.lock)

    # ------------------------------------------------------------------ runs
    def make_config(self, message: Mapping[str, Any]) -> dict:
        """The engine configuration for a newrun ``message`` (override in a subclass)."""
        return self.newrun_handler(message, self.default_config)

    def newrun(self, message: Mapping[str, Any]) -> dict:
        """Start a new run from a newrun message; the current run stays if anything is wrong."""
        return self.start_run(self.make_config(message))

    def start_run(self, config: Mapping[str, Any]) -> dict:
        """Build an engine from ``config`` (ValueError if invalid), store it, make it current."""
        engine = OBEEngine.from_config(config)  # slow part outside the lock
        with self._lock:
            self.run_id = self.store.new_run(engine.config)
            self.engine = engine
            self.restored = None
            self.budget.reset()
            return self._summary()

    def has_run(self) -> bool:
        return self.engine is not None

    def inline_lock(self, command: str) -> "threading.RLock | _BothLocks | None":
        """The lock to try (non-blocking) for running ``command`` in the calling thread (the
        reactor's) if it is cheap for the current posterior; None: run it in a worker thread.

        Cheap means: ``getcon``; a value list of at most ``INLINE_MAX_VALUES`` values; an engine
        call (``BUDGETED``) whose running estimate is within :attr:`budget`. ``newdat`` never
        runs inline when its measurement is due a snapshot or the store fsyncs every commit
        (``durable``); its lock then also holds the store's, so the commit cannot wait.
        """
        engine = self.engine
        if engine is None or command == "getcon":
            return self._lock
        if command in _LISTS:
            size = engine.n_settings * engine.n_knobs if command == "getset" else \
                engine.n_particles * (len(engine.parameter_names) if command == "getpar" else 1)
            return self._lock if size <= INLINE_MAX_VALUES else None
        if command not in BUDGETED or not self.budget.allows(command):
            return None
        if command == "newdat":
            # Whether this one resamples is known only after it: both kinds must be cheap (a
            # resample with the resample-move step costs far more than an update).
            if not self.budget.allows(RESAMPLING_NEWDAT):
                return None
            n = engine.n_measurements
            if self.store.durable or (n + 1) // self.snapshot_every > n // self.snapshot_every:
                return None
            return self._with_store
        return self._lock

    def _require(self) -> OBEEngine:
        engine = self.engine
        if engine is None:
            raise NoRunError("no run exists yet; start one with newrun")
        return engine

    def _summary(self) -> dict:
        e = self._require()
        spec = e.model_spec
        return {"run_id": self.run_id, "config": dict(e.config or {}),
                "parameters": list(e.parameter_names),
                "setting_names": list(spec.setting_names) if spec and len(spec.setting_names) == e.n_knobs
                else [f"x{k}" for k in range(e.n_knobs)],
                "constants": list(e.constants), "n_knobs": e.n_knobs, "n_settings": e.n_settings,
                "n_channels": e.n_channels, "n_particles": e.n_particles,
                "n_measurements": e.n_measurements}

    def summary(self) -> dict:
        """The current run: id, configuration, names and sizes, measurement count, restore info."""
        with self._lock:
            out = self._summary()
            out["restored"] = self.restored
            return out

    def restore(self) -> dict | None:
        """Make the store's current run current again: latest snapshot + replay of the rest.

        Returns:
            ``{"run_id", "n_measurements", "snapshot", "replayed", "seconds"}`` or None if the
            store holds no active run.
        """
        current = self.store.current_run()
        if current is None:
            return None
        t0 = time.monotonic()
        run_id, config = current
        engine = OBEEngine.from_config(config)
        snap = self.store.latest_snapshot(run_id)
        start = 0
        if snap is not None:
            engine.set_state({**snap.meta, **snap.arrays})
            start = snap.n_measurements
        replayed = 0
        for m in self.store.measurements(run_id, since_index=start):
            if m.index != engine.n_measurements:
                raise RuntimeError(f"run {run_id}: measurement {m.index} follows "
                                   f"{engine.n_measurements} measurements; the store is inconsistent")
            self._rekey(engine, m.index)
            engine.update(m.settings, m.y, m.sigma)
            replayed += 1
        info = {"run_id": run_id, "n_measurements": engine.n_measurements,
                "snapshot": start if snap is not None else None, "replayed": replayed,
                "seconds": round(time.monotonic() - t0, 3)}
        with self._lock:
            self.engine, self.run_id, self.restored = engine, run_id, info
            self.budget.reset()
        return info

    # ------------------------------------------------------------------ measurements
    @staticmethod
    def _rekey(engine: OBEEngine, index: int) -> None:
        """Point the engine's generator at the stream of measurement ``index`` of its run."""
        seed = int((engine.config or {}).get("seed") or 0)
        fresh = type(engine.rng.bit_generator)(np.random.SeedSequence([seed, int(index)]))
        engine.rng.bit_generator.state = fresh.state

    def newdat(self, x: Any, y: Any, s: Any) -> dict:
        """Apply and store one measurement (settings, value(s), sigma); see :meth:`add_measurements`."""
        return self.add_measurements([{"x": x, "y": y, "s": s}])

    def add_measurements(self, records: Sequence[Any]) -> dict:
        """Apply measurements in order, all or nothing, and commit them before returning.

        Args:
            records: items ``{"x": settings, "y": value(s), "s": sigma}`` or ``[x, y, s]``.

        Returns:
            ``{"run_id", "index" (of the first record), "count", "n_measurements",
            "parameters", "mean", "std"}``.

        Raises:
            ValueError: bad input, zero likelihood or no run; nothing was applied.
        """
        if not isinstance(records, (list, tuple)) or not records:
            raise ValueError("newdat needs at least one measurement")
        if len(records) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} measurements per call, got {len(records)}")
        recs = [_record(item, i) for i, item in enumerate(records)]
        with self._lock:
            t0 = self.budget.clock()
            engine = self._require()
            first = engine.n_measurements
            saved = engine.get_state() if len(recs) > 1 else None
            i = 0
            resampled = False
            try:
                for i, (x, y, s) in enumerate(recs):
                    self._rekey(engine, first + i)
                    resampled = engine.update(x, y, s)
            except (ValueError, ZeroLikelihoodError) as exc:
                if saved is not None:
                    engine.set_state(saved)
                where = f"record {i}: " if len(recs) > 1 else ""
                tail = "; no record of this batch was applied" if len(recs) > 1 else ""
                raise ValueError(f"{where}{exc}{tail}") from None
            try:
                self.store.append_measurements(self.run_id, recs)
            except Exception as exc:  # the store refused: go back to what the store holds
                _log.error("storing measurements of run %s failed (%s); reloading the run",
                           self.run_id, exc)
                self.engine = None
                self.restore()
                raise RuntimeError(f"the measurement could not be stored ({exc}); not applied") from exc
            n = engine.n_measurements
            snapshot = n // self.snapshot_every > first // self.snapshot_every
            if snapshot:
                self._snapshot(engine)
            mean, std = engine.mean().tolist(), engine.std().tolist()
            result = {"run_id": self.run_id, "index": first, "count": len(recs),
                      "n_measurements": n, "parameters": list(engine.parameter_names),
                      "mean": mean, "std": std}
            if len(recs) == 1 and not snapshot:  # a snapshot's newdat never runs inline
                self.budget.record(RESAMPLING_NEWDAT if resampled else "newdat",
                                   self.budget.clock() - t0, inline=_in_main_thread())
        if self.on_update is not None:
            try:
                self.on_update({**result, "setting": recs[-1][0]})
            except Exception:  # noqa: BLE001 - monitoring must not fail a measurement
                _log.exception("the posterior listener failed")
        return result

    def _timed(self, command: str, func: Callable[[], Any]) -> Any:
        return self.budget.timed(command, func, inline=_in_main_thread())

    def _snapshot(self, engine: OBEEngine) -> None:
        state = engine.get_state()
        arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        meta = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
        self.store.save_snapshot(self.run_id, engine.n_measurements, arrays, meta)

    # ------------------------------------------------------------------ settings
    def optset(self) -> list[float]:
        """The optimal next setting, one value per knob."""
        with self._lock:
            return list(self._timed("optset", self._require().optimal_setting))

    def goodset(self, pickiness: float | None = None) -> list[float]:
        """A utility-weighted random next setting (None: the run's pickiness)."""
        with self._lock:
            engine = self._require()
            return list(self._timed("goodset", lambda: engine.good_setting(pickiness)))

    # ------------------------------------------------------------------ classic getters
    def getset(self) -> list:
        with self._lock:
            return self._require().settings_grid.tolist()

    def getpar(self) -> list:
        with self._lock:
            return self._require().particles.tolist()

    def getcon(self) -> list:
        with self._lock:
            return list(self._require().constants)

    def getwgt(self) -> list:
        with self._lock:
            return self._require().weights.tolist()

    def getmean(self) -> list:
        with self._lock:
            return self._timed("getmean", self._require().mean).tolist()

    def getstd(self) -> list:
        with self._lock:
            return self._timed("getstd", self._require().std).tolist()

    def getcov(self) -> list:
        with self._lock:
            return np.atleast_2d(self._timed("getcov", self._require().covariance)).tolist()

    # ------------------------------------------------------------------ labelled views (WAMP)
    def statistic(self, kind: str) -> dict:
        """``{kind: value, "parameters", "n_measurements", "run_id"}`` for mean, std or cov."""
        getters = {"mean": self.getmean, "std": self.getstd, "cov": self.getcov}
        if kind not in getters:
            raise ValueError(f"unknown statistic {brief(kind)}")
        with self._lock:
            value = getters[kind]()
            e = self._require()
            return {kind: value, "parameters": list(e.parameter_names),
                    "n_measurements": e.n_measurements, "run_id": self.run_id}

    def constants(self) -> dict:
        """``{"values": [...], "names": [...]}`` of the model constants."""
        with self._lock:
            e = self._require()
            return {"values": list(e.constants),
                    "names": list(e.model_spec.constants) if e.model_spec else []}

    def window(self, what: str, offset: int = 0, max_items: int = DEFAULT_MAX_ITEMS) -> dict:
        """A window of ``particles``, ``weights`` or ``settings`` holding at most ``max_items`` values.

        Returns:
            ``{"values", "offset", "count", "total", "truncated"}``: ``values`` is a list (weights)
            or one list per row (particles, settings) of columns ``offset .. offset+count-1``;
            ``total`` counts columns; ``truncated`` says more columns exist after this window.
        """
        if max_items < 1 or offset < 0:
            raise ValueError("max_items must be >= 1 and offset >= 0")
        with self._lock:
            e = self._require()
            if what == "weights":
                arr = e.posterior.weights[None, :]
            elif what == "particles":
                arr = e.particles
            elif what == "settings":
                arr = e.settings_grid
            else:
                raise ValueError(f"unknown view {brief(what)}")
            rows, total = arr.shape
            cols = max(1, max_items // rows)
            part = np.array(arr[:, offset:offset + cols])
        values = part[0].tolist() if what == "weights" else part.tolist()
        count = part.shape[1]
        return {"values": values, "offset": offset, "count": count, "total": total,
                "truncated": offset + count < total}


def _in_main_thread() -> bool:
    """True in the main thread (where an agent's reactor runs): the call is an inline one."""
    return threading.current_thread() is threading.main_thread()


class _BothLocks:
    """The service's lock and the store's, taken together without waiting (``newdat`` inline)."""

    def __init__(self, first: threading.RLock, second: threading.RLock) -> None:
        self.first, self.second = first, second

    def acquire(self, blocking: bool = True) -> bool:
        if not self.first.acquire(blocking=blocking):
            return False
        if not self.second.acquire(blocking=blocking):
            self.first.release()
            return False
        return True

    def release(self) -> None:
        self.second.release()
        self.first.release()
