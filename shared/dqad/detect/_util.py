"""Vectorised building blocks shared by the labeler, the features and the scorer.

Everything here works on numpy arrays already sorted by (group, time). Grouped rolling statistics
use one trick instead of ``groupby().rolling()`` (which is slow with many series): the sorted values
are laid out in one buffer with ``pad`` NaNs between groups, so a single pandas rolling pass never
mixes two groups (rolling statistics skip NaN), and no Python loop runs per series or per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

STANDARD_COLUMNS = ("series", "group", "timestamp", "value", "is_rerun", "load_delay_s")
DERIVED_COLUMNS = ("label", "label_source")


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of the canonical frame with the mandatory columns typed as the contract says.

    ``group`` defaults to ``series``; timestamps become tz-naive UTC datetime64[ns].
    """
    missing = [c for c in ("series", "timestamp", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"canonical frame is missing column(s): {', '.join(missing)}")
    out = frame.copy()
    out["series"] = out["series"].astype(str)
    if "group" not in out.columns:
        out["group"] = out["series"]
    else:
        out["group"] = out["group"].astype(object).where(out["group"].notna(), out["series"]).astype(str)
    ts = pd.to_datetime(out["timestamp"])
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    out["timestamp"] = ts.astype("datetime64[ns]")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    return out


def key_columns(frame: pd.DataFrame) -> list[str]:
    """The dataset's key/context columns carried verbatim (everything not standard or derived)."""
    return [c for c in frame.columns if c not in STANDARD_COLUMNS and c not in DERIVED_COLUMNS]


def group_starts(codes: np.ndarray) -> np.ndarray:
    """Start index of each run of equal codes (codes sorted)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


class Padded:
    """Layout of grouped, sorted data in one NaN-separated buffer (see module docstring)."""

    def __init__(self, codes: np.ndarray, pad: int) -> None:
        n = len(codes)
        starts = group_starts(codes)
        gid = np.zeros(n, dtype=np.int64)
        if n:
            gid[starts[1:]] = 1
            gid = np.cumsum(gid)
        self.pad = int(pad)
        self.n = n
        self.pos = np.arange(n, dtype=np.int64) + (gid + 1) * self.pad
        self.size = n + (len(starts) + 1) * self.pad
        self.gid = gid
        self.starts = starts

    def buffer(self, values: np.ndarray) -> np.ndarray:
        buf = np.full(self.size, np.nan)
        buf[self.pos] = values
        return buf

    def rolling(
        self,
        values: np.ndarray,
        window: int,
        stat: str,
        *,
        min_periods: int = 1,
        strictly_before: bool = True,
        center: bool = False,
        q: float = 0.5,
    ) -> np.ndarray:
        """Rolling statistic per group; `strictly_before` excludes the point itself (causal)."""
        if window > self.pad:
            raise ValueError("window larger than padding")
        r = pd.Series(self.buffer(values)).rolling(window, min_periods=min_periods, center=center)
        if stat == "median":
            res = r.median()
        elif stat == "quantile":
            res = r.quantile(q)
        elif stat == "mean":
            res = r.mean()
        elif stat == "sum":
            res = r.sum()
        elif stat == "count":
            res = r.count()
        elif stat == "max":
            res = r.max()
        elif stat == "min":
            res = r.min()
        else:
            raise ValueError(stat)
        arr = res.to_numpy()
        return arr[self.pos - 1] if strictly_before and not center else arr[self.pos]

    def shift(self, values: np.ndarray, k: int = 1) -> np.ndarray:
        """Value k rows earlier in the same group (NaN when there is none)."""
        buf = self.buffer(values)
        idx = self.pos - k
        return buf[idx]

    def ffill_before(self, values: np.ndarray) -> np.ndarray:
        """Last non-NaN value strictly before each row, within its group."""
        buf = pd.Series(self.buffer(values))
        # pads separate groups; ffill must not cross them, so fill within group ids
        gid_buf = np.full(self.size, -1, dtype=np.int64)
        gid_buf[self.pos] = self.gid
        shifted = buf.shift(1)
        gshift = pd.Series(gid_buf).shift(1).to_numpy()
        same = gshift == gid_buf
        shifted[~same] = np.nan
        filled = shifted.groupby(gid_buf).ffill().to_numpy()
        return filled[self.pos]

    def cumcount(self) -> np.ndarray:
        """Number of earlier rows in the same group."""
        return np.arange(self.n) - self.starts[self.gid] if self.n else np.zeros(0, dtype=np.int64)


def robust_scale(q25: np.ndarray, q75: np.ndarray, level: np.ndarray, rel_floor: float) -> np.ndarray:
    """IQR-based robust sigma with a floor relative to the level (and an absolute epsilon)."""
    s = (q75 - q25) / 1.349
    floor = np.maximum(np.abs(level) * rel_floor, 1e-9)
    return np.fmax(s, floor)


def month_end_flag(ts: pd.DatetimeIndex | pd.Series, days: int, holidays: Sequence[date] = ()) -> np.ndarray:
    """True on the last ``days`` business days (Mon-Fri, not a holiday) of each month.

    Closing/invoicing surges happen on business days, so a month's last Saturday is an ordinary
    Saturday, and a holiday on the 31st moves the surge to the 30th.
    """
    t = pd.DatetimeIndex(ts)
    if len(t) == 0 or days <= 0:
        return np.zeros(len(t), dtype=bool)
    d = t.normalize().to_numpy().astype("datetime64[D]")
    uniq, inv = np.unique(d, return_inverse=True)
    hol = np.array(sorted({np.datetime64(h, "D") for h in holidays}), dtype="datetime64[D]")
    month_last = (uniq.astype("datetime64[M]") + 1).astype("datetime64[D]")  # first day of next month
    is_bday = np.is_busday(uniq, holidays=hol)
    after = np.busday_count(uniq + 1, month_last, holidays=hol)
    flag = is_bday & (after < days)
    return flag[inv]


def holiday_flag(ts: pd.DatetimeIndex | pd.Series, holidays: Sequence[date]) -> np.ndarray:
    if not holidays:
        return np.zeros(len(ts), dtype=bool)
    t = pd.DatetimeIndex(ts).normalize()
    hol = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
    return np.asarray(t.isin(hol))


def step_seconds(ts_ns: np.ndarray, pad: Padded, window: int = 16) -> np.ndarray:
    """Typical spacing of a series before each point (rolling median of earlier steps), causal."""
    t = ts_ns.astype("float64") / 1e9
    prev = pad.shift(t, 1)
    step = t - prev
    med = pad.rolling(step, window, "median", min_periods=1, strictly_before=False)
    return med


def slot_codes(
    ts: pd.DatetimeIndex,
    step_s: np.ndarray,
    slots: Sequence[str],
    special: np.ndarray,
    holiday: np.ndarray,
) -> np.ndarray:
    """Seasonal slot of each point.

    Daily-or-coarser data: day of week ("dow") or day of month ("dom"); sub-daily data: time of day
    rounded to the series' step ("hour"). Special days get their own slots so that a holiday or a
    month-end surge is compared with earlier holidays / month ends, never with ordinary days.
    """
    daily = ~(step_s < 20 * 3600)  # NaN step (first point) counts as daily
    code = np.zeros(len(ts), dtype=np.int64)
    if "dow" in slots:
        base = np.asarray(ts.day_of_week, dtype=np.int64)
    elif "dom" in slots:
        base = np.asarray(ts.day, dtype=np.int64)
    else:
        base = np.zeros(len(ts), dtype=np.int64)
    code[daily] = base[daily]
    if "hour" in slots:
        minute = np.asarray(ts.hour * 60 + ts.minute, dtype=np.int64)
        step_min = np.clip(np.nan_to_num(step_s / 60.0, nan=60.0), 1, 1440)
        code_sub = 100 + np.floor(minute / step_min).astype(np.int64)
        code[~daily] = code_sub[~daily]
    if "month_end" in slots:
        code[special & daily] = 5000
    code[holiday & daily] = 6000
    return code
