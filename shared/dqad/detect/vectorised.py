"""Vectorised building blocks shared by the labeler, the features, the scorer and the backtest.

Everything here works on numpy arrays already sorted by (group, time). Grouped rolling statistics
use one trick instead of ``groupby().rolling()`` (which is slow with many series): the sorted values
are laid out in one buffer with ``pad`` NaNs between groups, so a single pandas rolling pass never
mixes two groups (rolling statistics skip NaN), and no Python loop runs per series or per row.

When only some rows need a statistic (the scorer needs windows ending at the new rows, not at every
row of history), :func:`window_quantiles` reads just those windows out of the same buffer with a
strided view and takes their order statistics with ``np.partition``: cost follows the rows asked
for, and the values equal pandas' rolling median/quantile (same order statistics, same formulas).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided, sliding_window_view

STANDARD_COLUMNS = ("series", "group", "timestamp", "value", "is_rerun", "load_delay_s")
#: a series whose points are at least this far apart (seconds) is daily data (or coarser): a
#: nightly load that runs a few hours early or late is still one load a day
DAILY_STEP_S = 20 * 3600
DAY_S = 86_400
DERIVED_COLUMNS = ("label", "label_source")
_STR = pd.Series([], dtype=str).dtype  # the dtype ``astype(str)`` gives


def _is_names(column: pd.Series) -> bool:
    """Strings as ``astype(str)`` gives them, or a Categorical of them with sorted, unique categories.

    The scorer hands its blocks over as such Categoricals (codes into the sorted names it read from
    Arrow dictionaries): factorising one, sorted, gives the codes its strings would give, so the
    features are the same, and no string of the history is materialised.
    """
    if column.dtype == _STR:
        return True
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return False
    names = column.dtype.categories
    return names.dtype == _STR and names.is_unique and names.is_monotonic_increasing


def _is_canonical(frame: pd.DataFrame) -> bool:
    """True when the mandatory columns already have the types ``normalise`` would give them
    (strings, or Categoricals that stand for them: see :func:`_is_names`)."""
    if "group" not in frame.columns:
        return False
    s, g = frame["series"], frame["group"]
    return (
        _is_names(s)
        and _is_names(g)
        and frame["timestamp"].dtype == np.dtype("datetime64[ns]")
        and frame["value"].dtype == np.float64
        and not g.hasnans
        and not s.hasnans
    )


def normalise(frame: pd.DataFrame, *, copy: bool = True) -> pd.DataFrame:
    """Return a copy of the canonical frame with the mandatory columns typed as the contract says.

    ``group`` defaults to ``series``; timestamps become tz-naive UTC datetime64[ns]. With
    ``copy=False`` a frame that is already canonical is returned as it is (the caller promises not
    to modify it): the scorer hands an already normalised million-row frame to the features, and
    copying it again would cost as much as reading it. Such a frame may hold ``series`` and
    ``group`` as Categoricals with sorted string categories (:func:`_is_names`).
    """
    missing = [c for c in ("series", "timestamp", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"canonical frame is missing column(s): {', '.join(missing)}")
    if not copy and _is_canonical(frame):
        return frame
    out = frame.copy()
    out["series"] = out["series"].astype(str)
    if "group" not in out.columns:
        out["group"] = out["series"]
    elif out["group"].hasnans or out["group"].dtype != _STR:
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

    def trailing_rate(self, flags: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
        """Share of ones among the valid (non-NaN) 0/1 ``flags`` in the ``width`` rows before each of ``rows``.

        pandas' rolling mean (``min_periods=1``) of such flags, strictly before the row, from integer
        cumulative counts over the unpadded arrays (exact, linear, no buffer).
        """
        valid = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(~np.isnan(flags), out=valid[1:])
        ones = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(flags == 1.0, out=ones[1:])
        first = np.maximum(rows - width, self.starts[self.gid[rows]])
        c = valid[rows] - valid[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, (ones[rows] - ones[first]) / c, np.nan)

    def cumcount(self) -> np.ndarray:
        """Number of earlier rows in the same group."""
        return np.arange(self.n) - self.starts[self.gid] if self.n else np.zeros(0, dtype=np.int64)


def window_quantiles(
    buf: np.ndarray,
    ends: np.ndarray,
    width: int,
    qs: Sequence[float],
    *,
    min_periods: int = 1,
    chunk: int = 1 << 15,
    stride: int = 1,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Quantiles (linear, NaN skipped) and counts of the windows ``buf[e - width + 1 : e + 1]``.

    The same numbers as ``pd.Series(buf).rolling(width, min_periods).quantile(q)[ends]`` (and
    ``.median()`` for q = 0.5), computed only at ``ends``. ``buf`` is a :class:`Padded` buffer, so a
    window never reaches into another group, and every ``e - width + 1`` must be >= 0. The windows
    are copied out in chunks and sorted row-wise (numpy's vectorised sort beats ``np.partition``
    at several ranks for these widths, and one sort serves every quantile); NaN sorts last, so with
    ``c`` valid values the order statistics are the first ``c`` positions of a row.

    With ``stride`` s, a window is every s-th value, ``buf[e - (width - 1) * s : e + 1 : s]``: the
    same slot of a series whose slots repeat every s points (a weekday in a daily series without
    gaps), read in place instead of from a copy of the values sorted by slot.
    """
    ends = np.asarray(ends, dtype=np.int64)
    m = len(ends)
    starts = ends - (width - 1) * stride
    if m and starts.min() < 0:
        raise ValueError("window reaches before the buffer (padding too small)")
    if stride != 1:
        step = buf.strides[0]
        view = as_strided(buf, (max(len(buf) - (width - 1) * stride, 0), width), (step, stride * step))
        counts = _strided_counts(buf, starts, ends, stride)
    else:
        view = sliding_window_view(buf, width)
        counts = _window_counts(buf, starts, ends, width)
    if m and counts[0] >= 0:
        # windows with too few values are NaN whatever they hold: only the others are sorted
        # (half of the rhythm medians' windows, whose slots' first points have few earlier ones)
        live = np.flatnonzero((counts >= max(min_periods, 1)) | (counts == width))
        if len(live) < m:
            sub, _ = _sorted_quantiles(view, starts[live], counts[live], width, qs, min_periods, chunk)
            outs = [np.full(m, np.nan) for _ in qs]
            for out, s in zip(outs, sub, strict=True):
                out[live] = s
            return outs, counts
    return _sorted_quantiles(view, starts, counts, width, qs, min_periods, chunk)


