"""The HTML report of a run: one plot per anomalous series and the full table, in one file.

The report is what a business user opens from the alert email, so it has to answer at a glance
*what broke, how far from normal, since when*: a summary, then one card per anomalous series
(recent history, the expected range of the new load, the flagged point, the reason), grouped by
table worst first, then every scored point.

Self-contained (images are embedded as base64 PNG, CSS inline, no script) so it opens from a
presigned S3 link, as an attachment or from an archive without a web server.

It is rendered by the scorer on every run, so it must be cheap: matplotlib is imported lazily
(only when there is something to plot) with the Agg backend, one small figure is reused for every
plot instead of building one per series, layout is fixed instead of ``tight_layout`` and at most
``MAX_PLOTS`` series are drawn (the table still lists everything).

The wording helpers (:func:`dqad.wording.fmt_value`, :func:`deviation`, :func:`rank_order`,
:func:`severity_counts`) are shared with the email digest, so the email and the report never disagree
on a number or an order. They are plain Python: the notifier ships without pandas, numpy or
matplotlib, which only the scorer's rendering (:func:`render_report`) imports, inside the functions
that use them.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import TYPE_CHECKING, Any

from dqad.wording import fmt_value, is_missing, plural

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dqad.incidents import Incident

HISTORY_POINTS = 60
MAX_PLOTS = 24
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
SEVERITIES = ("high", "medium", "low")

# Plot geometry: two cards per row in a 1200 px page; 100 dpi keeps PNGs small (~15 kB each).
_FIG_SIZE = (5.6, 2.2)
_DPI = 100
_COLORS = {
    "history": "#64748b",
    "past": "#f59e0b",
    "band": "#16a34a",
    "new": "#334155",
    "flag": "#dc2626",
    "grid": "#e2e8f0",
}


# -- wording shared with the email --------------------------------------------------------------------
def _short(v: float) -> str:
    """Compact axis label: 2.9M, 48k, 0.35."""
    a = abs(v)
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= factor:
            return f"{v / factor:.3g}{suffix}"
    return f"{v:.3g}"


def _number(v: object) -> float | None:
    return None if is_missing(v) or not isinstance(v, Real) else float(v)


def deviation(value: object, low: object, high: object) -> str:
    """How far outside the expected range a value is, in words ("100% below the expected range").

    Measured from the nearest edge of the range, so "10% above" means 10% more than the highest
    value that would still have been normal, not 10% above an average nobody sees. Takes what a
    frame or a Parquet row holds (a float, None, NaN); anything not a number gives "".
    """
    v, lo, hi = _number(value), _number(low), _number(high)
    if v is None or lo is None or hi is None:
        return ""
    if v < lo:
        base, word, diff = lo, "below", lo - v
    elif v > hi:
        base, word, diff = hi, "above", v - hi
    else:
        return "within the expected range"
    if base == 0:
        return f"{word} the expected range"
    pct = 100 * diff / abs(base)
    pct_text = f"{pct:,.0f}%" if pct >= 1 else "<1%"
    return f"{pct_text} {word} the expected range"


def metric_name(series: str, group: str) -> str:
    """The series name without its table prefix: the email and report already say which table."""
    prefix = f"{group}/"
    return series[len(prefix) :] if group and series.startswith(prefix) and series != group else series


def rank_order(
    severity: Sequence[str], score: Sequence[float], series: Sequence[str], group: Sequence[str]
) -> list[tuple[int, int]]:
    """Anomalies worst first, as ``(position, group rank)`` pairs: the one ranking rule of email and report.

    Severity, then score (highest first), then series name; a table's rank is its worst anomaly, so
    the table with the empty load comes before the table with a slightly high sum, whatever their names.
    Plain Python over columns, so the notifier ranks its rows without pandas.
    """
    sev = [SEVERITY_ORDER.get(str(s), len(SEVERITY_ORDER)) for s in severity]
    neg = [-float(x) if not is_missing(x) else math.inf for x in score]  # a missing score ranks last
    worst_first = sorted(range(len(sev)), key=lambda i: (sev[i], neg[i], str(series[i])))
    rank: dict[str, int] = {}
    for i in worst_first:
        rank.setdefault(str(group[i]), len(rank))
    ordered = sorted(worst_first, key=lambda i: (rank[str(group[i])], sev[i], neg[i]))  # stable: ties keep names
    return [(i, rank[str(group[i])]) for i in ordered]


def rank_anomalies(anomalies: pd.DataFrame) -> pd.DataFrame:
    """The frame in :func:`rank_order`, with ``_group_rank`` ordering its tables (the report's groups)."""
    order = rank_order(
        anomalies["severity"].tolist(), anomalies["score"].tolist(), anomalies["series"].tolist(),
        anomalies["group"].tolist(),
    )  # fmt: skip
    ranked = anomalies.iloc[[i for i, _ in order]].copy()
    ranked["_group_rank"] = [g for _, g in order]
    return ranked


def severity_counts(severities: Iterable[str]) -> dict[str, int]:
    """How many anomalies of each severity, worst first, severities with none left out."""
    counts = Counter(str(s) for s in severities)
    return {s: counts[s] for s in SEVERITIES if counts[s]}


# -- plots --------------------------------------------------------------------------------------------
def _date_ticks(start: float, end: float, n: int = 6) -> np.ndarray:
    """About ``n`` tick positions (matplotlib date numbers, in days) on whole days, or hours if shorter."""
    import numpy as np

    span = end - start
    unit = 1.0 if span >= 3 else 1 / 24
    raw = span / max(n - 1, 1)
    nice = [1, 2, 3, 6, 12] if unit < 1 else [1, 2, 7, 14, 30, 61, 91, 182, 365]
    step = unit * next((k for k in nice if k * unit >= raw), nice[-1])
    first = np.ceil(start / step) * step
    return np.arange(first, end + 1e-9, step)


@dataclass(frozen=True)
class _PlotData:
    """One series' arrays, converted once per plot: the band, the lines, the points and the limits all read them."""

    h_t: np.ndarray  # history times
    h_v: np.ndarray  # history values
    n_t: np.ndarray  # new points' times
    n_v: np.ndarray  # new points' values
    low: np.ndarray  # expected range of the new points
    high: np.ndarray
    ok: np.ndarray  # new points with both ends of their range
    flagged: np.ndarray  # new points flagged as anomalies
    past: np.ndarray | None  # history points labelled as anomalies, when the history has labels
    all_t: np.ndarray
    step: float  # the usual spacing of the loads, in days


def _plot_data(hist: pd.DataFrame, new: pd.DataFrame, date2num: Callable[[Any], np.ndarray]) -> _PlotData:
    import numpy as np

    h_t = date2num(hist["timestamp"].to_numpy(dtype="datetime64[ns]"))
    n_t = date2num(new["timestamp"].to_numpy(dtype="datetime64[ns]"))
    all_t = np.concatenate([h_t, n_t])
    step = float(np.median(np.diff(all_t))) if len(all_t) > 2 else 1.0
    low = new["expected_low"].to_numpy(dtype=float)
    high = new["expected_high"].to_numpy(dtype=float)
    return _PlotData(
        h_t=h_t,
        h_v=hist["value"].to_numpy(dtype=float),
        n_t=n_t,
        n_v=new["value"].to_numpy(dtype=float),
        low=low,
        high=high,
        ok=~(np.isnan(low) | np.isnan(high)),
        flagged=new["is_anomaly"].to_numpy(dtype=bool),
        past=hist["label"].to_numpy() == 1 if "label" in hist else None,
        all_t=all_t,
        step=step if step > 0 else 1.0,
    )


class _Plotter:
    """One reusable Agg figure and axes; each plot swaps the data artists and keeps the rest.

    Building a figure, and above all clearing axes (which rebuilds every tick), costs several times
    more than drawing the lines, so the axes are styled once and only the data changes per series.
    """

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import dates as mdates
        from matplotlib import ticker
        from matplotlib.figure import Figure

        # Figure() without pyplot: no global registry to leak into, safe in a long-lived Lambda.
        self.fig = Figure(figsize=_FIG_SIZE, dpi=_DPI, facecolor="white")
        self.fig.subplots_adjust(left=0.1, right=0.985, top=0.95, bottom=0.14)
        ax = self.ax = self.fig.add_subplot()
        # x ticks are placed by hand (see _frame): date locators walk rrules, which costs more than the plot.
        self.fixed_locator = ticker.FixedLocator
        self.date_formatter = mdates.DateFormatter
        ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: _short(v)))
        ax.tick_params(labelsize=7.5, colors="#475569", length=0, pad=3)
        ax.grid(axis="y", color=_COLORS["grid"], lw=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color("#cbd5e1")
        self.date2num = mdates.date2num
        self._artists: list = []

    def render(self, hist: pd.DataFrame, new: pd.DataFrame) -> str:
        """PNG (base64) of one series: recent history, expected range of the new points, flags."""
        for artist in self._artists:
            artist.remove()
        data = _plot_data(hist, new, self.date2num)
        self._artists = [*self._band(data), *self._lines(data), *self._points(data)]
        self._frame(data)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=_DPI, pil_kwargs={"compress_level": 3})
        return base64.b64encode(buf.getvalue()).decode()

    def _band(self, d: _PlotData) -> list:
        """The expected range of the new points.

        One new point (a daily load): its band is widened to the left over a few loads so it reads as
        a range to compare with, not a sliver; several new points (hourly loads): one step each.
        """
        single = len(d.n_t) == 1
        width = d.step * (4.5 if single else 0.9)
        arts = list(
            self.ax.bar(
                d.n_t[d.ok] + (d.step * 0.4 - width / 2 if single else 0.0),
                (d.high - d.low)[d.ok],
                bottom=d.low[d.ok],
                width=width,
                color=_COLORS["band"],
                alpha=0.22,
                edgecolor="none",
                zorder=1,
            )
        )
        if single and d.ok[0]:
            x0 = d.n_t[0] + d.step * 0.4 - width
            arts.append(self.ax.hlines([d.low[0], d.high[0]], x0, x0 + width, color=_COLORS["band"], lw=1, zorder=1))
        return arts

    def _lines(self, d: _PlotData) -> list:
        ax = self.ax
        arts = list(ax.plot(d.h_t, d.h_v, color=_COLORS["history"], lw=1.2, zorder=2))
        if len(d.h_t) and len(d.n_t):  # join the last history point to the new load, dotted
            arts += ax.plot(
                [d.h_t[-1], d.n_t[0]], [d.h_v[-1], d.n_v[0]], color=_COLORS["history"], lw=1, ls=":", zorder=2
            )
        return arts

    def _points(self, d: _PlotData) -> list:
        """Past anomalies (labelled in the history) ringed, the new points dotted, the flagged ones red."""
        ax, flagged = self.ax, d.flagged
        arts = []
        if d.past is not None and d.past.any():
            arts.append(
                ax.scatter(
                    d.h_t[d.past], d.h_v[d.past], s=22, facecolors="none", edgecolors=_COLORS["past"], lw=1.3, zorder=3
                )
            )
        if (~flagged).any():
            arts.append(ax.scatter(d.n_t[~flagged], d.n_v[~flagged], s=18, color=_COLORS["new"], zorder=4))
        if flagged.any():
            arts.append(
                ax.scatter(
                    d.n_t[flagged], d.n_v[flagged], s=46, color=_COLORS["flag"], edgecolors="white", lw=1.2, zorder=5
                )
            )
        return arts

    def _frame(self, d: _PlotData) -> None:
        """Limits by hand: history, band and new values all visible, with a little air."""
        import numpy as np

        ax, all_t = self.ax, d.all_t
        ys = np.concatenate([d.h_v, d.n_v, d.low[d.ok], d.high[d.ok]])
        ys = ys[np.isfinite(ys)]
        if len(ys):
            lo, hi = float(ys.min()), float(ys.max())
            pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
            ax.set_ylim(lo - pad, hi + pad)
        if len(all_t):
            ax.set_xlim(all_t.min() - d.step * 0.6, all_t.max() + d.step * 0.9)
            ax.xaxis.set_major_locator(self.fixed_locator(_date_ticks(all_t.min(), all_t.max()).tolist()))
            ax.xaxis.set_major_formatter(self.date_formatter("%b %d" if all_t.max() - all_t.min() >= 3 else "%H:%M"))


