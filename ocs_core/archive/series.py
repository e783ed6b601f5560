"""One field's archived data over a time range, as numpy arrays (raw, or per-bucket mean/min/max)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Series", "select_fields"]


@dataclass
class Series:
    """Timestamps ``t`` (float seconds) and ``value``; ``min``/``max`` too when downsampled.

    Downsampled, ``t`` is each bucket's centre and ``value`` its mean; empty buckets are left out.
    Numeric fields are float64 (NaN and infinities as recorded); string fields are object arrays.
    """

    t: np.ndarray
    value: np.ndarray
    min: np.ndarray | None = None
    max: np.ndarray | None = None

    @property
    def downsampled(self) -> bool:
        """Whether the values are bucket means (with ``min`` and ``max``)."""
        return self.min is not None

    def __len__(self) -> int:
        return len(self.t)

    def to_json(self) -> dict[str, Any]:
        """Lists for a JSON reply (non-finite numbers become null)."""
        out: dict[str, Any] = {"t": self.t.tolist(), "value": _listed(self.value)}
        if self.min is not None:
            out.update(min=_listed(self.min), max=_listed(self.max))
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Series":
        """The inverse of :meth:`to_json` (null becomes NaN)."""
        def arr(v):
            if v is None:
                return None
            if any(isinstance(x, str) for x in v):
                return np.asarray(v, dtype=object)
            return np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
        return cls(np.asarray(doc["t"], dtype=np.float64), arr(doc["value"]), arr(doc.get("min")),
                   arr(doc.get("max")))


def _listed(values: np.ndarray) -> list:
    if values.dtype == object:
        return list(values)
    return [float(v) if np.isfinite(v) else None for v in values]


def select_fields(series: dict[tuple[str, str, str], Any], address: str, feed: str,
                  fields: Any) -> dict[str, Any]:
    """``{field: handle}`` of a feed's archived fields (all of them when ``fields`` is None).

    ``series`` maps ``(address, feed, field)`` to whatever the store needs to read that field.
    Raises KeyError naming what is archived when the feed or a field is unknown.
    """
    known = {k: v for (a, f, k), v in series.items() if a == address and f == feed}
    if not known:
        raise KeyError(f"nothing archived for {address} feed {feed!r}; archived: "
                       f"{sorted({a + '.' + f for a, f, _ in series})}")
    wanted = sorted(known) if fields is None else list(fields)
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise KeyError(f"{address}.{feed} has no field(s) {unknown}; it has {sorted(known)}")
    return {f: known[f] for f in wanted}
