"""docs/archive.md's Python example runs, on an archive like the one `make demo` leaves."""
import re
import time
from pathlib import Path

import numpy as np

from agents.archive.events import parse_event
from agents.archive.sqlite_store import SQLiteStore
from agents.archive.store import Batch

DOC = Path(__file__).resolve().parent.parent / "docs" / "archive.md"


def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    now = time.time()
    store = SQLiteStore(tmp_path / "data" / "archive.sqlite")
    ts = (now - 60 + np.arange(30)).tolist()
    event = [{"posterior": {"block_name": "posterior", "timestamps": ts,
                            "data": {"mean_x0": np.linspace(2, 2.5, 30).tolist(),
                                     "std_x0": np.linspace(0.5, 0.01, 30).tolist()}}},
             {"agent_address": "observatory.obe-1", "feed_name": "posterior", "session_id": "1.0",
              "record": True, "seq": 1, "agent_class": "OBEAgent"}]
    store.write(Batch([parse_event(event)]))
    store.close()
    monkeypatch.chdir(tmp_path)
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    exec(compile(code, str(DOC), "exec"), {})  # our own documentation, not network input
    out = capsys.readouterr().out
    assert "True" in out and "[]" in out
    assert (tmp_path / "posterior.csv").read_text().startswith("field,timestamp,time_utc,value,min,max")
    assert (tmp_path / "posterior.png").stat().st_size > 5000
