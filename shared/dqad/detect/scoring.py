"""Scorer: score, label, severity, expected range and reasons for the rows of new loads.

Only the tail of history each series needs is used (trailing windows + a few seasonal cycles +
earlier special days), so scoring cost grows with the new data, not with the whole history.
Scores are causal: a new point's features come from strictly earlier points (history and earlier
new loads) plus its own load's other metrics, so appending future loads never changes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dqad.detect.alarm import odds_scale
from dqad.detect.calendar_effects import CATEGORIES, WORDS
from dqad.detect.config import DetectorConfig
from dqad.detect.controls import Control, Controlled, apply_controls, sensitivity, why_text
from dqad.detect.features import DEVIATING_Z, STALE_REPEAT_RATE, compute, scale_points
from dqad.detect.model import ModelBundle
from dqad.detect.vectorised import (
    DAILY_STEP_S,
    DAY_S,
    DERIVED_COLUMNS,
    STANDARD_COLUMNS,
    group_starts,
    key_columns,
    normalise,
    series_time_order,
    window_quantiles,
)
from dqad.wording import fmt_value

OUTPUT_COLUMNS = ("score", "is_anomaly", "severity", "expected_low", "expected_high", "reasons")
SEVERITIES = ("", "low", "medium", "high")
DAY_NAMES = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def _history_tail(hist: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """The rows of history new points can depend on, sorted by (series, time) (see ``_tail_positions``)."""
    if len(hist) == 0:
        return hist
    codes, _ = pd.factorize(hist["series"], sort=True)
    ts = hist["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    return hist.iloc[_tail_positions(codes, ts, bundle.cfg)]


def _tail_positions(codes: np.ndarray, ts: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Positions of the history rows new points can depend on, in (series, time) order.

    ``codes`` number the series in sorted order of their names; ``ts`` is in nanoseconds.
    Per series: the last ``need`` points (trailing windows, ``seasonal_k + 1`` seasonal cycles and
    the scale window, where a cycle is 7 points for daily data and a day's worth of points for
    sub-daily data, judged from the median of the last 64 steps); daily series keep all their rows
    (an intermittent series' earlier bursts among them: dqad.detect.vectorised.intermittent_at).
    Positional slicing on the series-sorted frame: no per-series Python.
    """
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = series_time_order(codes, ts)
    keep = _tail_keep(group_starts(codes[order]), ts[order], cfg)
    return order if keep is None else order[keep]


def _tail_rows(codes: np.ndarray, ts: np.ndarray, cfg: DetectorConfig) -> np.ndarray | None:
    """``_tail_positions`` in ascending order, or None when they are every row.

    A history file holds each series in one run, in time order: the runs are then the groups
    ``_tail_keep`` works on, in the file's own order, and a daily history (kept whole) costs a few
    thousand steps, not a sort and copies of its millions of codes and timestamps.
    """
    n = len(codes)
    starts = group_starts(codes)
    if len(starts) == len(np.unique(codes[starts])) and (
        (codes[1:] != codes[:-1]) | (ts[1:] >= ts[:-1])
    ).all():
        keep = _tail_keep(starts, ts, cfg)
        return None if keep is None else np.flatnonzero(keep)
    positions = _tail_positions(codes, ts, cfg)
    return None if len(positions) == n else _in_file_order(positions, n)


#: the steps whose median tells a series' cadence in ``_tail_keep``
_TAIL_STEPS = 64


def _tail_keep(starts: np.ndarray, ts: np.ndarray, cfg: DetectorConfig) -> np.ndarray | None:
    """Which rows ``_tail_positions`` keeps, or None for all; rows are in groups of one series each,
    each in time order, beginning at ``starts``.

    The cadence is a median of the last steps of each series only: they are laid out a series per
    row of a small matrix, whose windows hold the same values the padded buffer of every row held.
    """
    n, m, w = len(ts), len(starts), _TAIL_STEPS
    if n == 0:
        return None
    last = np.r_[starts[1:], n] - 1
    at = last[:, None] - np.arange(w - 1, -1, -1)
    j = np.maximum(at, 1)
    step = np.where(at > starts[:, None], (ts[j] - ts[j - 1]) / 1e9, np.nan)  # the first row has no step
    (med_step,), _ = window_quantiles(step.ravel(), np.arange(m) * w + (w - 1), w, [0.5])
    med_step = np.nan_to_num(med_step, nan=float(DAY_S))
    daily = med_step >= DAILY_STEP_S
    # daily series keep their whole history (the dataset's history_days: a few hundred rows): the
    # ratio of an earlier calendar day to its ordinary baseline, which their calendar effects are
    # learnt from, needs the ordinary days before it, as it had at training time
    if daily.all():
        return None
    cycle = np.where(daily, 7, np.ceil(DAY_S / np.maximum(med_step, 1.0)))
    scale = scale_points(med_step, cfg.scale_window)  # the residuals that measure the noise
    need = np.maximum(max(*cfg.windows, 16), scale) + 2 + (cfg.seasonal_k + 1) * cycle + scale
    need = np.where(med_step < DAILY_STEP_S, need + (cfg.seasonal_k + 1) * 6 * cycle, need)  # weekly slot (week_z)
    sizes = np.diff(np.r_[starts, n])
    from_end = np.repeat(last, sizes) - np.arange(n)
    return (from_end < np.repeat(need, sizes)) | np.repeat(daily, sizes)


