"""adaptive_scan: the OBE agent drives an instrument agent's measure Task, one setting at a time.

The loop (optset or goodset -> instrument ``measure`` Task -> newdat) runs in the reactor; every
engine call goes to a worker thread through ``run_in_thread``. The parsing of the instrument's
reply and the stop rule are pure functions, tested without a network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ocs_core.runtime.codes import OK, TIMEOUT
from ocs_core.runtime.text import brief

__all__ = ["ScanError", "ScanPlan", "measure_params", "parse_measurement", "run_scan"]


class ScanError(Exception):
    """The instrument call failed; the text says how (the run is left as it was)."""


@dataclass
class ScanPlan:
    """What one adaptive_scan does (the Process's checked parameters)."""

    instrument: str           #: the instrument agent's address
    task: str = "measure"
    setting_param: str = "x"
    value_key: str = "value"
    sigma: float | None = None
    sigma_key: str = "sigma"
    max_steps: int | None = None
    target_std: float | None = None
    target_param: str | None = None
    selection: str = "optimal"
    pickiness: float | None = None
    measure_timeout: float = 60.0

    def check(self, parameters: list[str]) -> None:
        """Raise ValueError unless there is a stop rule that fits the run's parameters."""
        if self.max_steps is None and self.target_std is None:
            raise ValueError("give a stop rule: max_steps and/or target_std with target_param")
        if (self.target_std is None) != (self.target_param is None):
            raise ValueError("target_std and target_param go together")
        if self.target_param is not None and self.target_param not in parameters:
            raise ValueError(f"target_param {self.target_param!r} is not a parameter of the run "
                             f"({', '.join(parameters)})")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def stop_reason(self, steps: int, result: dict | None) -> str | None:
        """Why the scan should end now (None: go on)."""
        if self.max_steps is not None and steps >= self.max_steps:
            return f"reached max_steps ({self.max_steps})"
        if self.target_std is not None and result is not None:
            std = result["std"][result["parameters"].index(self.target_param)]
            if std <= self.target_std:
                return f"std of {self.target_param} is {std:.4g} <= target {self.target_std:g}"
        return None


def measure_params(plan: ScanPlan, setting: list[float]) -> dict:
    """The instrument Task's parameters for ``setting`` (a list for several knobs)."""
    names = [n.strip() for n in plan.setting_param.split(",")]
    if len(names) == len(setting) and len(names) > 1:
        return dict(zip(names, setting))
    return {names[0]: setting[0] if len(setting) == 1 else list(setting)}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_measurement(plan: ScanPlan, reply: Any) -> tuple[Any, float | list]:
    """``(value, sigma)`` from the measure Task's final ``[code, message, session]`` reply."""
    try:
        code, message, session = reply
    except (TypeError, ValueError):
        raise ScanError(f"unexpected reply {brief(reply)}") from None
    if code == TIMEOUT:
        raise ScanError(f"no result within {plan.measure_timeout:g} s")
    if code != OK:
        raise ScanError(f"wait refused: {message}")
    if not isinstance(session, dict) or session.get("status") != "done":
        raise ScanError(f"the Task did not finish: {message}")
    if not session.get("success"):
        msgs = session.get("messages") or []
        last = msgs[-2][1] if len(msgs) >= 2 else message
        raise ScanError(f"the Task failed: {last}")
    data = session.get("data") or {}
    if not isinstance(data, dict) or plan.value_key not in data:
        raise ScanError(f"the Task's session data has no {plan.value_key!r} (got {brief(data, 200)})")
    value = data[plan.value_key]
    if not (_finite(value) or (isinstance(value, list) and value and all(map(_finite, value)))):
        raise ScanError(f"{plan.value_key!r} = {brief(value)} is not a finite number")
    sigma = plan.sigma if plan.sigma is not None else data.get(plan.sigma_key)
    if sigma is None:
        raise ScanError(f"no sigma: pass sigma= or have the instrument report data[{plan.sigma_key!r}]")
    sig_list = sigma if isinstance(sigma, list) else [sigma]
    if not sig_list or not all(_finite(s) and s > 0 for s in sig_list):
        raise ScanError(f"sigma {brief(sigma)} is not a positive number")
    return value, sigma


async def run_scan(plan: ScanPlan, service: Any, client: Any,
                   run_in_thread: Callable[..., Awaitable[Any]],
                   stopping: Callable[[], bool], publish: Callable[[dict], None]) -> tuple[bool, str]:
    """The scan loop; returns the Process's ``(ok, message)``.

    Args:
        plan: what to do. service: the :class:`~agents.obe.service.OBEService`.
        client: a TaskClient for the instrument's measure Task.
        run_in_thread: ``deferToThread``-like. stopping: True once stop was requested.
        publish: called with the progress dict after every step.
    """
    steps, result = 0, None
    run_id = service.run_id
    while True:
        reason = "stopped on request" if stopping() else plan.stop_reason(steps, result)
        if reason is not None:
            n = result["n_measurements"] if result else "no new"
            return True, f"adaptive_scan: {reason} after {steps} step(s); run has {n} measurements"
        if plan.selection == "good":
            setting = await run_in_thread(service.goodset, plan.pickiness)
        else:
            setting = await run_in_thread(service.optset)
        try:
            try:
                reply = await client.start(measure_params(plan, setting))
            except Exception as exc:  # noqa: BLE001 - WAMP errors: no such agent, router away
                raise ScanError(f"could not start it: {getattr(exc, 'error', None) or exc}") from None
            if reply[0] != OK:
                raise ScanError(f"start refused: {reply[1]}")
            try:
                reply = await client.wait(timeout=plan.measure_timeout)
            except Exception as exc:  # noqa: BLE001
                raise ScanError(f"waiting failed: {getattr(exc, 'error', None) or exc}") from None
            value, sigma = parse_measurement(plan, reply)
        except ScanError as exc:
            return False, (f"adaptive_scan: {plan.instrument} {plan.task} failed at step {steps + 1} "
                           f"(setting {setting}): {exc}; the run is intact")
        if service.run_id != run_id:
            return False, (f"adaptive_scan: run {run_id} was replaced by run {service.run_id} during "
                           f"step {steps + 1}; the scan ends (the measurement was not applied)")
        try:
            result = await run_in_thread(service.newdat, setting, value, sigma)
        except ValueError as exc:
            return False, f"adaptive_scan: measurement at step {steps + 1} refused: {exc}"
        steps += 1
        names = result["parameters"]
        publish({"instrument": plan.instrument, "run_id": result["run_id"], "step": steps,
                 "max_steps": plan.max_steps, "n_measurements": result["n_measurements"],
                 "last_setting": setting, "last_value": value, "last_sigma": sigma,
                 "mean": dict(zip(names, result["mean"])), "std": dict(zip(names, result["std"])),
                 "target": None if plan.target_param is None else
                 {"param": plan.target_param, "std": plan.target_std}})
