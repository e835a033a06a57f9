"""Calendar effects learnt per series from its own history, never assumed (docs/architecture.md §6).

Warehouses close on calendar days, on business days, on the first business day, on quarter ends; a
holiday closes one table and leaves the next untouched. So no convention is built in: every daily
point belongs to zero or more *candidate* calendar days (:data:`CATEGORIES`), and a candidate
changes how a point is judged only when the series' own earlier occurrences of it show an effect:

- at least ``min_occurrences`` earlier occurrences with a value (labelled anomalies are blanked
  out before they get here, so an incident never teaches an effect),
- a median effect (log of value / ordinary baseline) larger than ``noise_factor`` times the
  series' relative noise and than the minimum relative change,
- of a consistent sign (at least ``consistency`` of the occurrences on the median's side).

A supported effect moves the expected value by its median and widens the scale by its spread; a
candidate without support is an ordinary day (a series whose month end is flat gets no widening).
Holidays differ in one way: the dates a user declares are often the union of several calendars,
so a table may close on some of them and open on the others. A holiday effect is therefore learnt
from the occurrences that moved the value by at least ``strong_change``, and a holiday is judged
against whichever fits it better, the ordinary day or that effect (:func:`apply_effects`).
The same code serves the causal features (occurrences strictly before the point) and the labeler
(hindsight: a centred run of occurrences, the point among them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np
import pandas as pd

from dqad.detect.vectorised import Padded, calendar_days, window_quantiles

#: candidate calendar days; a day may belong to several (the 31st that is also the last business day)
CATEGORIES = (
    "holiday",
    "month_last_day",
    "month_second_last_day",
    "month_first_day",
    "month_last_business_day",
    "month_second_last_business_day",
    "month_first_business_day",
    "quarter_last_day",
    "quarter_second_last_day",
    "quarter_third_last_day",
    "quarter_last_business_day",
)
#: column of the holiday category
HOLIDAY = CATEGORIES.index("holiday")
#: the categories that describe a month or quarter end (for reasons and the ``is_month_end`` feature)
MONTH_END = tuple(i for i, c in enumerate(CATEGORIES) if "last" in c)
#: column of :func:`calendar_categories` saying whether a day is a business day
BUSINESS = len(CATEGORIES)
WORDS = {
    "holiday": "holidays",
    "month_last_day": "the last day of the month",
    "month_second_last_day": "the second-last day of the month",
    "month_first_day": "the first day of the month",
    "month_last_business_day": "the last business day of the month",
    "month_second_last_business_day": "the second-last business day of the month",
    "month_first_business_day": "the first business day of the month",
    "quarter_last_day": "the last day of the quarter",
    "quarter_second_last_day": "the second-last day of the quarter",
    "quarter_third_last_day": "the third-last day of the quarter",
    "quarter_last_business_day": "the last business day of the quarter",
}


@dataclass(frozen=True)
class EffectRules:
    """When a series' history supports a calendar effect (see module docstring).

    Built from the seasonal configuration (``SeasonalConfig.effect_rules``), which holds the one set of
    defaults a dataset can override; only the strong-effect threshold is not a setting.
    """

    occurrences: int
    min_occurrences: int
    noise_factor: float
    consistency: float
    min_relative_change: float
    #: an effect this large (relative) and beyond twice the usual noise test is used from its
    #: first consistent occurrences: a closing surge that triples a table is evidence on its own
    strong_change: float = 0.3
    #: scale factor for a declared holiday the series has not shown enough of yet
    unproven_holiday_widening: float = 1.0
    #: how far (log ratio) one holiday's effect may lie from another's: the least spread a holiday
    #: is judged with (see :func:`apply_effects`); 0 judges holidays like every other day
    holiday_spread: float = 0.0


def calendar_categories(ts: pd.DatetimeIndex, holidays: Sequence[date] = ()) -> np.ndarray:
    """Boolean matrix (points x :data:`CATEGORIES` + 1): which candidate calendar days each point falls on.

    The last column says whether the day is a business day (Mon-Fri, not a holiday): every effect
    is learnt apart for business and other days, because the 31st that is a Sunday and the 31st
    that is the last business day are different days to a business that closes on business days.
    """
    t = pd.DatetimeIndex(ts)
    out = np.zeros((len(t), len(CATEGORIES) + 1), dtype=bool)
    if len(t) == 0:
        return out
    uniq, inv = calendar_days(t)
    hol = np.array(sorted({np.datetime64(h, "D") for h in holidays}), dtype="datetime64[D]")
    month = uniq.astype("datetime64[M]")
    first = month.astype("datetime64[D]")
    nxt = (month + 1).astype("datetime64[D]")
    bday = np.is_busday(uniq, holidays=hol)
    after = np.busday_count(uniq + 1, nxt, holidays=hol)
    before = np.busday_count(first, uniq, holidays=hol)
    to_end = (nxt - uniq).astype(np.int64) - 1
    quarter_month = month.astype(np.int64) % 3 == 2  # March, June, September, December
    cols = np.column_stack(
        [
            np.isin(uniq, hol),
            to_end == 0,
            to_end == 1,
            uniq == first,
            bday & (after == 0),
            bday & (after == 1),
            bday & (before == 0),
            quarter_month & (to_end == 0),
            quarter_month & (to_end == 1),
            quarter_month & (to_end == 2),
            quarter_month & bday & (after == 0),
            bday,
        ]
    )
    return np.take(cols, inv, axis=0)  # a row gather: several times faster than cols[inv]


@dataclass
class Effects:
    """Per queried point: the supported effect that applies (log ratio, spread) or none (category -1)."""

    log_ratio: np.ndarray
    spread: np.ndarray
    category: np.ndarray
    #: fewest occurrences (with a value) any of the point's candidate categories had to learn from
    #: (inf for an ordinary day): an effect may belong to the category that has not shown itself yet
    evidence: np.ndarray
    #: the point is a declared holiday of which the series has too few earlier occurrences to tell
    unproven_holiday: np.ndarray

    #: the effect applied rests on fewer than ``min_occurrences`` occurrences (a strong first one),
    #: or on the other split's occurrences (business days for a weekend day, or the reverse)
    thin: np.ndarray

    @property
    def applies(self) -> np.ndarray:
        return self.category >= 0


def log_ratio(values: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """log(value / baseline), NaN where it is undefined (no positive baseline); zeros count as a 1000x drop."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(baseline > 0, values / baseline, np.nan)
        return np.log(np.where(r >= 0, np.maximum(r, 1e-3), np.nan))