def _slot_name(dow: int, hour: int, minute: int, daily: bool, effect: int) -> str:
    if effect >= 0:
        return WORDS[CATEGORIES[effect]]
    if daily:
        return DAY_NAMES[dow]
    return f"{hour:02d}:{minute:02d}"


def _metric_words(series: str) -> str:
    return series.rsplit("/", 1)[-1].replace("_", " ")


#: intervals since the previous load, in typical steps, from which a late load is named
LONG_GAP = 1.9
#: load-delay z from which a slow or late load run is named
LATE_LOAD_Z = 4.0
#: weights ranking the reasons of a row (at most three are shown); the value's own deviation
#: weighs its |z|
MISSING_WEIGHT = 100.0
TOGETHER_WEIGHT = 50.0
STALE_WEIGHT = 40.0
GAP_WEIGHT = 20.0
DELAY_WEIGHT = 15.0
RERUN_WEIGHT = 5.0
REASONS_SHOWN = 3


@dataclass(frozen=True)
class _Flagged:
    """What the reasons of one anomalous row are written from (plain Python values)."""

    load: int
    value: float
    expected: float
    abs_z: float
    dow: int
    hour: int
    minute: int
    daily: bool
    effect: int
    same: float
    same_rate: float
    gap: float
    delay: float
    rerun: float


