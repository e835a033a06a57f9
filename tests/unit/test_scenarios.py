"""Tests of the scenario corpus generator (``dqad_dev.scenarios``) and its per-family scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect.holiday_calendar import holiday_dates
from dqad_dev.corpus_eval import family_metrics
from dqad_dev.evaluate import in_window
from dqad_dev.scenarios import FAMILIES, INCIDENT_KINDS, METRICS, generate_corpus


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    return generate_corpus(seed=3, tables_per_family=2, days=200)


def test_same_seed_same_corpus_other_seed_other_corpus(corpus) -> None:  # type: ignore[no-untyped-def]
    again = generate_corpus(seed=3, tables_per_family=2, days=200)
    pd.testing.assert_frame_equal(corpus.frame, again.frame)
    pd.testing.assert_frame_equal(corpus.windows, again.windows)
    other = generate_corpus(seed=4, tables_per_family=2, days=200)
    assert not corpus.frame["value"].equals(other.frame["value"])


def test_a_subset_of_families_keeps_their_tables(corpus) -> None:  # type: ignore[no-untyped-def]
    sub = generate_corpus(seed=3, tables_per_family=2, days=200, families=("weekly", "quarter_end"))
    series = set(sub.frame["series"])
    assert set(sub.families["family"]) == {"weekly", "quarter_end"}
    full = corpus.frame[corpus.frame["series"].isin(series)].reset_index(drop=True)
    pd.testing.assert_frame_equal(full, sub.frame)


def test_every_family_and_incident_kind_is_present(corpus) -> None:  # type: ignore[no-untyped-def]
    fam = corpus.families
    assert set(fam["family"]) == set(FAMILIES)
    assert (fam.groupby("family")["table"].nunique() == 2).all()
    assert set(corpus.windows["kind"]) == set(INCIDENT_KINDS) | {"level_shift"}
    # every family has labelled incidents to be scored on
    family_of = corpus.family_of()
    assert set(corpus.windows["series"].map(family_of)) == set(FAMILIES)


def test_frame_shape_names_and_cadences(corpus) -> None:  # type: ignore[no-untyped-def]
    f = corpus.frame
    assert list(f.columns) == ["series", "timestamp", "value"]
    assert f["value"].notna().all() and np.isfinite(f["value"]).all()
    table = f["series"].str.rsplit("/", n=1).str[0]
    metric = f["series"].str.rsplit("/", n=1).str[1]
    assert set(metric) == set(METRICS)
    # a table's metrics share the load timestamps (a load group)
    for _, g in f.groupby(table):
        stamps = [tuple(x["timestamp"]) for _, x in g.groupby("series")]
        assert all(s == stamps[0] for s in stamps)
    fam = f["series"].map(corpus.family_of())
    per_day = f.assign(day=f["timestamp"].dt.normalize(), fam=fam).groupby(["fam", "series", "day"]).size()
    assert per_day.loc["hourly"].median() == 24
    assert per_day.loc["multi_daily"].median() == 4
    assert per_day.loc["weekly"].max() == 1
    # the family is not in the name
    assert not any(fm in s for s in f["series"].unique() for fm in FAMILIES)


def test_bounded_and_count_families_stay_in_their_domain(corpus) -> None:  # type: ignore[no-untyped-def]
    f = corpus.frame.assign(fam=corpus.frame["series"].map(corpus.family_of()))
    pct = f[f["series"].str.endswith("/null_pct")]
    assert pct["value"].between(0, 100).all()
    counts = f[(f["fam"] == "zero_inflated") & f["series"].str.endswith("/row_count")]["value"]
    assert (counts == 0).mean() > 0.5
    small = f[(f["fam"] == "counts_near_zero") & f["series"].str.endswith("/row_count")]["value"]
    assert small.median() < 10 and (small == small.round()).all()


def test_holidays_come_from_two_country_calendars(corpus) -> None:  # type: ignore[no-untyped-def]
    start, end = corpus.frame["timestamp"].min().date(), corpus.frame["timestamp"].max().date()
    us, de = holiday_dates("US", start, end), holiday_dates("DE", start, end)
    assert corpus.holidays_by_country["US"] == us and corpus.holidays_by_country["DE"] == de
    assert set(corpus.holidays) == set(us) | set(de)
    # a US-holiday table drops on US holidays
    f = corpus.frame
    fam = f["series"].map(corpus.family_of())
    rows = f[(fam == "holidays_us") & f["series"].str.endswith("/row_count")]
    on = rows["timestamp"].dt.date.isin(us)
    for _, g in rows.assign(on=on).groupby("series"):
        assert g.loc[g["on"], "value"].median() < 0.5 * g.loc[~g["on"], "value"].median()


def test_windows_match_the_injected_incidents() -> None:
    """Each window's points differ from the incident-free counterfactual; nothing else does."""
    kw = {"seed": 5, "tables_per_family": 1, "days": 120,
          "families": ("daily_trend", "weekly", "month_end_calendar", "bounded_pct")}
    with_inc = generate_corpus(**kw)
    clean = generate_corpus(**kw, incidents_per_table=(0, 0))
    assert len(clean.windows) == 0
    m = clean.frame.merge(with_inc.frame, on=["series", "timestamp"], how="left", suffixes=("_clean", ""))
    inside = in_window(m, with_inc.windows) >= 0
    # missing loads: the point is absent and lies inside its window
    assert m.loc[m["value"].isna()].pipe(lambda x: (in_window(x, with_inc.windows) >= 0).all())
    present = m["value"].notna().to_numpy()
    changed = present & ~np.isclose(m["value"].to_numpy(), m["value_clean"].to_numpy(), rtol=1e-9)
    assert not (changed & ~inside).any(), "a value changed outside every window"
    # every window holds at least one changed or missing point (stuck values equal their predecessor,
    # which still differs from the counterfactual)
    hit = set(in_window(m[changed | ~present], with_inc.windows).tolist())
    assert hit >= set(range(len(with_inc.windows)))
    # no incident in the history part
    first = with_inc.frame.groupby("series")["timestamp"].quantile(0.15)
    assert (with_inc.windows["start"] > with_inc.windows["series"].map(first)).all()


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="unknown scenario families \\['weekley'\\]"):
        generate_corpus(families=("weekley",))


def test_family_metrics_scores_each_family_and_the_worst(corpus) -> None:  # type: ignore[no-untyped-def]
    f = corpus.frame
    truth = in_window(f, corpus.windows) >= 0
    fam = f["series"].map(corpus.family_of())
    perfect = truth
    blind_on_weekly = truth & (fam != "weekly").to_numpy()
    alarms = f.assign(perfect=perfect, blind=blind_on_weekly)
    rep = family_metrics(alarms, corpus.windows, corpus.family_of())
    assert rep.overall["perfect"]["f1"] == pytest.approx(1.0)
    assert rep.worst["blind"] == ("weekly", 0.0)
    assert rep.per_family["quarter_end"]["blind"]["f1"] == pytest.approx(1.0)
    assert "worst family" in rep.table()
