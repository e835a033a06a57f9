"""Per-metric controls on the alarm decision: direction, sensitivity, minimum change, hard bounds, zeros.

Users know things about a metric no history shows: a null percentage above 5 is always wrong, a
drop in revenue matters and a rise does not, a change of 3 rows is never worth a message. A control
names the metrics it applies to with an fnmatch pattern on the series name ("sales.orders/row_count")
or on its metric part ("null_pct", "*_pct"); the first matching control of the list applies
(docs/architecture.md §6). Controls act in the scorer's decision, after the model's alarm rules:
hard bounds and zeros force an alert, direction and minimum change suppress one, sensitivity moves
the threshold.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where arrays are: the configuration loads without it
    import numpy as np

DIRECTIONS = ("both", "up", "down")

#: why a control changed a point's decision (0: it did not); the texts go into the reasons
WHY = (
    "",
    "above the hard maximum {bound} of the metric's controls",
    "below the hard minimum {bound} of the metric's controls",
    "the value is zero, which the metric's controls always alert on",
    "below the minimum change of the metric's controls",
    "the metric's controls alert only on {direction}",
)
FORCED_MAX, FORCED_MIN, FORCED_ZERO, SMALL_CHANGE, WRONG_DIRECTION = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Control:
    """One control (see module docstring); ``sensitivity`` > 1 alerts earlier, < 1 later."""

    metric: str
    direction: str = "both"
    sensitivity: float = 1.0
    min_abs_change: float = 0.0
    min_rel_change: float = 0.0
    min: float | None = None
    max: float | None = None
    zero_alerts: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"control {self.metric!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.sensitivity <= 0 or self.min_abs_change < 0 or self.min_rel_change < 0:
            raise ValueError(f"control {self.metric!r}: sensitivity > 0 and minimum changes >= 0 required")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Control) -> Control:
        if isinstance(data, Control):
            return data
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown or "metric" not in data:
            raise ValueError(
                f"control {dict(data)!r}: unknown key(s) {unknown} or no 'metric'; allowed: {sorted(names)}"
            )
        return cls(**dict(data))

    def matches(self, series: str) -> bool:
        return fnmatch.fnmatchcase(series, self.metric) or fnmatch.fnmatchcase(series.rsplit("/", 1)[-1], self.metric)


def control_index(controls: Sequence[Control], series: np.ndarray) -> np.ndarray:
    """Index of the first control matching each series name (-1: none); one match per distinct name."""
    import numpy as np

    names, inv = np.unique(series.astype(str), return_inverse=True)
    first = np.array([next((i for i, c in enumerate(controls) if c.matches(n)), -1) for n in names], dtype=np.int64)
    return first[inv] if len(series) else np.zeros(0, dtype=np.int64)


@dataclass
class Controlled:
    """The decision after the controls, the sensitivity-adjusted score it used, and why it changed."""

    is_anomaly: np.ndarray
    why: np.ndarray
    control: np.ndarray


def apply_controls(
    controls: Sequence[Control],
    series: np.ndarray,
    value: np.ndarray,
    expected: np.ndarray,
    is_anomaly: np.ndarray,
) -> Controlled:
    """The alarm decision with the controls applied (sensitivity is applied before, see ``sensitivity``)."""
    import numpy as np

    idx = control_index(controls, series) if controls else np.full(len(series), -1)
    out = is_anomaly.copy()
    why = np.zeros(len(series), dtype=np.int8)
    dev = value - expected
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(dev) / np.maximum(np.abs(expected), 1e-9)
    for i, c in enumerate(controls):
        at = idx == i
        if not at.any():
            continue
        small = at & out & ((np.abs(dev) < c.min_abs_change) | (rel < c.min_rel_change))
        wrong = at & out & ((c.direction == "up") & (dev < 0) | (c.direction == "down") & (dev > 0))
        why[small], out[small] = SMALL_CHANGE, False
        why[wrong & ~small], out[wrong] = WRONG_DIRECTION, False
        for code, hit in (
            (FORCED_ZERO, at & (value == 0) if c.zero_alerts else None),
            (FORCED_MIN, at & (value < c.min) if c.min is not None else None),
            (FORCED_MAX, at & (value > c.max) if c.max is not None else None),
        ):
            if hit is not None:
                why[hit], out[hit] = code, True
    return Controlled(is_anomaly=out, why=why, control=idx)


def sensitivity(controls: Sequence[Control], series: np.ndarray) -> np.ndarray:
    """Each point's odds factor on its score (1 where no control matches)."""
    import numpy as np

    idx = control_index(controls, series) if controls else np.full(len(series), -1)
    factors = np.array([c.sensitivity for c in controls] + [1.0])
    return factors[idx]


def why_text(control: Control | None, why: int) -> str:
    """The words for a ``why`` code of ``control``."""
    if control is None or why == 0:
        return ""
    bound = control.max if why == FORCED_MAX else control.min
    direction = "rises" if control.direction == "up" else "drops"
    return WHY[why].format(bound=bound, direction=direction)


__all__ = ["Control", "Controlled", "apply_controls", "control_index", "sensitivity", "why_text"]
