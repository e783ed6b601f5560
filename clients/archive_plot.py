"""A PNG of a :class:`~clients.archive.History`: one panel per field, UTC time axis (matplotlib)."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

__all__ = ["plot_history"]


def plot_history(h: Any, path: str | os.PathLike) -> None:
    """Draw ``h`` to ``path``. Raises RuntimeError when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'ocs-core[plot]'") from None

    names = h.fields or ["(no fields)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names) + 0.8), sharex=True,
                             squeeze=False)

    def dates(ts):
        return [datetime.fromtimestamp(float(t), tz=timezone.utc) for t in ts]

    for ax, name in zip(axes[:, 0], names):
        s = h.series.get(name)
        if s is not None and len(s.t) and s.value.dtype != object:
            x = dates(s.t)
            if s.downsampled:
                ax.fill_between(x, s.min, s.max, color="tab:blue", alpha=0.25, linewidth=0,
                                label="min-max")
            ax.plot(x, s.value, color="tab:blue", linewidth=0.8,
                    label="mean" if s.downsampled else None)
        for g in h.gaps_in_range():
            lo = g.get("t_before") if g.get("t_before") is not None else h.start
            hi = g.get("t_after") if g.get("t_after") is not None else h.stop
            ax.axvspan(*dates([max(lo, h.start), min(hi, h.stop)]), color="tab:red", alpha=0.15)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
    axes[-1, 0].set_xlabel("time (UTC)")
    axes[0, 0].set_title(f"{h.address} {h.feed}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