def learn_effects(
    series_codes: np.ndarray,
    cats: np.ndarray,
    ratios: np.ndarray,
    rows: np.ndarray,
    noise_rel: np.ndarray,
    rules: EffectRules,
    *,
    centred: bool = False,
) -> Effects:
    """The supported effect for each of ``rows`` (arrays sorted by (series, time)).

    ``ratios`` holds :func:`log_ratio` of every point (NaN where a point must not teach: labelled
    anomalies, no baseline); ``noise_rel`` the series' relative noise at each of ``rows``. Causal by
    default (occurrences strictly before the row); ``centred`` is the labeler's hindsight.
    Among several supported categories of one point, the one with the smallest spread wins (the
    most specific description: a quarter end inside the month-end category widens its spread).
    """
    asked = _EffectQuery(series_codes, cats, ratios, rows, noise_rel, rules, centred)
    best = _BestEffects.none(len(rows))
    for c in range(cats.shape[1] - 1):
        if cats[rows, c].any():
            _learn_category(asked, c, best)
    _confirm_by_description(asked, best)
    return best.effects(cats[rows, HOLIDAY], rules, centred)


def _descriptions(cats: np.ndarray) -> np.ndarray:
    """Per point, which calendar categories (holidays aside) it belongs to, as one integer."""
    bits = np.array([0 if c == HOLIDAY else 1 << c for c in range(len(CATEGORIES))], dtype=np.int64)
    return cats[:, : len(CATEGORIES)].astype(np.int64) @ bits


def _confirm_by_description(asked: _EffectQuery, best: _BestEffects) -> None:
    """Mark thin the effects no earlier day of the point's own calendar description showed.

    Categories overlap, and a history often holds them only together: every last business day of
    a year may have been the calendar last day too, until October ends on a Saturday. An effect
    learnt from those days says nothing about which of the two the surge belongs to; only an
    earlier day described by the same categories (the last business day that was not the last
    day) does. So an effect counts as proven at a point only where such a day moved the value the
    same way, by at least half the effect; elsewhere it is thin, and the point is judged by
    whichever it fits, the ordinary day or the effect (:func:`apply_effects`): a month-end surge
    that did not come on the Friday is no incident, nor is one that did.
    Holidays are judged that way already and are left alone.
    """
    chosen = best.category
    described = np.flatnonzero((chosen >= 0) & (chosen != HOLIDAY))
    if not len(described):
        return
    desc = _descriptions(asked.cats)
    rows, k = asked.rows, asked.rules.occurrences
    own = desc[rows]
    for c in np.unique(chosen[described]).tolist():
        of_c = described[chosen[described] == c]
        for d in np.unique(own[of_c]).tolist():
            q = of_c[own[of_c] == d]
            on = np.flatnonzero(asked.cats[:, c] & (desc == d))
            at = np.searchsorted(on, rows[q])
            codes, r = asked.series_codes[on], asked.ratios[on]
            if asked.centred:
                stats = _occurrence_stats(codes, r, k, centred=True).take(at)
            else:
                stats = _occurrence_stats_at(codes, r, k, at)
            effect = best.log_ratio[q]
            same_way = (stats.med * effect > 0) & (np.abs(stats.med) >= 0.5 * np.abs(effect))
            shown = (stats.cnt >= 1 + asked.centred) & same_way
            best.count[q[~shown]] = 0


