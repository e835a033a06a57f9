"""Incidents named from the evidence: each rule on the values a broken load produces, job merging, JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from dqad.incidents import Incident, Kind, MetricRoles, Rules, dumps, find_incidents, loads, merge_by_job
from dqad.wording import metric_words

T = datetime(2026, 11, 2, 2, 16)


@dataclass(frozen=True)
class P:
    series: str
    value: float | None
    expected_low: float | None
    expected_high: float | None
    is_anomaly: bool = True
    severity: str = "high"
    score: float = 0.9
    group: str = "sales.order_lines"
    timestamp: datetime = T


def load(table: str = "sales.order_lines", ts: datetime = T, **metrics: tuple) -> list[P]:
    """Points of one load: metric=(value, low, high[, is_anomaly])."""
    return [P(f"{table}/{m}", *v, group=table, timestamp=ts) for m, v in metrics.items()]


NORMAL = {"distinct_count": (1.2e6, 1.1e6, 1.3e6, False), "null_pct": (1.0, 0.0, 3.0, False)}


def one(points: list[P], **kw) -> Incident:
    found = find_incidents(points, **kw)
    assert len(found) == 1, found
    return found[0]


def test_an_empty_load_is_one_incident_with_the_usual_size_in_words() -> None:
    inc = one(load(row_count=(0, 2.9e6, 3.3e6), sum_amount=(0, 4.3e7, 5.2e7), null_pct=(0, 0, 3.6)))
    assert inc.kind is Kind.EMPTY and inc.kind.words == "empty load"
    assert inc.summary == "sales.order_lines loaded empty: 0 rows instead of about 3.1 million"
    assert {m.metric for m in inc.metrics} == {"row_count", "sum_amount", "null_pct"}
    assert inc.severity == "high" and inc.tables == ("sales.order_lines",)


def test_rows_well_below_the_range_are_a_partial_load() -> None:
    inc = one(load(row_count=(1.2e6, 2.9e6, 3.3e6), **NORMAL))
    assert inc.kind is Kind.PARTIAL
    assert "1.2 million rows instead of about 3.1 million (39% of the usual)" in inc.summary


def test_twice_the_rows_and_the_total_is_a_duplicated_load_but_not_1_4_times() -> None:
    twice = one(load(row_count=(2.31e6, 1.10e6, 1.21e6), sum_amount=(3.7e9, 1.7e9, 2.1e9), **NORMAL))
    assert twice.kind is Kind.DUPLICATED and "2.0× the usual" in twice.summary
    more = one(load(row_count=(1.6e6, 1.10e6, 1.21e6), **NORMAL))
    assert more.kind is Kind.OTHER and "rows loaded 32% above its range" in more.summary


def test_null_share_above_the_range_is_a_null_spike_in_words() -> None:
    inc = one(load(null_pct=(56.8, 0, 2.75), row_count=(3e6, 2.9e6, 3.3e6, False)))
    assert inc.kind is Kind.NULL_SPIKE
    assert inc.summary == "sales.order_lines: share of empty values rose to 56.8% (normally at most 2.75%)"


def test_distinct_values_collapse_while_rows_are_normal() -> None:
    inc = one(load(distinct_count=(12_000, 1.1e6, 1.3e6), row_count=(3e6, 2.9e6, 3.3e6, False)))
    assert inc.kind is Kind.DISTINCT_COLLAPSE and "distinct values collapsed to 12,000" in inc.summary
    assert any(m.metric == "row_count" and not m.is_anomaly for m in inc.metrics)  # the normal rows are cited


def test_a_value_repeating_the_previous_loads_is_stuck_only_where_it_normally_varies() -> None:
    pts = load(sum_amount=(5.0e7, 4.0e7, 4.9e7))
    varied = {"sales.order_lines/sum_amount": [4.1e7, 4.4e7, 4.6e7, 5.0e7, 5.0e7, 5.0e7]}
    assert one(pts, previous=varied).kind is Kind.STUCK
    constant = {"sales.order_lines/sum_amount": [5.0e7] * 6}
    assert one(pts, previous=constant).kind is not Kind.STUCK


def test_drift_needs_the_previous_loads_beyond_the_same_edge() -> None:
    pts = load(sum_amount=(6.0e7, 4.0e7, 4.9e7))
    assert one(pts, previous={"sales.order_lines/sum_amount": [4.5e7, 5.8e7, 6.1e7]}).kind is Kind.DRIFT
    assert one(pts, previous={"sales.order_lines/sum_amount": [4.5e7, 4.4e7, 6.1e7]}).kind is Kind.OTHER


def test_a_long_load_is_slow() -> None:
    inc = one(load(load_duration_s=(2400, 200, 320)))
    assert inc.kind is Kind.SLOW and inc.summary.startswith("sales.order_lines loaded slowly: load duration 2,400")


def test_metric_names_come_from_the_datasets_patterns_first() -> None:
    pts = load(n_loaded=(0, 2.9e6, 3.3e6))
    assert one(pts).kind is Kind.OTHER  # nothing says n_loaded counts rows
    rules = Rules(roles=MetricRoles({"row_count": ["n_loaded"]}))
    assert one(pts, rules=rules).kind is Kind.EMPTY


def test_five_tables_of_one_job_loaded_empty_are_one_incident() -> None:
    tables = [f"sales.t{i}" for i in range(5)]
    pts = [p for i, t in enumerate(tables) for p in load(t, T + timedelta(minutes=i), row_count=(0, 900, 1100))]
    jobs = dict.fromkeys(tables, "dq_sales") | {"other.t": "dq_other"}
    pts += load("other.t", row_count=(0, 900, 1100))
    found = find_incidents(pts, jobs=jobs)
    merged = next(i for i in found if i.job == "dq_sales")
    assert len(found) == 2 and merged.summary == "job dq_sales: 5 tables loaded empty"
    assert merged.tables == tuple(tables) and len(merged.details) == 5 and merged.timestamp == T
    assert {(m.series, m.timestamp) for m in merged.metrics} == {
        (f"{t}/row_count", T + timedelta(minutes=i)) for i, t in enumerate(tables)
    }


def test_loads_of_one_job_far_apart_or_of_another_kind_stay_apart() -> None:
    a = one(load("s.a", row_count=(0, 900, 1100)), jobs={"s.a": "j"})
    b = one(load("s.b", T + timedelta(hours=12), row_count=(0, 900, 1100)), jobs={"s.b": "j"})
    c = one(load("s.c", null_pct=(50, 0, 2)), jobs={"s.c": "j"})
    assert len(merge_by_job([a, b, c])) == 3


def test_json_round_trip_keeps_every_field() -> None:
    found = find_incidents(load(row_count=(0, 2.9e6, 3.3e6), null_pct=(0, 0, 3.6)), dataset="demo_dq")
    back = loads(dumps(found))
    assert back == found and back[0].dataset == "demo_dq" and back[0].id.startswith("empty_load|sales.order_lines|")
    with pytest.raises(ValueError, match="version 1"):
        loads(b'{"version": 9}')


def test_a_late_load_is_built_without_scores() -> None:
    late = Incident(Kind.LATE, ("sales.orders",), T, "medium", "sales.orders has not loaded: due 02:15, 2 hours late")
    assert loads(dumps([late])) == [late] and late.points() == set()


@pytest.mark.parametrize(
    ("metric", "role", "words"),
    [
        ("null_pct", "null_pct", "share of empty values"),
        ("row_count", "row_count", "rows loaded"),
        ("customer_id/distinct", "distinct", "distinct values in customer_id"),
        ("load_duration_s", "duration", "load duration"),
        ("sum_amount", "sum", "total"),
        ("late_fees", "", "late fees"),
    ],
)
def test_metric_names_in_words(metric: str, role: str, words: str) -> None:
    assert metric_words(metric, role) == words
    assert MetricRoles().role(metric.rsplit("/", 1)[-1]) == role
