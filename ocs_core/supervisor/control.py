"""Requests to a running supervisor: start, stop or restart some of its instances.

``ocs-core up|down|restart INSTANCE`` on a running site writes one JSON request into
``<run-dir>/requests/`` (atomically: a partial file is renamed into place) and waits for the
supervisor's reply file beside it. The supervisor looks for requests on every tick (0.1 s),
acts, and writes ``<id>.reply`` with ``{"ok": bool, "lines": [...]}``. Only the owner of the run
directory can write there; a request names instance-ids and one of :data:`ACTIONS`, nothing else
is read from it.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["ACTIONS", "REQUEST_DIR", "ControlError", "send_request", "take_requests", "write_reply"]

ACTIONS = ("up", "down", "restart")
REQUEST_DIR = "requests"
_MAX_REQUEST = 64 * 1024


class ControlError(RuntimeError):
    """The supervisor did not answer a request in time."""


def _dir(run_dir: Path) -> Path:
    return Path(run_dir) / REQUEST_DIR


def send_request(run_dir: Path, action: str, instances: list[str], timeout: float = 15.0) -> dict[str, Any]:
    """Ask the supervisor of ``run_dir`` to act; return its reply ``{"ok", "lines"}``.

    Raises:
        ControlError: no reply within ``timeout`` seconds (the request is withdrawn).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    folder = _dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    request_id = uuid.uuid4().hex
    partial = folder / f"{request_id}.partial"
    partial.write_text(json.dumps({"action": action, "instances": list(instances)}), encoding="utf-8")
    os.replace(partial, folder / f"{request_id}.json")
    reply_path = folder / f"{request_id}.reply"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reply_path.exists():
            try:
                reply = json.loads(reply_path.read_text(encoding="utf-8"))
            except ValueError:
                reply = None
            if isinstance(reply, dict):
                reply_path.unlink(missing_ok=True)
                return reply
        time.sleep(0.05)
    (folder / f"{request_id}.json").unlink(missing_ok=True)
    raise ControlError(f"the supervisor did not answer within {timeout:g} s")


def take_requests(run_dir: Path) -> list[tuple[str, str, list[str]]]:
    """Pending well-formed requests as ``(id, action, instances)``, removed from the folder;
    malformed ones are answered with an error and removed."""
    folder = _dir(run_dir)
    try:
        names = sorted(p for p in os.listdir(folder) if p.endswith(".json"))
    except OSError:
        return []
    found = []
    for name in names:
        path = folder / name
        request_id = name[:-len(".json")]
        try:
            if path.stat().st_size > _MAX_REQUEST:
                raise ValueError("request too large")
            doc = json.loads(path.read_text(encoding="utf-8"))
            action, instances = doc["action"], doc["instances"]
            if action not in ACTIONS or not isinstance(instances, list) \
                    or not all(isinstance(i, str) for i in instances):
                raise ValueError("expected an action of up/down/restart and a list of instance-ids")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            path.unlink(missing_ok=True)
            write_reply(run_dir, request_id, False, [f"bad request: {exc}"])
            continue
        path.unlink(missing_ok=True)
        found.append((request_id, action, instances))
    return found


def write_reply(run_dir: Path, request_id: str, ok: bool, lines: list[str]) -> None:
    """Answer a request (atomically)."""
    folder = _dir(run_dir)
    partial = folder / f"{request_id}.reply-partial"
    partial.write_text(json.dumps({"ok": ok, "lines": lines}), encoding="utf-8")
    os.replace(partial, folder / f"{request_id}.reply")