@dataclass(frozen=True)
class _EffectQuery:
    """What :func:`learn_effects` was asked, in one place: every step reads the same arrays."""

    series_codes: np.ndarray
    cats: np.ndarray
    ratios: np.ndarray
    rows: np.ndarray
    noise_rel: np.ndarray
    rules: EffectRules
    centred: bool

    @property
    def business(self) -> np.ndarray:
        return self.cats[:, -1]


@dataclass
class _BestEffects:
    """The best supported effect so far of each queried row.

    Categories are tried one at a time, and of the supported ones the narrowest wins (the most
    specific description, see :func:`learn_effects`).
    """

    log_ratio: np.ndarray
    spread: np.ndarray
    category: np.ndarray
    #: occurrences of the row's own split the best effect rests on (0 for a pooled one)
    count: np.ndarray
    #: fewest occurrences any of the row's categories had (see ``Effects.evidence``)
    evidence: np.ndarray
    #: most holidays with a value, moved or not, in any of the row's windows
    holiday_seen: np.ndarray

    @classmethod
    def none(cls, m: int) -> _BestEffects:
        """No row has an effect yet: an infinite spread loses to any supported effect."""
        return cls(
            log_ratio=np.zeros(m),
            spread=np.full(m, np.inf),
            category=np.full(m, -1, dtype=np.int64),
            count=np.zeros(m),
            evidence=np.full(m, np.inf),
            holiday_seen=np.zeros(m),
        )

    def offer(self, q: np.ndarray, ok: np.ndarray, stats: _WindowStats, c: int, pooled: bool) -> None:
        """Take category ``c``'s effect at the rows ``q`` where it is supported and narrower."""
        better = ok & (stats.spread < self.spread[q])
        sel = q[better]
        self.log_ratio[sel], self.spread[sel], self.category[sel] = stats.med[better], stats.spread[better], c
        # a pooled effect is a guess for a split not seen yet (a weekday surge on a Saturday)
        self.count[sel] = 0 if pooled else stats.cnt[better]

    def effects(self, on_holiday: np.ndarray, rules: EffectRules, centred: bool) -> Effects:
        """The choice made; a row without an effect has no spread to widen its scale by."""
        applies = self.category >= 0
        self.spread[~applies] = 0.0
        # centred windows count the point itself among the occurrences
        unproven = on_holiday & ~applies & (self.holiday_seen < rules.min_occurrences + centred)
        thin = applies & (self.count < rules.min_occurrences + centred)
        return Effects(
            log_ratio=self.log_ratio,
            spread=self.spread,
            category=self.category,
            evidence=self.evidence,
            unproven_holiday=unproven,
            thin=thin,
        )


class _WindowStats(NamedTuple):
    """Median, robust spread (IQR / 1.349), count and share positive of occurrence windows."""

    med: np.ndarray
    spread: np.ndarray
    cnt: np.ndarray
    pos: np.ndarray

    def take(self, at: np.ndarray) -> _WindowStats:
        return _WindowStats(self.med[at], self.spread[at], self.cnt[at], self.pos[at])


def _learn_category(asked: _EffectQuery, c: int, best: _BestEffects) -> None:
    """Offer ``best`` category ``c``'s effect at every queried row on it, split by business day.

    Business days and weekend days of a category first (a table closing on the last business day
    shows nothing on a Sunday month end), then both pooled where that split has too few.
    """
    rules, rows, business = asked.rules, asked.rows, asked.business
    in_cat = asked.cats[rows, c]
    cat_cnt = np.zeros(len(rows))
    for b in (True, False, None):
        if b is None:
            on = np.flatnonzero(asked.cats[:, c])
            q = np.flatnonzero(in_cat & (cat_cnt < rules.min_occurrences + asked.centred))
        else:
            on = np.flatnonzero(asked.cats[:, c] & (business == b))
            q = np.flatnonzero(in_cat & (business[rows] == b))
        if not len(on) or not len(q):
            continue
        stats = _split_stats(asked, c, on, q, best)
        # a holiday's evidence is every earlier holiday with a value, not only those that moved it
        cat_cnt[q] = np.maximum(cat_cnt[q], best.holiday_seen[q] if c == HOLIDAY else stats.cnt)
        ok = _supported(stats, asked.noise_rel[q], rules, asked.centred)
        best.offer(q, ok, stats, c, pooled=b is None)
    best.evidence[in_cat] = np.minimum(best.evidence[in_cat], cat_cnt[in_cat])


