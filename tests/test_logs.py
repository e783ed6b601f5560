"""ocs_core.runtime.logs: the fast line formatter agrees with Twisted's formatEvent."""
from __future__ import annotations

import pytest
from twisted.logger import formatEvent

from ocs_core.runtime.logs import _format


class Thing:
    name = "thing"

    def __repr__(self) -> str:
        return "<Thing>"


@pytest.mark.parametrize("event", [
    {"log_format": "{op}:{sid} {text}", "op": "delay_task", "sid": 3, "text": 'Status is now "done".'},
    {"log_format": "{x!r} and {x.name} and {d[k]}", "x": Thing(), "d": {"k": 1.5}},
    {"log_format": "no fields at all"},
    {"log_format": "{missing} key"},
    {"log_format": "called {f()}", "f": lambda: 42},
    {"log_format": "{n:.2f} {{literal}}", "n": 3.14159},
    {"log_format": None, "log_text": "ignored"},
    {"message": ("no format",)},
])
def test_format_matches_twisted(event):
    assert _format(event) == formatEvent(event)
