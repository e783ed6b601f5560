"""What a test does when a part it needs is missing: skip on a developer's machine, fail in CI.

CI (``CI=true``, as `.ci/run` is run) installs every part the tests need (`make test`: the venvs,
ocs 0.12.1, crossbar; `.ci/run`: Chromium, influxd), so a test that would skip there checks
nothing: it fails instead, naming what is missing.
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["in_ci", "unavailable", "need_module"]


def in_ci() -> bool:
    """True when the tests run in CI (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(why: str) -> NoReturn:
    """Fail in CI, skip elsewhere, with ``why``."""
    if in_ci():
        pytest.fail(f"{why} (CI installs it: `make test`, `.ci/run`)")
    pytest.skip(why)


def need_module(name: str) -> ModuleType:
    """``import name`` (a test-only peer such as ``ocs``), or :func:`unavailable`."""
    try:
        with warnings.catch_warnings():  # a peer's own import-time deprecations are not ours
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"this test needs {name} ({exc}; pip install -e '.[test,router]')")