def _split_stats(asked: _EffectQuery, c: int, on: np.ndarray, q: np.ndarray, best: _BestEffects) -> _WindowStats:
    """The window of occurrences ``on`` of category ``c`` at each queried row ``q``.

    How many holidays had a value at all, moved or not, goes to ``best.holiday_seen``: that is a
    holiday's evidence, though only the moving ones teach its effect.
    """
    at = np.searchsorted(on, asked.rows[q])
    r = asked.ratios[on]
    k, codes = asked.rules.occurrences, asked.series_codes[on]
    if c == HOLIDAY:
        # holidays: learnt from the occurrences that moved the value (see apply_effects)
        seen = _occurrence_count(codes, r, k, asked.centred)[at]
        best.holiday_seen[q] = np.maximum(best.holiday_seen[q], seen)
        r = np.where(np.abs(r) > np.log1p(asked.rules.strong_change), r, np.nan)
    if asked.centred:
        return _occurrence_stats(codes, r, k, asked.centred).take(at)
    return _occurrence_stats_at(codes, r, k, at)


def _supported(stats: _WindowStats, noise: np.ndarray, rules: EffectRules, centred: bool) -> np.ndarray:
    """Where the windows' median effect is large, consistent and seen often enough (module docstring)."""
    floor = max(np.log1p(rules.min_relative_change), 1e-9)
    med = stats.med
    big = np.abs(med) > np.maximum(rules.noise_factor * noise, floor)
    strong = np.abs(med) > np.maximum(2 * rules.noise_factor * noise, np.log1p(rules.strong_change))
    same_sign = np.where(med > 0, stats.pos, 1.0 - stats.pos) >= rules.consistency
    # centred windows hold the point itself: a strong effect needs one other occurrence there
    enough = (stats.cnt >= rules.min_occurrences) | (strong & (stats.cnt >= 1 + centred))
    return enough & big & same_sign & np.isfinite(med)


