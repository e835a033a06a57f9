"""A run's scores as the notifier reads them: typed rows from the scorer's Parquet, with pyarrow alone.

The notifier needs a few columns of the anomalies and the series/time/flag of the rest, to decide what
to mail and to write it; it never computes over a frame. Reading the Parquet table into plain rows
keeps pandas (and numpy) out of its artifact, which is what lets it deploy as a zip instead of an image
(``make package SERVICE=notifier``).

Timestamps become naive UTC :class:`datetime.datetime`s (microseconds: load times have no finer
resolution), the form the alert memory and the label keys use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

REQUIRED = ("series", "group", "timestamp", "value", "score", "is_anomaly", "severity", "expected_low", "expected_high")


@dataclass(frozen=True)
class ScoredPoint:
    """One scored point of a run (a row of ``scores.parquet``)."""

    series: str
    group: str
    timestamp: datetime  # naive UTC
    value: float | None
    score: float
    is_anomaly: bool
    severity: str  # "" for a normal point
    expected_low: float | None
    expected_high: float | None
    reasons: str = ""
    ongoing_since: datetime | None = None  # set by the alert memory when the point continues an incident


def _naive_us(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as naive UTC microseconds, so ``to_pylist`` gives datetimes with or without pandas."""
    import pyarrow as pa

    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise ValueError(f"scores column 'timestamp' has type {kind}, expected a timestamp: re-run the scorer")
    return column.cast(pa.timestamp("us"), safe=False)  # an aware column keeps its UTC instant


def read_points(table: pa.Table) -> list[ScoredPoint]:
    """The rows of a scores table; a missing column is named (the file is not what the scorer writes)."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"scores file lacks column(s) {', '.join(missing)}: it was not written by dqad's scorer")
    cols = {name: table.column(name).to_pylist() for name in REQUIRED if name != "timestamp"}
    times = _naive_us(table.column("timestamp")).to_pylist()
    reasons = table.column("reasons").to_pylist() if "reasons" in table.column_names else [""] * table.num_rows
    return [
        ScoredPoint(
            series=str(series),
            group=str(group),
            timestamp=ts,
            value=value,
            score=float(score) if score is not None else 0.0,
            is_anomaly=bool(anom),
            severity=str(sev or ""),
            expected_low=low,
            expected_high=high,
            reasons=str(why or ""),
        )
        for series, group, ts, value, score, anom, sev, low, high, why in zip(
            cols["series"], cols["group"], times, cols["value"], cols["score"], cols["is_anomaly"],
            cols["severity"], cols["expected_low"], cols["expected_high"], reasons, strict=True,
        )
    ]  # fmt: skip