def _sorted_quantiles(
    view: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    width: int,
    qs: Sequence[float],
    min_periods: int,
    chunk: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`window_quantiles` of the windows ``view[starts]`` (rows of ``width`` values), sorting
    each; ``counts`` may be -1 (not counted yet, see :func:`_window_counts`), and is then filled in."""
    m = len(starts)
    outs = [np.full(m, np.nan) for _ in qs]

    def run(a: int) -> None:
        sl = slice(a, a + chunk)
        srt = view[starts[sl]]  # a fresh copy of the windows (a gather), sorted in place
        srt.sort(axis=1)
        c = counts[sl]
        if len(c) and c[0] < 0:  # not counted yet (see _window_counts)
            c[:] = np.count_nonzero(srt == srt, axis=1)  # NaN != NaN
        part = np.flatnonzero(c != width)  # windows with gaps (series starts, blanked labels): few
        whole = len(part) == len(c)  # every window has gaps (a slot's first points): no copies
        for out, q in zip(outs, qs, strict=True):
            o = out[sl]
            if not whole:
                o[:] = _order_stat(srt, width, q)  # full windows: the same ranks everywhere
            if len(part):
                cp = c if whole else c[part]
                val = _order_stat(srt, cp, q, rows=None if whole else part)
                o[part] = np.where(cp >= max(min_periods, 1), val, np.nan)

    _map_chunks(run, range(0, m, chunk))
    return outs, counts


def _window_counts(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Valid (non-NaN) values of each window ``buf[start : end + 1]``, or -1 where left to the caller.

    Where the windows cover much of the buffer (the seasonal and rhythm medians), a running count
    over the buffer answers them all with one pass and two gathers: counting the values of every
    sorted window was a fifth of the time. A few windows in a long buffer (a series' typical step)
    are cheaper to count where they are sorted.
    """
    if len(ends) * width < len(buf):
        return np.full(len(ends), -1, dtype=np.int64)
    valid = np.zeros(len(buf) + 1, dtype=np.int64)
    np.cumsum(buf == buf, out=valid[1:])  # NaN != NaN
    return valid[ends + 1] - valid[starts]


def _strided_counts(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, stride: int) -> np.ndarray:
    """Valid values of each window ``buf[start : end + 1 : stride]``, from one running count per
    residue of ``stride`` (the buffer as rows of ``stride`` values, summed down its columns)."""
    n = len(buf)
    valid = np.zeros((-(-n // stride) + 1) * stride, dtype=np.int32)  # a first row of zeros
    valid[stride : stride + n] = buf == buf  # NaN != NaN
    run = np.cumsum(valid.reshape(-1, stride), axis=0, dtype=np.int32).ravel()  # run[i + stride]: i, i - stride...
    return (run[ends + stride] - run[starts]).astype(np.int64)


_POOL: ThreadPoolExecutor | None = None


def _map_chunks(fn: Callable[[int], None], starts: range) -> None:
    """Run ``fn`` on each chunk start, on the process's CPUs when there are several chunks.

    numpy's gather and sort release the GIL, so the chunks of one statistic sort in parallel; the
    chunks write disjoint slices of the outputs.
    """
    global _POOL
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
    if workers < 2 or len(starts) < 2:
        for a in starts:
            fn(a)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dqad-windows")
    list(_POOL.map(fn, starts))


def _order_stat(srt: np.ndarray, c: np.ndarray | int, q: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Quantile ``q`` of rows whose first ``c`` values are sorted and valid, as pandas computes it.

    ``c`` is one count for all rows (column slices, no per-row indexing) or one count per row, of
    ``rows`` of ``srt`` when given (read in place: copying a chunk's partial windows cost as much
    as their order statistics).
    """
    last = srt.shape[1] - 1
    if np.ndim(c) == 0:
        c = int(c)
        if q == 0.5:  # pandas' rolling median averages the two middle values of an even count
            mid = min(c // 2, last)
            return (srt[:, mid] + srt[:, max(mid - 1, 0)]) / 2 if c % 2 == 0 else srt[:, mid]
        h = q * max(c - 1, 0)
        lo = int(h)
        if h == lo:
            return srt[:, lo]
        low = srt[:, lo]
        return low + (srt[:, min(lo + 1, last)] - low) * (h - lo)
    flat = np.ascontiguousarray(srt).reshape(-1)
    at = (np.arange(len(srt)) if rows is None else rows) * srt.shape[1]
    if q == 0.5:
        mid = np.minimum(c // 2, last)
        upper = flat[at + mid]
        lower = flat[at + np.maximum(mid - 1, 0)]
        return np.where(c % 2 == 0, (upper + lower) / 2, upper)
    position = q * np.maximum(c - 1, 0)
    below = position.astype(np.int64)
    frac = position - below
    low = flat[at + below]
    high = flat[at + np.minimum(below + 1, last)]
    return np.where(frac > 0, low + (high - low) * frac, low)


def series_time_order(codes: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
    """Stable order by (series, time).

    A stable sort by series alone is enough when each series is already in time order in the frame
    (the scorer's history tail followed by new loads: two sorted runs, which the sort merges in
    linear time); otherwise a full sort by (series, time).
    """
    if len(codes) < 2:
        return np.arange(len(codes))
    order = _order_of_runs(codes, ts_ns)
    if order is not None:
        return order
    order = np.argsort(codes, kind="stable")
    c, t = codes[order], ts_ns[order]
    if ((c[1:] != c[:-1]) | (t[1:] >= t[:-1])).all():
        return order
    return np.lexsort((ts_ns, codes))


def _order_of_runs(codes: np.ndarray, ts_ns: np.ndarray) -> np.ndarray | None:
    """:func:`series_time_order` of rows that come in a few time-ordered runs of one series each, else None.

    Histories are written a series at a time (a block is its history tail, series after series,
    and then the new loads), so the stable sort by series is a stable sort of the runs, and the
    result is put together from them without sorting or gathering the rows: on a history of
    millions of rows the argsort and the checks on its gathered copies were a tenth of the scorer.
    """
    n = len(codes)
    change = codes[1:] != codes[:-1]
    starts = np.flatnonzero(np.r_[True, change])
    if len(starts) > n // 4 or not (change | (ts_ns[1:] >= ts_ns[:-1])).all():
        return None
    ends = np.r_[starts[1:], n] - 1  # inclusive
    runs = np.argsort(codes[starts], kind="stable")
    first, last = starts[runs], ends[runs]
    same = codes[first[1:]] == codes[first[:-1]]  # consecutive runs of one series must stay in time order
    if (same & (ts_ns[first[1:]] < ts_ns[last[:-1]])).any():
        return None
    # each run's positions continue the previous run's: a step of one, and a jump at every run start
    step = np.ones(n, dtype=np.int64)
    at = np.cumsum(ends[runs] - first + 1)[:-1]
    step[0] = first[0]
    step[at] = first[1:] - last[:-1]
    return np.cumsum(step, out=step)


#: normal-equivalent sigma of an inter-quantile range: IQR / 1.349, the 5-95 % range / 3.29
IQR_SIGMA = 1.349
TAIL_SIGMA = 3.29
#: the tail quantiles of :func:`robust_scale`'s second estimate, and the residuals a window needs
#: before they say anything (below ten, the 5 % quantile is the minimum itself)
TAIL_QUANTILES = (0.05, 0.95)
TAIL_MIN_POINTS = 10


def robust_scale(
    q25: np.ndarray,
    q75: np.ndarray,
    level: np.ndarray,
    rel_floor: float,
    tails: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Robust sigma: the larger of the IQR's and the 5-95 % range's, floored relative to the level.

    Why two estimates: on a Gaussian series both give sigma, but on a series whose middle half is
    one value (a count that is 0 on 70 % of loads, a percentage stuck at 0 between bursts) the IQR
    is 0 and every ordinary burst would be "infinitely" unusual; the 5-95 % range (``tails``: its
    two quantiles) still sees how far ordinary values reach. It is also wider on heavy-tailed sums,
    whose IQR understates their spread. Five per cent of a window is several points, so one past
    incident left in the window does not move it. The detector and the labeler give the tails for
    daily loads only: on sub-daily feeds a window is a day or two, a burst of a few hours fills its
    5 % tail, and the wider scale cost real feeds (nab-dev) a third of their recall.
    """
    s = (q75 - q25) / IQR_SIGMA
    if tails is not None:
        s = np.fmax(s, (tails[1] - tails[0]) / TAIL_SIGMA)
    floor = np.maximum(np.abs(level) * rel_floor, 1e-9)
    return np.fmax(s, floor)


#: a window whose values are zero at least this often holds an intermittent series (receipts on a
#: few days a month): its non-zero values are judged against the earlier non-zero values
INTERMITTENT_ZERO_SHARE = 0.5
#: earlier non-zero values needed before the intermittent model judges a non-zero value; with
#: fewer, a non-zero value is rare in itself and the ordinary (zero-centred) model judges it
INTERMITTENT_MIN_NONZERO = 3
#: the earlier non-zero values a burst is judged against (the last ones, at most this many), and
#: how far back they may lie, in windows of the zero share (the scorer's history tail keeps them)
INTERMITTENT_BURSTS = 20
INTERMITTENT_HORIZON_WINDOWS = 4
#: the quantiles of the earlier non-zero values :func:`intermittent_baseline` needs, in its order
INTERMITTENT_QUANTILES = (0.5, 0.25, 0.75, *TAIL_QUANTILES, 0.0, 1.0)
#: expected range of n standard normal draws, in sigmas, for n = 0 .. TAIL_MIN_POINTS - 1 (the
#: control-chart constant d2; 0 and 1 draws have no range): a sigma from few points' range
_RANGE_SIGMAS = np.array([np.nan, np.nan, 1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970])


def intermittent_baseline(
    value: np.ndarray,
    zero_share: np.ndarray,
    nonzero_quantiles: Sequence[np.ndarray],
    nonzero_count: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
    rel_floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected value and scale of an intermittent series, where it is one; else the ones given.

    Why: in a series that is zero on most loads, the window's quantiles are zero, its scale
    collapses to the floor and every ordinary non-zero load (a burst of receipts of the usual size)
    is "infinitely" unusual, and its metrics, rising together, look like a consensus incident. Such
    a series is a mixture, and each part is judged by its own kind: a zero is ordinary (zeros are
    most of the window), a non-zero value is compared with the earlier non-zero values (their
    median, and the robust scale of their quartiles and 5-95 % range, or of their range while
    they are fewer than ten). ``nonzero_quantiles`` are
    those values' :data:`INTERMITTENT_QUANTILES` over the same windows as ``zero_share``. Returns
    ``(expected, scale, applies)``; where ``applies``, a zero value's expected value is 0 (with the
    non-zero values' scale around it).
    """
    med, q1, q3, lo, hi, least, most = nonzero_quantiles
    applies = (zero_share >= INTERMITTENT_ZERO_SHARE) & (nonzero_count >= INTERMITTENT_MIN_NONZERO) & np.isfinite(value)
    if not applies.any():
        return expected, scale, applies
    few = nonzero_count < TAIL_MIN_POINTS
    nz_scale = robust_scale(q1, q3, med, rel_floor, tails=(np.where(few, np.nan, lo), np.where(few, np.nan, hi)))
    # a handful of bursts: their quartiles are two of them, often close by chance; their range,
    # in the sigmas n normal draws span, is the estimate quality control uses for small samples
    range_sigmas = _RANGE_SIGMAS[np.clip(nonzero_count, 0, TAIL_MIN_POINTS - 1)]
    nz_scale = np.where(few, np.fmax(nz_scale, (most - least) / range_sigmas), nz_scale)
    zero = value == 0
    expected = np.where(applies, np.where(zero, 0.0, med), expected)
    scale = np.where(applies, nz_scale, scale)
    return expected, scale, applies



def intermittent_at(
    pad: Padded,
    base: np.ndarray,
    rows: np.ndarray,
    value: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
    width: int,
    rel_floor: float,
    daily: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`intermittent_baseline` at ``rows`` of ``pad``'s (series, time) order.

    ``base`` holds every row's value (labelled anomalies blanked as NaN); ``value``, ``expected``
    and ``scale`` are the rows' own. A row's series is intermittent when the ``width`` values
    before it are mostly zero; its earlier bursts are the last :data:`INTERMITTENT_BURSTS` non-zero
    values within ``INTERMITTENT_HORIZON_WINDOWS * width`` rows before it, however many zeros lie
    between (a dry spell of two months must not make the next ordinary burst an incident). Only
    rows whose window is mostly zeros pay for more than one cumulative count. Returns
    ``(expected, scale, applies)`` for the rows.

    Daily loads only (``daily``, one flag per row), like the tails of :func:`robust_scale`: a
    table loaded now and then is a mixture of empty and ordinary loads, but a sub-daily feed that
    is mostly zero counts events (errors, key presses, spikes of a balancer), whose size is noise
    and whose rate is the signal; judged burst against burst, real feeds (nab-dev) raised three
    more false alarms and found nothing more.
    """
    applies = np.zeros(len(rows), dtype=bool)
    at_daily = np.flatnonzero(daily)  # the zero share is read at daily rows only (a 5-minute feed pays nothing)
    if not len(at_daily):
        return expected, scale, applies
    is_zero = (base == 0).astype(np.float64)
    is_zero[np.isnan(base)] = np.nan
    share = np.zeros(len(rows))
    share[at_daily] = np.nan_to_num(pad.trailing_rate(is_zero, rows[at_daily], width))
    mostly_zero = at_daily[share[at_daily] >= INTERMITTENT_ZERO_SHARE]
    if not len(mostly_zero):
        return expected, scale, applies
    qs, cnt = _earlier_bursts(pad, base, rows[mostly_zero], INTERMITTENT_HORIZON_WINDOWS * width)
    exp_i, scale_i, applies_i = intermittent_baseline(
        value[mostly_zero], share[mostly_zero], qs, cnt, expected[mostly_zero], scale[mostly_zero], rel_floor
    )
    expected, scale = expected.copy(), scale.copy()
    expected[mostly_zero], scale[mostly_zero], applies[mostly_zero] = exp_i, scale_i, applies_i
    return expected, scale, applies


def _earlier_bursts(
    pad: Padded, base: np.ndarray, rows: np.ndarray, horizon: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """:data:`INTERMITTENT_QUANTILES` and count of the last non-zero values of ``base`` before each row.

    The non-zero values of every series are laid out in a :class:`Padded` buffer of their own, so
    the last :data:`INTERMITTENT_BURSTS` of them before a row are one window of it, whatever the
    zeros between; those older than ``horizon`` rows are dropped.
    """
    bursts = INTERMITTENT_BURSTS
    nz = np.flatnonzero(np.isfinite(base) & (base != 0))
    before = np.searchsorted(nz, rows) - 1  # the last burst before each row, if in its series
    own = (before >= 0) & (pad.gid[nz[np.maximum(before, 0)]] == pad.gid[rows]) if len(nz) else before >= 0
    lay = Padded(pad.gid[nz], bursts + 1)
    ends = np.where(own, lay.pos[np.maximum(before, 0)] if len(nz) else 0, bursts - 1)  # else: padding only
    starts = ends - (bursts - 1)
    vals = sliding_window_view(lay.buffer(base[nz]), bursts)[starts]
    at = sliding_window_view(lay.buffer(nz.astype(np.float64)), bursts)[starts]
    srt = np.sort(np.where(at >= (rows - horizon)[:, None], vals, np.nan), axis=1)
    cnt = np.count_nonzero(np.isfinite(srt), axis=1)
    outs = [np.where(cnt > 0, _order_stat(srt, cnt, q), np.nan) for q in INTERMITTENT_QUANTILES]
    return outs, cnt


DAY_NS = DAY_S * 10**9
MINUTE_NS = 60 * 10**9
#: 1970-01-01, day 0 of datetime64, was a Thursday (Monday = 0)
_EPOCH_WEEKDAY = 3


def _naive_ns(t: pd.DatetimeIndex) -> np.ndarray | None:
    """Nanoseconds of tz-naive timestamps without NaT (whose calendar is plain integer arithmetic), else None."""
    if t.tz is not None or t.hasnans:
        return None
    if t.unit == "ns":
        return t.asi8
    try:  # pandas 3 parses strings to seconds
        return t.as_unit("ns").asi8
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        return None


def day_numbers(t: pd.DatetimeIndex) -> np.ndarray:
    """Days since 1970-01-01 of each timestamp (its calendar day, as ``normalize`` gives it)."""
    ns = _naive_ns(t)
    if ns is None:
        return t.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)
    return ns // DAY_NS


def weekdays(t: pd.DatetimeIndex) -> np.ndarray:
    """``day_of_week`` (Monday = 0) as int64, by arithmetic on the day numbers where it can be."""
    ns = _naive_ns(t)
    if ns is None:
        return np.asarray(t.day_of_week, dtype=np.int64)
    return (ns // DAY_NS + _EPOCH_WEEKDAY) % 7


def minute_of_day(t: pd.DatetimeIndex) -> np.ndarray:
    """``hour * 60 + minute`` as int64."""
    ns = _naive_ns(t)
    if ns is None:
        return np.asarray(t.hour * 60 + t.minute, dtype=np.int64)
    return (ns // MINUTE_NS) % 1440


def calendar_days(t: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Distinct calendar days (datetime64[D]) and each timestamp's index into them.

    Timestamps of a few months span a few hundred days: a table over that span replaces sorting a
    million timestamps (``np.unique``); the table may hold days nobody uses, which is harmless.
    """
    if t.tz is None and not t.hasnans:
        num = day_numbers(t)
        lo = int(num.min())
        span = int(num.max()) - lo + 1
        if span <= 4 * len(num) + 1000:
            return (np.arange(span) + lo).astype("datetime64[D]"), num - lo
    return np.unique(t.normalize().to_numpy().astype("datetime64[D]"), return_inverse=True)


def holiday_flag(ts: pd.DatetimeIndex | pd.Series, holidays: Sequence[date]) -> np.ndarray:
    if not holidays:
        return np.zeros(len(ts), dtype=bool)
    t = pd.DatetimeIndex(ts)
    if len(t) == 0 or t.tz is not None:
        aware = pd.DatetimeIndex(pd.to_datetime(list(holidays))).normalize()
        return np.asarray(t.normalize().isin(aware))
    uniq, inv = calendar_days(t)
    hol = np.array(sorted({np.datetime64(h, "D") for h in holidays}), dtype="datetime64[D]")
    return np.isin(uniq, hol)[inv]


def step_seconds(ts_ns: np.ndarray, pad: Padded, window: int = 16, exact: np.ndarray | None = None) -> np.ndarray:
    """Typical spacing of a series before each point (rolling median of earlier steps), causal.

    ``exact`` (a mask) limits the median to the rows that need its value. Elsewhere, where every
    step in the window is >= 20 hours (or missing), the row's own step stands in: both it and the median say
    "daily data", which is all the features ask of such rows (rows of sub-daily series always get
    the median: their seasonal slot depends on it). Rolling minima are linear; medians are not.
    """
    t = ts_ns.astype("float64") / 1e9
    step = np.empty_like(t)  # each row's own step; none at a series' first row
    step[1:] = t[1:] - t[:-1]
    step[pad.starts] = np.nan
    buf = pad.buffer(step)
    if exact is None:
        (med,), _ = window_quantiles(buf, pad.pos, window, [0.5])
        return med
    need = exact
    if (step < DAILY_STEP_S).any():  # NaN compares False; a daily history has no such step at all
        short = np.zeros(len(buf) + 1, dtype=np.int64)
        np.cumsum(buf < DAILY_STEP_S, out=short[1:])
        need = exact | (short[pad.pos + 1] - short[pad.pos + 1 - window] > 0)
    # a daily step of the window stands in, where every step in it is daily
    (step[need],), _ = window_quantiles(buf, pad.pos[need], window, [0.5])
    return step


def slot_codes(
    ts: pd.DatetimeIndex,
    step_s: np.ndarray,
    slots: Sequence[str],
) -> np.ndarray:
    """Seasonal slot of each point.

    Daily-or-coarser data: day of week ("dow") or day of month ("dom"); sub-daily data: time of day
    rounded to the series' step ("hour"). Calendar days (month ends, holidays) are not slots: their
    effects are learnt per series (dqad.detect.calendar_effects).
    """
    daily = ~(step_s < DAILY_STEP_S)  # NaN step (first point) counts as daily
    code = np.zeros(len(ts), dtype=np.int64)
    if "dow" in slots:
        base = weekdays(ts)
    elif "dom" in slots:
        base = np.asarray(ts.day, dtype=np.int64)
    else:
        base = np.zeros(len(ts), dtype=np.int64)
    code[daily] = base[daily]
    sub = np.flatnonzero(~daily)  # the time of day only where it is the slot (none in a daily history)
    if "hour" in slots and len(sub):
        minute = minute_of_day(ts[sub])
        step_min = np.clip(np.nan_to_num(step_s[sub] / 60.0, nan=60.0), 1, 1440)
        code[sub] = 100 + np.floor(minute / step_min).astype(np.int64)
    return code


#: the week parity of a day counts weeks from this Monday (any fixed Monday gives the same pairs)
_PARITY_EPOCH_DAYS = int(np.datetime64("2000-01-03", "D").astype(np.int64))


def rhythm_slots(ts: pd.DatetimeIndex, daily: np.ndarray, slot_base: np.ndarray) -> np.ndarray:
    """The second, longer seasonal slot of each point (beside :func:`slot_codes`' ordinary one).

    Sub-daily points: the time of day on the same weekday (a weekly rhythm). Daily points: the
    ordinary slot in the same week parity (a fortnightly rhythm: payroll every other Friday).
    The codes of the two kinds never collide, so a series that mixes cadences keeps them apart.
    """
    days = day_numbers(ts)
    parity = ((days - _PARITY_EPOCH_DAYS) // 7) % 2
    weekday = weekdays(ts)
    return np.where(daily, 30_000 + parity * 1000 + slot_base, 10_000 + weekday * 2000 + slot_base)


#: a series follows its second rhythm when that rhythm's typical residual is at most this share of
#: the ordinary slot's: a clear gain, not the luck of taking the smaller of two noisy numbers
RHYTHM_GAIN = 0.7
#: points of a slot with both residuals before its rhythm is judged
RHYTHM_MIN_POINTS = 4
#: earlier occurrences of a point's second-rhythm slot before that rhythm may explain the point
#: (the detector's; the labeler's centred windows count the point itself on top). The labeler
#: must accept a rhythm as early as the detector: labelling the third payroll Friday would blank
#: it out of the very baseline that makes the fourth one ordinary
RHYTHM_MIN_HISTORY = 2
#: the most a second rhythm's level may widen the ordinary slot's scale (see :func:`rhythm_scale`)
RHYTHM_MAX_WIDENING = 4.0


def rhythm_scale(
    scale: np.ndarray, ordinary_expected: np.ndarray, rhythm_expected: np.ndarray, daily: np.ndarray
) -> np.ndarray:
    """The scale of a point judged by its second rhythm: the ordinary scale carried to its level.

    Why: a warehouse metric's noise is proportional to its level, and the scale is measured on all
    of a series' points, most of them at the ordinary level; a payroll Friday at twice the level
    is twice as noisy, and judged with the ordinary scale its ordinary +10 % was a 5-sigma event.
    Only ever wider (a rhythm's low level keeps the ordinary scale: an empty load stays far off),
    and at most :data:`RHYTHM_MAX_WIDENING` times (a slot at 20 times the ordinary level is a
    different regime whose noise the ordinary days do not tell). Daily loads only (``daily``): a
    row count's noise grows with it, a sub-daily feed's (latency, temperature, CPU) does not, and
    its weekly slot, widened so, hid a real failure in nab-dev.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(rhythm_expected) / np.abs(ordinary_expected)
    ratio = np.clip(np.nan_to_num(ratio, nan=1.0, posinf=RHYTHM_MAX_WIDENING), 1.0, RHYTHM_MAX_WIDENING)
    return scale * np.where(daily, ratio, 1.0)


RHYTHM_WINDOW = 9


def prefers_rhythm(
    codes: np.ndarray,
    slots: np.ndarray,
    ordinary: np.ndarray,
    rhythm: np.ndarray,
    *,
    centred: bool = False,
    period: int = 0,
) -> np.ndarray:
    """Per element: whether its series' slot follows its second rhythm (:func:`rhythm_slots`).

    Decided per series and ordinary slot (a series' Fridays, its 02:00 loads) from the median
    absolute residual against each baseline over the slot's last ``RHYTHM_WINDOW`` points with
    both (strictly earlier, or centred for the labeler's hindsight), never per point: the smaller
    of two residuals is biased low, and a scale built from it would shrink the noise of every
    series, rhythmic or not. Elements must be sorted by (series, time).

    ``period`` (p > 0, not centred) says that each series' slots repeat every p elements, all
    distinct within p (consecutive days of a daily series slotted by weekday): a slot's earlier
    elements are then every p-th one, and no sort by slot is needed.
    """
    if not len(codes):
        return np.zeros(0, dtype=bool)
    if period and not centred:
        both = np.isfinite(ordinary) & np.isfinite(rhythm)
        by_series = Padded(codes, period * RHYTHM_WINDOW)
        o_med, r_med = (
            window_quantiles(
                by_series.buffer(np.where(both, np.abs(x), np.nan)), by_series.pos - period, RHYTHM_WINDOW, [0.5],
                min_periods=RHYTHM_MIN_POINTS, stride=period,
            )[0][0]
            for x in (ordinary, rhythm)
        )
        return np.asarray(r_med < RHYTHM_GAIN * o_med)
    key = codes.astype(np.int64) * 1_000_000 + slots
    order = np.argsort(key, kind="stable")  # time order is kept inside each (series, slot)
    both = np.isfinite(ordinary) & np.isfinite(rhythm)
    o = np.where(both, np.abs(ordinary), np.nan)[order]
    r = np.where(both, np.abs(rhythm), np.nan)[order]
    pad = Padded(key[order], RHYTHM_WINDOW + 1)
    if centred:
        o_med, r_med = (
            pad.rolling(x, RHYTHM_WINDOW, "median", min_periods=RHYTHM_MIN_POINTS, strictly_before=False, center=True)
            for x in (o, r)
        )
    else:  # the same medians as pandas' rolling ones, read at the rows only (see window_quantiles)
        o_med, r_med = (
            window_quantiles(pad.buffer(x), pad.pos - 1, RHYTHM_WINDOW, [0.5], min_periods=RHYTHM_MIN_POINTS)[0][0]
            for x in (o, r)
        )
    out = np.zeros(len(codes), dtype=bool)
    out[order] = r_med < RHYTHM_GAIN * o_med
    return out