def _occurrence_count(codes: np.ndarray, ratios: np.ndarray, k: int, centred: bool) -> np.ndarray:
    """Occurrences with a value in each occurrence's window (as :func:`_occurrence_stats` counts them)."""
    window = 2 * (k // 2) + 1 if centred else k
    pad = Padded(codes, window + 1)
    kw = {"strictly_before": not centred, "center": centred}
    return np.nan_to_num(pad.rolling(ratios, window, "count", min_periods=0, **kw))


def _occurrence_stats(codes: np.ndarray, ratios: np.ndarray, k: int, centred: bool) -> _WindowStats:
    """The statistics of each occurrence's window (its ``k`` predecessors, or centred on it)."""
    window = 2 * (k // 2) + 1 if centred else k
    pad = Padded(codes, window + 1)
    kw = {"strictly_before": not centred, "center": centred}
    med = pad.rolling(ratios, window, "median", **kw)
    q1 = pad.rolling(ratios, window, "quantile", q=0.25, **kw)
    q3 = pad.rolling(ratios, window, "quantile", q=0.75, **kw)
    cnt = np.nan_to_num(pad.rolling(ratios, window, "count", min_periods=0, **kw))
    positive = np.where(np.isnan(ratios), np.nan, (ratios > 0).astype(np.float64))
    pos = np.nan_to_num(pad.rolling(positive, window, "mean", **kw), nan=0.5)
    return _WindowStats(med, np.nan_to_num((q3 - q1) / 1.349), cnt, pos)


def _occurrence_stats_at(codes: np.ndarray, ratios: np.ndarray, k: int, at: np.ndarray) -> _WindowStats:
    """``_occurrence_stats(codes, ratios, k, centred=False).take(at)``, computed at ``at`` only.

    The scorer asks for the windows of its new points only (a few per series), not of every
    earlier occurrence: their order statistics from :func:`window_quantiles` (the numbers pandas'
    rolling median and quantiles give) and the share positive from running counts (a mean of 0/1
    flags is a ratio of counts, exactly as pandas computes it).
    """
    pad = Padded(codes, k + 1)
    buf = pad.buffer(ratios)
    ends = pad.pos[at] - 1  # strictly before the occurrence
    (med, q1, q3), cnt = window_quantiles(buf, ends, k, [0.5, 0.25, 0.75])
    ones = np.zeros(len(buf) + 1, dtype=np.int64)
    np.cumsum(buf > 0, out=ones[1:])  # NaN compares False
    n_pos = ones[ends + 1] - ones[ends + 1 - k]
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.where(cnt > 0, n_pos / cnt, 0.5)
    return _WindowStats(med, np.nan_to_num((q3 - q1) / 1.349), cnt.astype(np.float64), pos)


def apply_effects(
    expected: np.ndarray,
    scale: np.ndarray,
    effects: Effects,
    floor_rel: float,
    values: np.ndarray | None = None,
    rules: EffectRules | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected value and scale with the supported effects applied (unchanged elsewhere).

    With ``values`` (the points being judged), a holiday is judged against whichever of its two
    baselines it fits better, the ordinary day's or the holiday effect's: the holidays a user
    declares are often the union of several calendars (two countries, a bank's and a shop's), so
    a series that closes on most of them may open on the next, and an ordinary value on such a day
    is no incident. A month or quarter end is one convention of one business and keeps its effect,
    once it has recurred: an effect resting on one strong occurrence (``Effects.thin``) is judged
    like a holiday, because the surge may belong to another of the day's categories.
    Declared holidays the series has not shown enough of get ``rules.unproven_holiday_widening``
    times the scale.

    A holiday is also judged on the log scale with at least ``rules.holiday_spread`` (one the
    series has not shown yet only when it drops): one holiday closes
    a table to a tenth and the next to a half, so a single earlier closure says the day drops, not
    by how much. A drop judged by ratios stays a drop however deep, while an empty load (a ratio of
    1/1000) is still far outside; the scale returned is the linear one with the same z.
    """
    unproven_widening = rules.unproven_holiday_widening if rules else 1.0
    holiday_spread = rules.holiday_spread if rules else 0.0
    factor = np.exp(effects.log_ratio)
    exp2 = np.where(effects.applies, expected * factor, expected)
    spread_scale = np.abs(exp2) * np.maximum(effects.spread, floor_rel)
    scale2 = np.where(effects.applies, np.fmax(scale * factor, spread_scale), scale)
    scale2 = np.where(effects.unproven_holiday, scale2 * unproven_widening, scale2)
    if values is None:
        return exp2, scale2
    # a holiday the series has not shown yet is tolerated a drop (closed), not a surge: a doubled
    # load on another country's holiday is still a duplicated load
    holiday = (effects.category == HOLIDAY) | (effects.unproven_holiday & (values < exp2))
    if holiday_spread > 0 and holiday.any():
        spread = np.where(effects.category == HOLIDAY, np.maximum(effects.spread, holiday_spread), holiday_spread)
        # the ratio's spread replaces the linear one (which would call an empty load 2 spreads off);
        # the series' own noise, carried to the holiday's level, stays the least scale
        noise = np.where(effects.applies, scale * factor, scale2)
        scale2 = np.where(holiday, np.fmax(noise, _log_equivalent_scale(values, exp2, spread)), scale2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ordinary_fits = np.abs(values - expected) / scale < np.abs(values - exp2) / scale2
    # a value on the far side of the ordinary day from the effect (a surge on a day that closes)
    # is judged against the ordinary day: the effect's ratio spread must not make it look near
    ordinary_fits |= (values - expected) * effects.log_ratio < 0
    # an effect learnt from one strong occurrence may belong to another of the day's categories
    # (March's quarter-end surge to the month end): until it recurs, an ordinary value is no incident
    keep = ((effects.category == HOLIDAY) | effects.thin) & ordinary_fits
    return np.where(keep, expected, exp2), np.where(keep, scale, scale2)


def _log_equivalent_scale(values: np.ndarray, expected: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The linear scale giving ``values`` the z they have on the log scale: log(v / e) / spread.

    Near the expected value the two agree (``e * spread``); NaN where the ratio is undefined.
    """
    lz = np.abs(log_ratio(values, expected)) / spread
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(values - expected) / lz
    return np.where(lz > 1e-6, out, np.abs(expected) * spread)


__all__ = [
    "CATEGORIES",
    "HOLIDAY",
    "MONTH_END",
    "WORDS",
    "EffectRules",
    "Effects",
    "apply_effects",
    "calendar_categories",
    "learn_effects",
    "log_ratio",
]