# -- HTML ---------------------------------------------------------------------------------------------
_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f1f5f9;color:#0f172a;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1180px;margin:0 auto;padding:0 20px 40px}
header{background:#0f172a;color:#e2e8f0;padding:22px 0 20px;margin-bottom:22px}
header .wrap{padding-bottom:0}
header .brand{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#94a3b8}
header h1{margin:4px 0 6px;font-size:26px;color:#fff;font-weight:650}
header .meta{font-size:13px;color:#cbd5e1}
header .meta code{color:#e2e8f0}
.chips{margin-top:10px}
.chip{display:inline-block;border-radius:999px;padding:2px 10px;font-size:12px;font-weight:600;margin-right:6px}
.sev-high{background:#fee2e2;color:#991b1b}.sev-medium{background:#ffedd5;color:#9a3412}
.sev-low{background:#fef9c3;color:#854d0e}.sev-ok{background:#dcfce7;color:#166534}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-bottom:22px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:12px 16px}
.card .k{font-size:12px;color:#64748b;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:650;margin-top:2px}
.card .s{font-size:12px;color:#64748b}
h2{font-size:18px;margin:26px 0 4px}
.legend{font-size:12px;color:#475569;margin:0 0 12px}
.legend span{margin-right:14px;white-space:nowrap}
.sw{display:inline-block;width:14px;height:10px;vertical-align:-1px;margin-right:4px;border-radius:2px}
.group{margin:18px 0 6px;font-size:16px;font-weight:650;display:flex;align-items:center;gap:8px}
.group .n{font-weight:400;color:#64748b;font-size:13px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.plot{background:#fff;border:1px solid #e2e8f0;border-left:4px solid #dc2626;border-radius:8px;padding:10px 12px}
.plot.medium{border-left-color:#ea580c}.plot.low{border-left-color:#ca8a04}
.plot .t{display:flex;justify-content:space-between;align-items:baseline;gap:8px}
.plot .m{font-weight:650;font-size:14px}
.plot .when{font-size:12px;color:#64748b}
.plot .nums{font-size:13px;margin:2px 0 4px}
.plot .nums b{font-size:15px}
.plot .dev{color:#b91c1c;font-weight:600}.plot .dev.in{color:#64748b;font-weight:400}
.plot img{width:100%;height:auto;display:block}
.plot .why{font-size:12px;color:#334155;margin-top:4px}
.more{color:#64748b;font-size:13px;margin-top:8px}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #e2e8f0;border-radius:8px;font-size:12.5px}
th{position:sticky;top:0;background:#f8fafc;text-align:left;font-weight:600;color:#475569;
border-bottom:1px solid #e2e8f0;padding:7px 8px}
td{border-bottom:1px solid #f1f5f9;padding:5px 8px;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.anom td{background:#fff7f7}
tr.anom td:first-child{box-shadow:inset 3px 0 #dc2626}
.why-cell{color:#475569;max-width:380px}
.incident{background:#fff;border:1px solid #e2e8f0;border-left:4px solid #dc2626;border-radius:8px;
padding:10px 12px;margin-bottom:8px}.incident.medium{border-left-color:#ea580c}.incident.low{border-left-color:#ca8a04}
.incident .t{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}.incident .m{font-weight:650}
.incident .when{font-size:12px;color:#64748b}.incident .ev{font-size:12.5px;color:#334155;margin-top:4px}
.incident ul{margin:4px 0 0;padding-left:20px;font-size:13px}
footer{margin-top:26px;font-size:12px;color:#64748b}
footer code{background:#e2e8f0;padding:1px 5px;border-radius:4px;color:#0f172a}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _chips(counts: dict[str, int]) -> str:
    if not counts:
        return "<span class='chip sev-ok'>no anomalies</span>"
    return "".join(f"<span class='chip sev-{s}'>{n} {s}</span>" for s, n in counts.items())


def _metrics_text(model_metrics: dict | None) -> str:
    if not model_metrics:
        return ""
    shown = [(k, v) for k, v in sorted(model_metrics.items()) if k in ("precision", "recall", "f1", "pr_auc")]
    return ", ".join(f"{k.replace('_', '-')} {float(v):.2f}" for k, v in shown)


def _table(scores: pd.DataFrame) -> str:
    """Every scored point, anomalies first. Built column-wise: thousands of rows stay fast."""
    if scores.empty:
        return "<p class='more'>No points were scored in this run.</p>"
    ordered = scores.assign(_sev=scores["severity"].map(SEVERITY_ORDER).fillna(3))
    ordered = ordered.sort_values(["is_anomaly", "_sev", "score"], ascending=[False, True, False], kind="stable")
    groups = ordered["group"].astype(str)
    series = ordered["series"].astype(str)
    metrics = [metric_name(s, g) for s, g in zip(series, groups, strict=True)]
    times = ordered["timestamp"].dt.strftime("%Y-%m-%d %H:%M")
    rows = []
    for anom, g, m, t, v, lo, hi, sc, sev, why in zip(
        ordered["is_anomaly"],
        groups,
        metrics,
        times,
        ordered["value"],
        ordered["expected_low"],
        ordered["expected_high"],
        ordered["score"],
        ordered["severity"].fillna(""),
        ordered["reasons"].fillna(""),
        strict=True,
    ):
        sev_html = f"<span class='chip sev-{_esc(sev)}'>{_esc(sev)}</span>" if anom and sev else ""
        rows.append(
            f"<tr{' class=anom' if anom else ''}><td>{_esc(g)}</td><td>{_esc(m)}</td><td>{t}</td>"
            f"<td class=n>{fmt_value(v)}</td><td class=n>{fmt_value(lo)} – {fmt_value(hi)}</td>"
            f"<td class=n>{sc:.2f}</td><td>{sev_html}</td><td class=why-cell>{_esc(why) if anom else ''}</td></tr>"
        )
    return (
        "<table><thead><tr><th>table</th><th>metric</th><th>load time (UTC)</th><th>actual</th>"
        "<th>expected range</th><th>score</th><th>severity</th><th>why</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def render_report(
    dataset: str,
    run_id: str,
    history: pd.DataFrame,
    scores: pd.DataFrame,
    model_version: str = "",
    model_metrics: dict | None = None,
    generated_at: datetime | None = None,
    incidents: Sequence[Incident] = (),
) -> str:
    """The run's report as one HTML string (UTF-8), images embedded.

    ``history`` is the labelled history (``label`` marks past anomalies when present); ``scores``
    the scorer's output for the new load; ``incidents`` what happened to the loads, shown first
    (a reader acts on "loaded empty", the metric cards below are the evidence).
    """
    anomalies = rank_anomalies(scores[scores["is_anomaly"].astype(bool)])
    counts = severity_counts(anomalies["severity"])
    n = len(anomalies)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    loads = scores["timestamp"]
    load_span = f"{loads.min():%Y-%m-%d %H:%M} – {loads.max():%Y-%m-%d %H:%M} UTC" if len(loads) else "no new load"
    title = f"{plural(n, 'anomaly', 'anomalies')} in {dataset}" if n else f"No anomalies in {dataset}"
    metrics_txt = _metrics_text(model_metrics)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>dqad · {_esc(dataset)} · {_esc(run_id)}</title><style>{_CSS}</style></head><body>",
        "<header><div class=wrap><div class=brand>dqad · data-quality report</div>",
        f"<h1>{_esc(title)}</h1>",
        f"<div class=meta>run <code>{_esc(run_id)}</code> · loads {load_span} · generated {generated}</div>",
        f"<div class=chips>{_chips(counts)}</div></div></header><div class=wrap>",
        "<section class=cards>",
        f"<div class=card><div class=k>anomalies</div><div class=v>{n}</div>"
        f"<div class=s>{plural(anomalies['series'].nunique() if n else 0, 'series', 'series')} flagged</div></div>",
        f"<div class=card><div class=k>tables affected</div><div class=v>{anomalies['group'].nunique() if n else 0}"
        f"</div><div class=s>of {scores['group'].nunique()} loaded</div></div>",
        f"<div class=card><div class=k>points scored</div><div class=v>{len(scores):,}</div>"
        f"<div class=s>{scores['series'].nunique():,} series</div></div>",
        f"<div class=card><div class=k>model</div><div class=v style='font-size:15px;padding-top:6px'>"
        f"{_esc(model_version or 'n/a')}</div><div class=s>{_esc(metrics_txt or 'validation metrics n/a')}</div></div>",
        "</section>",
    ]
    if incidents:
        parts.append(incidents_section(incidents))
    if n:
        parts.append(_anomaly_section(anomalies, history, scores))
    parts += [
        "<h2>All scored points</h2>",
        "<p class=legend>Anomalies first, worst first. Expected range: what the model considered normal for "
        "this load, given the series' history and seasonality.</p>",
        _table(scores),
        "<footer>Is a flagged point expected (a planned backfill, a holiday)? Use the links in the alert email, "
        f"or run <code>dqad feedback --dataset {_esc(dataset)} --series SERIES --timestamp TIME --label normal"
        "</code>: the next run learns from it and will not flag the same pattern again.</footer>",
        "</div></body></html>",
    ]
    return "".join(parts)


def metric_label(series: str, group: str) -> str:
    """:func:`dqad.incidents.metric_label` (imported here: the incidents module needs nothing from the report)."""
    from dqad.incidents import metric_label as label

    return label(series, group)


def incidents_section(incidents: Sequence[Incident]) -> str:
    """What happened, one line per incident, worst first; its metrics in words beneath it."""
    parts = ["<h2>Incidents</h2><div class=incidents>"]
    for i in incidents:
        sev = _esc(i.severity or "low")
        parts.append(
            f"<div class='incident {sev}'><div class=t><span class='chip sev-{sev}'>{_esc(i.kind.words)}</span>"
            f"<span class=m>{_esc(i.summary)}</span><span class=when>load {i.timestamp:%Y-%m-%d %H:%M} UTC"
            + (f" · job {_esc(i.job)}" if i.job else "")
            + "</span></div>"
        )
        if i.details:
            parts.append("<ul>" + "".join(f"<li>{_esc(d)}</li>" for d in i.details) + "</ul>")
        cited = [m for m in i.metrics if m.is_anomaly][:8]
        if cited:
            parts.append(
                "<div class=ev>"
                + " · ".join(
                    f"{_esc(m.words)}: <b>{fmt_value(m.value)}</b> (expected {fmt_value(m.expected_low)} – "
                    f"{fmt_value(m.expected_high)})"
                    for m in cited
                )
                + "</div>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _anomaly_section(anomalies: pd.DataFrame, history: pd.DataFrame, scores: pd.DataFrame) -> str:
    plotted = anomalies.drop_duplicates("series").head(MAX_PLOTS)
    wanted = set(plotted["series"])
    hist_by = {
        s: g.sort_values("timestamp").tail(HISTORY_POINTS)
        for s, g in history[history["series"].isin(wanted)].groupby("series", sort=False)
    }
    new_by = {s: g.sort_values("timestamp") for s, g in scores[scores["series"].isin(wanted)].groupby("series")}
    empty = history.iloc[0:0]
    plotter = _Plotter()
    parts = [
        "<h2>Anomalies by table</h2>",
        "<p class=legend><span><span class=sw style='background:#64748b;height:3px;vertical-align:3px'></span>"
        f"last {HISTORY_POINTS} loads</span><span><span class=sw style='background:#16a34a55;border:1px solid "
        "#16a34a'></span>expected range of the new load</span><span><span class=sw style='background:#dc2626;"
        "border-radius:50%;width:10px'></span>flagged</span><span><span class=sw style='border:1.5px solid "
        "#f59e0b;border-radius:50%;width:10px'></span>past anomaly (labelled)</span></p>",
    ]
    for _group, rows in plotted.groupby("_group_rank", sort=True):
        g = str(rows["group"].iloc[0])
        in_group = anomalies[anomalies["group"] == g]
        worst = str(in_group["severity"].iloc[0])
        parts.append(
            f"<div class=group>{_esc(g)}<span class='chip sev-{_esc(worst)}'>{_esc(worst)}</span>"
            f"<span class=n>{plural(len(in_group), 'anomaly', 'anomalies')}</span></div><div class=grid>"
        )
        for row in rows.itertuples(index=False):
            series = str(row.series)
            png = plotter.render(hist_by.get(series, empty), new_by[series])
            sev = str(row.severity)
            dev = deviation(row.value, row.expected_low, row.expected_high)
            parts.append(
                f"<div class='plot {_esc(sev)}'><div class=t><span class=m>{_esc(metric_label(series, g))}</span>"
                f"<span class=when>load {row.timestamp:%Y-%m-%d %H:%M} UTC · score {row.score:.2f}</span></div>"
                f"<div class=nums>actual <b>{fmt_value(row.value)}</b> · expected {fmt_value(row.expected_low)} – "
                f"{fmt_value(row.expected_high)} <span class='dev{' in' if dev.startswith('within') else ''}'>"
                f"{_esc(dev)}</span></div>"
                f"<img alt='{_esc(series)}' src='data:image/png;base64,{png}'>"
                f"<div class=why>{_esc(row.reasons or '')}</div></div>"
            )
        parts.append("</div>")
    not_plotted = anomalies["series"].nunique() - len(plotted)
    if not_plotted > 0:
        parts.append(
            f"<p class=more>{plural(not_plotted, 'more anomalous series is', 'more anomalous series are')} "
            "listed in the table below (plots are capped to keep the report light).</p>"
        )
    return "".join(parts)
