"""The HTML report of a run: one plot per anomalous series and the full table, in one file.

Self-contained (images are embedded as base64 PNG) so it can be opened from a presigned S3 link,
attached, or archived without a web server. matplotlib is imported here only, with the Agg backend,
so no other module pays for it.
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

HISTORY_POINTS = 60
MAX_PLOTS = 30


def _fmt(v: float) -> str:
    if pd.isna(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def _plot(series_history: pd.DataFrame, series_scores: pd.DataFrame, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = series_history.sort_values("timestamp").tail(HISTORY_POINTS)
    fig, ax = plt.subplots(figsize=(7.5, 2.4), dpi=90)
    ax.plot(hist["timestamp"], hist["value"], color="#4a6fa5", lw=1.2, label="history")
    if "label" in hist:
        past = hist[hist["label"] == 1]
        ax.scatter(past["timestamp"], past["value"], color="#e0a030", s=14, zorder=3, label="past anomaly")
    s = series_scores.sort_values("timestamp")
    ax.fill_between(
        s["timestamp"],
        s["expected_low"],
        s["expected_high"],
        color="#7fbf7f",
        alpha=0.35,
        label="expected range",
        step="mid",
    )
    ax.errorbar(
        s["timestamp"],
        (s["expected_low"] + s["expected_high"]) / 2,
        yerr=(s["expected_high"] - s["expected_low"]) / 2,
        fmt="none",
        ecolor="#2e8b57",
        capsize=4,
    )
    ax.plot(s["timestamp"], s["value"], "o", color="#555", ms=4)
    flagged = s[s["is_anomaly"]]
    ax.plot(flagged["timestamp"], flagged["value"], "o", color="#d62728", ms=8, label="flagged")
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper left", ncol=4, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_report(
    dataset: str,
    run_id: str,
    history: pd.DataFrame,
    scores: pd.DataFrame,
    model_version: str = "",
    model_metrics: dict | None = None,
) -> str:
    anomalies = scores[scores["is_anomaly"]].sort_values("score", ascending=False)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>dqad · {html.escape(dataset)} · {html.escape(run_id)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #ddd;padding:4px 8px;"
        "text-align:left}tr.anom{background:#fdecea}.sev-high{color:#b00020;font-weight:600}"
        ".meta{color:#666;font-size:13px}img{display:block;margin:6px 0 18px}</style></head><body>",
        f"<h1>{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} in {html.escape(dataset)}</h1>",
        f"<p class='meta'>run {html.escape(run_id)} · {len(scores)} points scored · model "
        f"{html.escape(model_version)}"
        + (
            " · validation "
            + ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted((model_metrics or {}).items())
                if k in ("precision", "recall", "f1", "pr_auc")
            )
            if model_metrics
            else ""
        )
        + "</p>",
    ]
    for series in anomalies["series"].drop_duplicates().head(MAX_PLOTS):
        png = _plot(history[history["series"] == series], scores[scores["series"] == series], series)
        parts.append(
            f"<h3>{html.escape(series)}</h3><img alt='{html.escape(series)}' src='data:image/png;base64,{png}'>"
        )
    parts.append(
        "<h2>All scored points</h2><table><tr><th>series</th><th>time</th><th>value</th>"
        "<th>expected</th><th>score</th><th>severity</th><th>why</th></tr>"
    )
    ordered = scores.sort_values(["is_anomaly", "score"], ascending=[False, False])
    for row in ordered.itertuples(index=False):
        cls = " class='anom'" if row.is_anomaly else ""
        parts.append(
            f"<tr{cls}><td>{html.escape(str(row.series))}</td><td>{row.timestamp:%Y-%m-%d %H:%M}</td>"
            f"<td>{_fmt(row.value)}</td><td>{_fmt(row.expected_low)} – {_fmt(row.expected_high)}</td>"
            f"<td>{row.score:.2f}</td><td class='sev-{html.escape(str(row.severity))}'>"
            f"{html.escape(str(row.severity))}</td><td>{html.escape(str(row.reasons))}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)
