"""One field's archived data over a time range, as numpy arrays (raw, or per-bucket mean/min/max)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Series"]


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
