"""The HTML report: self-contained, one plot per anomalous series, the full table, and cheap."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

from dqad.report import MAX_PLOTS, deviation, fmt_value, render_report

POINTS = [
    ("sales.orders", "row_count", 0, 2.9e6, 3.4e6, "high"),
    ("sales.orders", "sum_amount", 0, 4.3e7, 5.3e7, "high"),
    ("crm.contacts", "null_pct", 9.5, 0, 3, "low"),
    ("crm.contacts", "row_count", 1000, 900, 1100, ""),
]


def history_for(scores: pd.DataFrame, days: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ts = pd.date_range("2026-08-04 02:16:07", periods=days, freq="D")
    frames = []
    for series, group, mid in zip(
        scores["series"], scores["group"], (scores["expected_low"] + scores["expected_high"]) / 2, strict=True
    ):
        values = mid * (1 + rng.normal(0, 0.03, days))
        label = np.zeros(days, dtype=np.int8)
        label[10] = 1
        frames.append(
            pd.DataFrame({"series": series, "group": group, "timestamp": ts, "value": values, "label": label})
        )
    return pd.concat(frames, ignore_index=True)


def test_report_is_self_contained_with_one_plot_per_anomalous_series(scores) -> None:
    s = scores(POINTS)
    html = render_report("shop_dq", "run-a", history_for(s), s, "v1", {"f1": 0.91, "precision": 0.9})
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", html)
    assert [a for a, _ in images] == ["sales.orders/row_count", "sales.orders/sum_amount", "crm.contacts/null_pct"]
    assert all(len(png) > 2000 for _, png in images)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", html)  # nothing fetched from elsewhere
    assert "<script" not in html
    assert html.count("<tr") == 1 + len(s)  # header + every scored point
    assert "3 anomalies in shop_dq" in html and "2 high" in html and "f1 0.91" in html
    assert "100% below the expected range" in html


def test_clean_run_report_has_no_plots(scores) -> None:
    s = scores([(*p[:5], "") for p in POINTS])
    html = render_report("shop_dq", "run-a", history_for(s), s)
    assert "No anomalies in shop_dq" in html and "<img" not in html


def test_plots_are_capped_and_the_report_stays_cheap(scores) -> None:
    many = [(f"t{i:02d}", "row_count", 0, 90, 110, "high") for i in range(MAX_PLOTS + 6)]
    s = scores(many)
    hist = history_for(s)
    render_report("warm", "r", hist.head(200), s.head(2))  # import matplotlib once, as a warm Lambda has
    started = time.perf_counter()
    html = render_report("shop_dq", "run-a", hist, s)
    elapsed = time.perf_counter() - started
    assert html.count("<img") == MAX_PLOTS
    assert "6 more anomalous series are listed in the table below" in html
    assert elapsed < 10, f"{MAX_PLOTS} plots took {elapsed:.1f}s"  # generous: shared CI machines


@pytest.mark.parametrize(
    ("value", "low", "high", "text"),
    [
        (0, 100, 200, "100% below the expected range"),
        (220, 100, 200, "10% above the expected range"),
        (150, 100, 200, "within the expected range"),
        (5, 0, 0, "above the expected range"),
        (200.5, 100, 200, "<1% above the expected range"),
    ],
)
def test_deviation_words(value, low, high, text) -> None:
    assert deviation(value, low, high) == text


def test_fmt_value() -> None:
    assert [fmt_value(v) for v in (0, 3_157_100.4, 56.789, 0.01234, float("nan"))] == [
        "0",
        "3,157,100",
        "56.8",
        "0.0123",
        "n/a",
    ]