def _reasons(
    out: pd.DataFrame, feats: pd.DataFrame, aux: pd.DataFrame, anomalies: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Top drivers in words, only for anomalous rows.

    Anomalies are few, so a Python loop over them is affordable, but only over plain lists taken
    for those rows (no pandas row access), and the "metrics moved together" summary looks only at
    deviating rows of loads that hold an anomaly: nothing here walks every new row in Python.
    """
    rows = np.flatnonzero(anomalies)
    if not len(rows):
        return rows, []
    together = _moved_together(out, feats, aux, rows)
    return rows, [_row_text(r, together) for r in _flagged(out, feats, aux, rows)]


def _moved_together(out: pd.DataFrame, feats: pd.DataFrame, aux: pd.DataFrame, rows: np.ndarray) -> dict[int, str]:
    """Per load (group, timestamp) holding an anomaly: the sentence naming its metrics that deviate together."""
    z = feats["seas_z"].to_numpy(dtype=np.float64)
    load = aux["load"].to_numpy()
    dev = np.flatnonzero(np.abs(z) >= DEVIATING_Z)
    dev = dev[np.isin(load[dev], load[rows])]
    moved: dict[int, tuple[set[str], list[bool]]] = {}
    metric_names = out["series"].iloc[dev].tolist()
    for key, name, zz in zip(load[dev].tolist(), metric_names, z[dev].tolist(), strict=True):
        names, negs = moved.setdefault(key, (set(), []))
        names.add(_metric_words(name))
        negs.append(zz < 0)
    together: dict[int, str] = {}
    for key, (name_set, negs) in moved.items():
        if len(name_set) >= 2:
            ordered = sorted(name_set)
            verb = "dropped" if sum(negs) / len(negs) >= 0.5 else "rose"
            together[key] = f"{', '.join(ordered[:-1])} and {ordered[-1]} {verb} together in this load"
    return together


def _flagged(out: pd.DataFrame, feats: pd.DataFrame, aux: pd.DataFrame, rows: np.ndarray) -> list[_Flagged]:
    """The anomalous ``rows`` as records, taken column by column (one ``tolist`` per column)."""
    ts_ns = out["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    t_rows = pd.DatetimeIndex(ts_ns[rows].view("datetime64[ns]"))

    def col(frame: pd.DataFrame, name: str, dtype: type = np.float64) -> list[Any]:
        return frame[name].to_numpy(dtype=dtype)[rows].tolist()

    columns = (
        aux["load"].to_numpy()[rows].tolist(),
        col(out, "value"),
        col(aux, "expected"),
        np.abs(feats["seas_z"].to_numpy(dtype=np.float64)[rows]).tolist(),
        np.asarray(t_rows.day_of_week).tolist(),
        np.asarray(t_rows.hour).tolist(),
        np.asarray(t_rows.minute).tolist(),
        col(aux, "daily", bool),
        col(aux, "effect", np.int64),
        *(col(feats, c) for c in ("same_as_prev", "same_rate", "gap_ratio", "load_delay_z", "is_rerun")),
    )
    return [_Flagged(*values) for values in zip(*columns, strict=True)]


def _value_reason(r: _Flagged) -> tuple[float, str] | None:
    """The value against its expected one, in words (missing, or how far above/below), ranked by |z|."""
    if math.isnan(r.value):
        return MISSING_WEIGHT, "value is missing (NULL) where a number was expected"
    if not math.isfinite(r.expected):
        return None
    slot = _slot_name(r.dow, r.hour, r.minute, r.daily, r.effect)
    where = f"for {slot}" if slot[0].isalpha() else f"at {slot}"
    if r.effect >= 0:
        where += " (a calendar effect this series shows)"
    v, exp = r.value, r.expected
    if abs(exp) > 1e-9:
        pct = (v - exp) / abs(exp) * 100
        word = "below" if pct < 0 else "above"
        return r.abs_z, f"value {fmt_value(v)} is {abs(pct):.0f}% {word} the usual {fmt_value(exp)} {where}"
    return r.abs_z, f"value {fmt_value(v)} where {fmt_value(exp)} is usual {where}"


def _row_text(r: _Flagged, together: dict[int, str]) -> str:
    """The row's strongest reasons (at most ``REASONS_SHOWN``), joined."""
    parts: list[tuple[float, str]] = []
    value = _value_reason(r)
    if value is not None:
        parts.append(value)
    if r.load in together:
        parts.append((TOGETHER_WEIGHT, together[r.load]))
    if r.same > 0 and r.same_rate < STALE_REPEAT_RATE:
        parts.append((STALE_WEIGHT, f"same value as the previous load ({fmt_value(r.value)}): the data may be stale"))
    if r.gap > LONG_GAP:
        parts.append((GAP_WEIGHT, f"{r.gap:.0f}x the usual interval since the previous load"))
    if r.delay > LATE_LOAD_Z:
        parts.append((DELAY_WEIGHT, "the load ran much later/slower than usual"))
    if r.rerun > 0:
        parts.append((RERUN_WEIGHT, "this load is a rerun"))
    parts.sort(key=lambda p: -p[0])
    return "; ".join(p[1] for p in parts[:REASONS_SHOWN]) or "unusual combination of recent behaviour"


def _sparse_strings(n: int, rows: np.ndarray, texts: list[str]) -> pa.Array:
    """A string column of ``n`` rows, empty except ``texts`` at ``rows`` (ascending).

    Built directly as Arrow buffers (offsets from the lengths, one joined byte string): a million
    mostly empty Python strings would otherwise be scanned one by one on the way in and out.
    """
    data = [t.encode() for t in texts]
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = [len(b) for b in data]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


def _coded_strings(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """A string column from small integer codes into ``names`` (dictionary-decoded by Arrow)."""
    dictionary = pa.array(names, type=pa.large_string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), dictionary).cast(pa.large_string())


def _str_series(arr: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(arr)).astype(str)


BLOCK_ROWS = 150_000


def _components(series: list[pd.Series], groups: list[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Per frame, each row's set of rows that share a series or a group with it (transitively).

    A new point's features read earlier points of its own series and the same load's other metrics
    (its group), so such a set is the unit that can be scored apart from the others with the same
    result. ``series``/``groups`` are the string columns of each frame.
    """
    s_rows, n_s = _shared_codes(series)
    g_rows, n_g = _shared_codes(groups)
    return _component_labels(s_rows, g_rows, n_s, n_g)


def _shared_codes(columns: list[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Codes of several string columns into one list of names (the sorted union of theirs)."""
    codes, uniq = zip(*(pd.factorize(x) for x in columns), strict=True)
    names = pd.Index(np.concatenate([np.asarray(u, dtype=object) for u in uniq])).unique().sort_values()
    return [names.get_indexer(np.asarray(u, dtype=object))[c] for c, u in zip(codes, uniq, strict=True)], len(names)


def _component_labels(
    s_rows: list[np.ndarray], g_rows: list[np.ndarray], n_s: int, n_g: int
) -> tuple[list[np.ndarray], int]:
    """Connected sets of series linked by a shared group (label propagation over the distinct
    (series, group) pairs: two rounds when each series has one group); labels per row of each frame."""
    width = max(n_g, 1)
    pairs = np.unique(np.concatenate([_pair_runs(s, g, width) for s, g in zip(s_rows, g_rows, strict=True)]))
    ps, pg = pairs // width, pairs % width
    lab = np.arange(n_s)
    while True:
        g_lab = np.full(n_g, n_s)
        np.minimum.at(g_lab, pg, lab[ps])
        new = lab.copy()
        np.minimum.at(new, ps, g_lab[pg])
        if (new == lab).all():
            break
        lab = new
    small = np.int32 if n_s <= np.iinfo(np.int32).max else np.int64  # a history's worth of labels
    return [lab.astype(small)[s] for s in s_rows], n_s


def _pair_runs(s: np.ndarray, g: np.ndarray, width: int) -> np.ndarray:
    """The (series, group) pairs ``s * width + g`` without repeats of the one before (a series' rows
    hold one pair, row after row): the same set of pairs, a few per series instead of a history's
    worth for ``np.unique`` to sort, formed at the runs' starts only (no history-long products)."""
    if not len(s):
        return np.zeros(0, dtype=np.int64)
    at = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (g[1:] != g[:-1])])
    return s[at].astype(np.int64) * width + g[at]


def _pack(c_tail: np.ndarray, c_new: np.ndarray, n_comp: int, block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row positions (history tail, new) of blocks of whole components of about ``block_rows`` rows.

    Scoring a block at a time keeps every temporary array (features, windows, tree inputs) a
    block long: a million-row frame's temporaries are page-faulted in afresh on each allocation and
    dominated the scorer's time, a block's are reused from the allocator and stay in cache.
    Positions stay ascending inside a block, so each block's frame keeps the order it had.
    """
    if len(c_new) == 0:
        return []
    if len(c_new) + len(c_tail) <= block_rows:
        return [(np.arange(len(c_tail)), np.arange(len(c_new)))]
    sizes = np.bincount(c_tail, minlength=n_comp) + np.bincount(c_new, minlength=n_comp)
    block_of = (np.cumsum(sizes) - 1) // block_rows
    n_blocks = int(block_of.max(initial=0)) + 1
    out = []
    small = np.uint16 if n_blocks <= np.iinfo(np.uint16).max else np.int64  # radix sort: linear
    for c in (c_tail, c_new):
        b = block_of.astype(small)[c]
        order = np.argsort(b, kind="stable")
        out.append(np.split(order, np.cumsum(np.bincount(b, minlength=n_blocks))[:-1]))
    return [(t, n) for t, n in zip(*out, strict=True) if len(n)]


def _blocks(tail: pd.DataFrame, new_n: pd.DataFrame, block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``_pack`` for frames: components from the series and group names."""
    if len(new_n) == 0 or len(new_n) + len(tail) <= block_rows:
        return _pack(np.zeros(len(tail), np.int64), np.zeros(len(new_n), np.int64), 1, block_rows)
    (c_tail, c_new), n_comp = _components([tail["series"], new_n["series"]], [tail["group"], new_n["group"]])
    return _pack(c_tail, c_new, n_comp, block_rows)


class _Results:
    """Per-row outputs of the blocks, written into arrays as long as the new rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.score = np.zeros(n)
        self.is_anom = np.zeros(n, dtype=bool)
        self.sev = np.zeros(n, dtype=np.int8)
        self.lo = np.zeros(n)
        self.hi = np.zeros(n)
        self._rows: list[np.ndarray] = []
        self._texts: list[str] = []

    def add(self, bundle: ModelBundle, block: _Block, new_n: pd.DataFrame, n_pos: np.ndarray) -> None:
        r = _score_block(bundle, block, new_n)
        self.score[n_pos], self.is_anom[n_pos], self.sev[n_pos] = r.score, r.is_anomaly, r.severity
        self.lo[n_pos], self.hi[n_pos] = r.low, r.high
        self._rows.append(n_pos[r.reason_rows])
        self._texts += r.reason_texts

    def columns(self) -> dict[str, np.ndarray | pa.Array]:
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int64)
        by_row = np.argsort(rows, kind="stable")
        return {
            "score": self.score,
            "is_anomaly": self.is_anom,
            "severity": _coded_strings(self.sev, SEVERITIES),
            "expected_low": self.lo,
            "expected_high": self.hi,
            "reasons": _sparse_strings(self.n, rows[by_row], [self._texts[i] for i in by_row]),
        }


def score_new(
    bundle: ModelBundle, history: pd.DataFrame | None, new: pd.DataFrame, *, block_rows: int = BLOCK_ROWS
) -> pd.DataFrame:
    """One output row per ``new`` row (same index): carried columns + score, label, range, reasons.

    History is cut to the tail the new points depend on, and features are computed for the new rows
    only (the history rows are context): the cost follows the number of new rows. Rows are scored
    in blocks of about ``block_rows`` (history tail + new) that never split a series or a load's
    group, which gives the same output as one pass over everything (see ``_pack``). The stage itself
    reads and writes Arrow tables: see ``score_table``.
    """
    new_n = normalise(new, copy=False)
    hist_n = normalise(history, copy=False) if history is not None and len(history) else new_n.iloc[:0]
    tail = _history_tail(hist_n, bundle)
    res = _Results(len(new_n))
    for t_pos, n_pos in _blocks(tail, new_n, block_rows):
        new_rows = _rows(new_n, n_pos)
        res.add(bundle, _block_frame(_rows(tail, t_pos), new_rows), new_rows, n_pos)
    carried = ["series", "group", "timestamp", "value", *[c for c in key_columns(new_n) if c in new_n.columns]]
    out = new_n[carried].reset_index(drop=True)
    for c in ("series", "group"):  # names given as sorted Categoricals (which normalise keeps) come out as strings
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(str)
    for name, col in res.columns().items():
        out[name] = _str_series(col).array if isinstance(col, pa.Array) else col
    out.index = new.index
    return out


def _arrow_ready(table: pa.Table) -> bool:
    """True when ``table`` already holds what ``normalise`` would make of it (the fetcher's files do)."""
    schema = table.schema
    if not {"series", "group", "timestamp", "value"} <= set(schema.names):
        return False

    def is_str(t: pa.DataType) -> bool:
        t = t.value_type if pa.types.is_dictionary(t) else t
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    ts = schema.field("timestamp").type
    return (
        is_str(schema.field("series").type)
        and is_str(schema.field("group").type)
        and pa.types.is_timestamp(ts)
        and ts.unit == "ns"
        and ts.tz is None
        and schema.field("value").type == pa.float64()
        and table["series"].null_count == 0
        and table["group"].null_count == 0
    )


def plain_strings(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded columns decoded (strings as large_string, as pandas writes them)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            t = field.type.value_type
            t = pa.large_string() if pa.types.is_string(t) else t
            table = table.set_column(i, field.name, table.column(i).cast(t))
    return table


def _arrow_codes(columns: list[pa.ChunkedArray]) -> tuple[list[np.ndarray], pd.Index]:
    """Codes of string columns (plain or dictionary-encoded) into the sorted union of their names.

    Each column's chunks (Parquet row groups) first share one dictionary (Arrow unifies them), so
    only one small list of names per column is looked up in Python. Returns the codes of each
    column and the names (sorted, unique).
    """
    indices, dicts = [], []
    for col in columns:
        col = (col if pa.types.is_dictionary(col.type) else col.dictionary_encode()).unify_dictionaries()
        chunks = [ch for ch in col.chunks if len(ch)]
        # the dictionary's own (32-bit) indices, read in place: each widening or joining copy of a
        # history's codes is fresh memory the size of the history
        indices.append([ch.indices.to_numpy(zero_copy_only=False) for ch in chunks])
        dicts.append(chunks[0].dictionary.to_numpy(zero_copy_only=False) if chunks else np.zeros(0, dtype=object))
    names = pd.Index(np.concatenate(dicts) if dicts else np.zeros(0, dtype=object)).unique().sort_values()
    small = np.int32 if len(names) <= np.iinfo(np.int32).max else np.int64  # half a history's worth of int64
    codes = [
        names.get_indexer(d).astype(small)[i[0] if len(i) == 1 else np.concatenate(i)] if i else np.zeros(0, small)
        for i, d in zip(indices, dicts, strict=True)
    ]
    return codes, names


_HEAP_TUNED = False


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the kernel (once).

    Scoring allocates and frees the same block-sized arrays (~1-10 MB) for every block and every
    feature. With glibc's defaults each one above its adaptive mmap threshold is a fresh mapping and
    the heap top is trimmed whenever it is free, so the same pages are faulted in again and again:
    ~250,000 page faults, a second of system time per million rows where faults are expensive
    (sandboxed runtimes such as Lambda's). Keeping arrays up to 32 MB on the heap and never trimming
    it cuts the faults by ~70%; memory stays at its peak, which a stage process (score, then exit
    or wait for the next batch) does not mind. Process-wide and one-way, so only the scorer stage
    asks for it (its domain, and the benchmark that measures it), never this library on its own;
    without glibc (macOS, musl) nothing changes.
    """
    global _HEAP_TUNED
    if _HEAP_TUNED:
        return
    _HEAP_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # mallopt returns 1 on success; a refusal leaves glibc's defaults, which are correct, only slower
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD (glibc's maximum; fixes it, no adapting)
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep the freed heap top
    except (OSError, AttributeError):
        pass


def _ns_timestamps(table: pa.Table) -> pa.Table:
    """``table`` with a tz-naive ``timestamp`` column of another unit cast to nanoseconds (Arrow, cheap).

    pandas 3 writes microseconds where older versions wrote nanoseconds; a history labelled by one
    and new rows fetched by another must not push the scorer off its fast path for a unit.
    """
    if "timestamp" not in table.column_names:
        return table
    i = table.column_names.index("timestamp")
    t = table.schema.field(i).type
    if pa.types.is_timestamp(t) and t.tz is None and t.unit != "ns":
        table = table.set_column(i, "timestamp", table.column(i).cast(pa.timestamp("ns")))
    return table


#: columns of the history the features never read (the labeler's provenance of each label)
_UNREAD_HISTORY = ("label_source",)


@dataclass(frozen=True)
class _Coded:
    """A table's ``series`` and ``group`` as codes into sorted names (see :func:`_arrow_codes`)."""

    series: np.ndarray
    group: np.ndarray
    series_dtype: pd.CategoricalDtype
    group_dtype: pd.CategoricalDtype


def _take(table: pa.Table, pos: np.ndarray, coded: _Coded, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows ``pos`` of ``table`` as a frame (a slice when they are consecutive), without ``drop``.

    ``series`` and ``group`` become Categoricals of the codes, whose categories are the sorted
    names (:func:`dqad.detect.vectorised.normalise` takes them as they are): decoding a block's
    150,000 strings, concatenating and hashing them again was a fifth of the scorer's time.
    Other string columns are decoded (key columns are hashed as strings).
    """
    rest = [c for c in table.column_names if c not in ("series", "group", *drop)]
    if len(pos) and pos[-1] - pos[0] + 1 == len(pos):
        part = table.select(rest).slice(int(pos[0]), len(pos))
    else:
        part = table.select(rest).take(pa.array(pos))
    frame = plain_strings(part).to_pandas()
    series = pd.Categorical.from_codes(coded.series[pos], dtype=coded.series_dtype)
    group = pd.Categorical.from_codes(coded.group[pos], dtype=coded.group_dtype)
    frame.insert(0, "series", series)
    frame.insert(1, "group", group)
    return frame


def _in_file_order(positions: np.ndarray, n: int) -> np.ndarray:
    """``positions`` (distinct rows of an ``n``-row table) in ascending order, in linear time.

    A block's history rows then come out of :func:`_pack` in file order: a run of consecutive rows
    (a slice, not a gather) when the file keeps each table's rows together. ``compute`` sorts its
    rows by (series, time) itself, and rows of equal (series, time) keep their file order either way.
    """
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return np.flatnonzero(mask)


def score_table(
    bundle: ModelBundle, history: pa.Table | None, new: pa.Table, *, block_rows: int = BLOCK_ROWS
) -> pa.Table:
    """``score_new`` for Arrow tables: the scorer stage's path from Parquet to Parquet.

    String columns may arrive dictionary-encoded (``Storage.read_table(strings_as_dictionary=True)``):
    the history tail and the blocks are chosen on the dictionary codes, and only each block's rows
    are decoded and handed to pandas (reading every string of history and new loads up front was
    a sixth of the scorer's time, mostly page faults). The output is built from the new table's own
    columns (decoded once, for the writer) and the result arrays, with no pandas round trip. Same
    rows and values as ``score_new``; tables ``normalise`` would change (missing group, time zones,
    ...) go through it.
    """
    hist = _ns_timestamps(history) if history is not None and history.num_rows else None
    new = _ns_timestamps(new)
    if not _arrow_ready(new) or (hist is not None and not _arrow_ready(hist)):
        h = plain_strings(hist).to_pandas() if hist is not None else None
        out = score_new(bundle, h, plain_strings(new).to_pandas(), block_rows=block_rows)
        return pa.Table.from_pandas(out, preserve_index=False)
    frames = [new] if hist is None else [new, hist]
    s_codes, s_names = _arrow_codes([t["series"] for t in frames])
    g_codes, g_names = _arrow_codes([t["group"] for t in frames])
    n_s, n_g = len(s_names), len(g_names)
    s_dtype, g_dtype = pd.CategoricalDtype(s_names), pd.CategoricalDtype(g_names)
    coded_new = _Coded(s_codes[0], g_codes[0], s_dtype, g_dtype)
    t_pos: np.ndarray | None = None  # the history rows kept (None: every row)
    if hist is None:
        s_tail = g_tail = np.zeros(0, dtype=np.int64)
    else:
        ts = hist["timestamp"].to_numpy().view(np.int64)  # timestamp[ns] (_arrow_ready): no copies
        t_pos = _tail_rows(s_codes[1], ts, bundle.cfg)
        s_tail, g_tail = (s_codes[1], g_codes[1]) if t_pos is None else (s_codes[1][t_pos], g_codes[1][t_pos])
    (c_tail, c_new), n_comp = _component_labels([s_tail, s_codes[0]], [g_tail, g_codes[0]], n_s, n_g)
    res = _Results(new.num_rows)
    coded_hist = None if hist is None else _Coded(s_codes[1], g_codes[1], s_dtype, g_dtype)
    for tb, nb in _pack(c_tail, c_new, n_comp, block_rows):
        new_n = _take(new, nb, coded_new)
        if hist is None or coded_hist is None:
            block = _block_frame(_take(new, np.zeros(0, dtype=np.int64), coded_new), new_n)  # no history
        else:
            rows = tb if t_pos is None else t_pos[tb]
            block = _arrow_block(hist, rows, coded_hist, new_n) or _block_frame(
                _take(hist, rows, coded_hist, drop=_UNREAD_HISTORY), new_n
            )
        res.add(bundle, block, new_n, nb)
    carried = [c for c in new.column_names if c not in STANDARD_COLUMNS and c not in DERIVED_COLUMNS]
    out = plain_strings(new.select(["series", "group", "timestamp", "value", *carried]))
    for name, col in res.columns().items():
        out = out.append_column(name, pa.array(col) if isinstance(col, np.ndarray) else col)
    return out.replace_schema_metadata(None)


def _rows(frame: pd.DataFrame, pos: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[pos]``, as a view when ``pos`` is a run of consecutive rows (frames sorted by series)."""
    if len(pos) and pos[-1] - pos[0] + 1 == len(pos):
        return frame.iloc[pos[0] : pos[-1] + 1]
    return frame.iloc[pos]


@dataclass
class BlockScores:
    """The scorer's outputs for one block's new rows (reasons only where a row needs one)."""

    score: np.ndarray
    is_anomaly: np.ndarray
    severity: np.ndarray
    low: np.ndarray
    high: np.ndarray
    reason_rows: np.ndarray
    reason_texts: list[str]


def expected_range(
    expected: np.ndarray, scale: np.ndarray, range_z: float, never_negative: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The range shown: ``range_z`` scales either side of the expected value (calendar effects are in both).

    A series that was never negative is not expected to become negative, and where even the top of
    its range fell below zero (a falling series' trend carried on past its zeros) the range is that
    floor alone: a low above its high told the reader nothing.
    """
    half = range_z * scale
    lo = np.where(never_negative, np.maximum(expected - half, 0.0), expected - half)
    return lo, np.maximum(expected + half, lo)


def _score_block(bundle: ModelBundle, block: _Block, new_n: pd.DataFrame) -> BlockScores:
    """Score, decision, severity, range and reasons of one block's new rows."""
    feats, aux = _block_features(bundle, block)
    cfg = bundle.cfg
    controls = getattr(cfg, "controls", ())  # bundles pickled before controls existed have none
    score = np.clip(bundle.predict_score(feats), 0.0, 1.0)
    series = new_n["series"].to_numpy()
    decide_on = np.asarray(odds_scale(score, sensitivity(controls, series))) if controls else score
    # the same decision the backtest makes: per-series thresholds and one alert per incident need the rows
    frame = new_n[["series", "timestamp"]].reset_index(drop=True)
    is_anom = bundle.decide(decide_on, feats, frame=frame)
    exp = aux["expected"].to_numpy(dtype=np.float64)
    lo, hi = expected_range(
        exp, aux["scale"].to_numpy(dtype=np.float64), cfg.range_z, aux["series_min"].to_numpy(dtype=np.float64) >= 0
    )
    value = new_n["value"].to_numpy(dtype=np.float64)
    ctl = apply_controls(controls, series, value, exp, is_anom)
    is_anom = ctl.is_anomaly
    z = np.abs(feats["seas_z"].to_numpy(dtype=np.float64))
    rel = np.abs(feats["seas_rel"].to_numpy(dtype=np.float64))
    sev = np.where(
        (score >= 0.9) & ((z >= 2 * cfg.robust_threshold) | (rel >= 0.5)),
        3,
        np.where((score >= 0.7) | (rel >= 0.2), 2, 1),
    )
    sev = np.where(is_anom, sev, 0)
    frame["value"] = value
    rows, texts = _reasons(frame, feats, aux, is_anom)
    rows, texts = _explain_range(rows, texts, value, lo, hi, is_anom, decide_on, bundle.threshold, ctl, controls)
    return BlockScores(score, is_anom, sev, lo, hi, rows, texts)


@dataclass(frozen=True)
class _Block:
    """One block's rows for the features: its history tail and then its new rows, and the labels."""

    frame: pd.DataFrame
    labels: np.ndarray
    n_tail: int


def _block_frame(tail: pd.DataFrame, new_n: pd.DataFrame) -> _Block:
    """The history tail (labels blanked) and the new rows in one frame, as the features read them."""
    cols = sorted(set(tail.columns) | set(new_n.columns))
    both = pd.concat(
        [tail.reindex(columns=cols).reset_index(drop=True), new_n.reindex(columns=cols).reset_index(drop=True)],
        ignore_index=True,
    )
    for c in ("series", "group"):
        if both[c].dtype != new_n[c].dtype or both[c].hasnans:
            both[c] = both[c].astype(str)
    tail_labels = tail["label"].fillna(0).to_numpy(dtype=np.float64) if "label" in tail.columns else np.zeros(len(tail))
    return _Block(both, np.r_[tail_labels, np.zeros(len(new_n))], len(tail))


#: the history columns :func:`_arrow_block` puts together itself (``label`` is optional)
_PLAIN_COLUMNS = ("group", "series", "timestamp", "value")


def _arrow_block(hist: pa.Table, rows: np.ndarray, coded: _Coded, new_n: pd.DataFrame) -> _Block | None:
    """:func:`_block_frame` of history rows ``rows`` straight from the table's columns, or None
    where their columns need pandas' rules (key columns, types to reconcile).

    A block's frame was the history rows turned into a frame, then concatenated with the new rows
    and reindexed, three copies of 150,000 rows and a few milliseconds of pandas per block; here
    each column is one concatenation of the table's values and the new rows'.
    """
    names = [c for c in hist.column_names if c not in _UNREAD_HISTORY]
    has_label = "label" in names
    if sorted(set(names) - {"label"}) != list(_PLAIN_COLUMNS) or sorted(new_n.columns) != list(_PLAIN_COLUMNS):
        return None
    label_type = hist.schema.field("label").type if has_label else pa.int8()
    if not (pa.types.is_integer(label_type) or pa.types.is_floating(label_type)) or hist["timestamp"].null_count:
        return None
    if new_n["timestamp"].dtype != np.dtype("datetime64[ns]") or new_n["value"].dtype != np.float64:
        return None
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        part = hist.select(["timestamp", "value", *(["label"] if has_label else [])]).slice(int(rows[0]), len(rows))
    else:
        part = hist.select(["timestamp", "value", *(["label"] if has_label else [])]).take(pa.array(rows))
    n_new = len(new_n)

    def codes(column: str, dtype: pd.CategoricalDtype) -> pd.Categorical:
        own = getattr(coded, column)[rows]
        return pd.Categorical.from_codes(np.r_[own, new_n[column].cat.codes.to_numpy()], dtype=dtype)

    columns: dict[str, Any] = {"group": codes("group", coded.group_dtype)}
    labels = np.zeros(len(rows) + n_new)
    if has_label:
        lab = part["label"].to_numpy().astype(np.float64)  # nulls are NaN, as pandas makes them
        columns["label"] = np.r_[lab, np.full(n_new, np.nan)]
        labels[: len(rows)] = np.nan_to_num(lab, nan=0.0)
    columns["series"] = codes("series", coded.series_dtype)
    columns["timestamp"] = np.r_[part["timestamp"].to_numpy(), new_n["timestamp"].to_numpy()]
    columns["value"] = np.r_[part["value"].to_numpy(), new_n["value"].to_numpy()]
    return _Block(pd.DataFrame(columns, copy=False), labels, len(rows))


def _block_features(bundle: ModelBundle, block: _Block) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and baselines of the block's new rows, with its history tail (labels blanked) as context."""
    comp = compute(
        block.frame,
        bundle.cfg,
        labels=block.labels,
        targets=np.arange(len(block.frame)) >= block.n_tail,
        column_order=bundle.feature_names,
    )
    return comp.features.reset_index(drop=True), comp.aux.reset_index(drop=True)


def _explain_range(
    rows: np.ndarray,
    texts: list[str],
    value: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    is_anom: np.ndarray,
    decide_on: np.ndarray,
    threshold: float,
    ctl: Controlled,
    controls: tuple[Control, ...],
) -> tuple[np.ndarray, list[str]]:
    """Reasons that make the flag agree with the range shown (docs/architecture.md §6).

    A flagged point inside its range says why it is flagged anyway; a point outside its range that
    is not flagged says why not. Such rows are few, so the loop runs over them only.
    """
    inside = (value >= lo) & (value <= hi)
    outside = (value < lo) | (value > hi)
    texts = list(texts)
    for j, r in enumerate(rows.tolist()):
        c = controls[ctl.control[r]] if ctl.control[r] >= 0 else None
        if ctl.why[r]:
            texts[j] = f"{why_text(c, int(ctl.why[r]))}; {texts[j]}"
        elif inside[r]:
            texts[j] = f"inside its expected range ({fmt_value(lo[r])} to {fmt_value(hi[r])}) but flagged: {texts[j]}"
    quiet = np.flatnonzero(outside & ~is_anom)
    extra = []
    for r in quiet.tolist():
        c = controls[ctl.control[r]] if ctl.control[r] >= 0 else None
        if ctl.why[r]:
            why = why_text(c, int(ctl.why[r]))
        elif decide_on[r] < threshold:
            why = f"its score {decide_on[r]:.2f} is below the alarm threshold {threshold:.2f} (small for this series)"
        else:
            why = "the series' own alarm threshold is higher, or an alert of the same incident was already sent"
        extra.append(f"outside its expected range ({fmt_value(lo[r])} to {fmt_value(hi[r])}) but not alerted: {why}")
    if not len(quiet):
        return rows, texts
    all_rows = np.r_[rows, quiet]
    order = np.argsort(all_rows, kind="stable")
    merged = texts + extra
    return all_rows[order], [merged[i] for i in order.tolist()]
