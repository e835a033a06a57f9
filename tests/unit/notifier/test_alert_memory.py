"""The notifier's memory: repeats, continuing incidents, recovery, load-time jitter, merging."""

from __future__ import annotations

from datetime import datetime, timedelta

from dqad_notifier.state import AlertState, decide, realert_due

BROKEN = [
    ("sales.orders", "row_count", 0, 2.9e6, 3.4e6, "high"),
    ("crm.contacts", "null_pct", 9.5, 0, 3, "low"),
]
HEALTHY = [
    ("sales.orders", "row_count", 3.1e6, 2.9e6, 3.4e6, ""),
    ("crm.contacts", "null_pct", 1.0, 0, 3, ""),
]


def test_first_alert_then_repeat_is_suppressed(points) -> None:
    first = decide(AlertState(), points(BROKEN), 24, "low")
    assert len(first.alert) == 2 and first.suppressed == 0
    again = decide(first.state, points(BROKEN), 24, "low")
    assert not again.alert and again.repeated == 2


def test_continuing_incident_waits_for_the_interval_with_jitter_tolerance(points) -> None:
    d0 = decide(AlertState(), points(BROKEN, "2026-11-02 02:16"), 48, "low")
    d1 = decide(d0.state, points(BROKEN, "2026-11-03 02:10"), 48, "low")
    assert not d1.alert and d1.continuing == 2
    d2 = decide(d1.state, points(BROKEN, "2026-11-04 02:09"), 48, "low")  # 47h53m: within tolerance
    assert len(d2.alert) == 2
    assert {p.ongoing_since for p in d2.alert} == {datetime(2026, 11, 2, 2, 16)}


def test_recovery_closes_the_incident(points) -> None:
    d0 = decide(AlertState(), points(BROKEN, "2026-11-02"), 24 * 7, "low")
    ok = decide(d0.state, points(HEALTHY, "2026-11-03"), 24 * 7, "low")
    assert not ok.alert and ok.state.incidents == {}
    d2 = decide(ok.state, points(BROKEN, "2026-11-04"), 24 * 7, "low")
    assert len(d2.alert) == 2 and all(p.ongoing_since is None for p in d2.alert)


def test_min_severity(points) -> None:
    d = decide(AlertState(), points(BROKEN), 24, "medium")
    assert [p.series for p in d.alert] == ["sales.orders/row_count"] and d.below_threshold == 1


def test_realert_tolerance_is_bounded() -> None:
    assert realert_due(timedelta(hours=23, minutes=1), 24)
    assert not realert_due(timedelta(hours=22, minutes=59), 24)
    assert not realert_due(timedelta(hours=166, minutes=59), 168)  # at most 1 h early
    assert realert_due(timedelta(0), 0)


def test_merge_keeps_what_either_writer_mailed(points) -> None:
    a = decide(AlertState(), points(BROKEN[:1]), 24, "low").state
    b = decide(AlertState(), points(BROKEN[1:]), 24, "low").state
    merged = a.merge(b)
    assert len(merged.alerted) == 2 and set(merged.incidents) == {"sales.orders/row_count", "crm.contacts/null_pct"}


def test_state_is_pruned(points) -> None:
    old = decide(AlertState(), points(BROKEN[:1], "2026-01-01"), 24, "low").state
    new = decide(old, points(BROKEN[1:], "2026-11-01"), 24, "low").state
    assert [k.split("\x1f")[0] for k in new.alerted] == ["crm.contacts/null_pct"]
    assert list(new.incidents) == ["crm.contacts/null_pct"]
