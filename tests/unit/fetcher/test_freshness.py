"""Freshness, pure: cadences learnt from regular and irregular ETL logs, and what is judged late,
missing or not at all (dqad_fetcher.freshness). No network, no clock: every instant is given."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dqad.datasets import DatasetConfigError, FreshnessOptions, parse_catalog, parse_duration, parse_schedule
from dqad.freshness import LoadIncident
from dqad_fetcher.freshness import (
    Cadence,
    FreshnessState,
    NoJudgement,
    collapse_reruns,
    decide,
    judge,
    learn_cadence,
    slow_load,
)

OPTS = FreshnessOptions()
START = datetime(2026, 9, 1, tzinfo=UTC)  # a Tuesday


def daily(
    days: int,
    hour: int = 2,
    minute: int = 15,
    *,
    start: datetime = START,
    jitter_min: int = 0,
    skip: tuple[int, ...] = (),
    weekdays: tuple[int, ...] = tuple(range(7)),
    seed: int = 1,
) -> list[datetime]:
    rng = random.Random(seed)
    out = []
    for d in range(days):
        day = start + timedelta(days=d)
        if d in skip or day.weekday() not in weekdays:
            continue
        out.append(day.replace(hour=hour, minute=minute) + timedelta(minutes=rng.randint(0, jitter_min)))
    return out


def cadence_of(times: list[datetime], opts: FreshnessOptions = OPTS) -> Cadence:
    c = learn_cadence("sales.orders", times, opts)
    assert isinstance(c, Cadence), c
    return c


# -- learning ----------------------------------------------------------------------------------
def test_daily_load_with_jitter_is_daily_at_its_median_time() -> None:
    c = cadence_of(daily(40, jitter_min=10))
    assert c.weekdays == frozenset(range(7)) and len(c.slots) == 1
    assert 2 * 60 + 15 <= c.slots[0] <= 2 * 60 + 25
    assert c.describe().startswith("daily at 02:")
    assert c.tolerance == timedelta(minutes=30)  # the floor: 10 min of jitter is below it


def test_skipped_and_very_late_loads_do_not_change_the_cadence_but_widen_the_tolerance() -> None:
    times = daily(40, skip=(5, 17, 29))
    times[10] += timedelta(hours=3)  # one very late load out of 37
    times[20] += timedelta(minutes=50)
    times[30] += timedelta(minutes=55)
    c = cadence_of(times)
    assert c.slots == (135,) and c.weekdays == frozenset(range(7))
    assert timedelta(minutes=45) <= c.tolerance <= timedelta(hours=2)


def test_weekdays_only_cadence_is_learnt_and_saturday_is_not_late() -> None:
    times = daily(60, weekdays=(0, 1, 2, 3, 4), skip=(8,))  # one skipped Wednesday
    c = cadence_of(times)
    assert c.weekdays == frozenset(range(5)) and c.describe() == "weekdays at 02:15 UTC"
    friday = max(t for t in times if t.weekday() == 4)
    saturday_noon = friday + timedelta(days=1, hours=10)
    sunday_night = friday + timedelta(days=2, hours=21)
    for now in (saturday_noon, sunday_night):
        j = judge("sales.orders", "job", c, [t for t in times if t <= friday], now)
        assert j.status == "on_time" and j.due_at.weekday() == 0  # Monday's load is the one waited for
    monday_late = friday + timedelta(days=3, hours=1)
    assert judge("sales.orders", "job", c, [t for t in times if t <= friday], monday_late).status == "late"


def test_hourly_and_several_times_a_day() -> None:
    hourly = [START + timedelta(hours=h, minutes=5) for h in range(24 * 15)]
    c = cadence_of(hourly)
    assert c.describe() == "hourly at :05 UTC"
    assert c.tolerance == timedelta(minutes=15)  # floor scaled to a quarter of the spacing
    assert judge("t", "", c, hourly, hourly[-1] + timedelta(minutes=70)).status == "on_time"
    assert judge("t", "", c, hourly, hourly[-1] + timedelta(minutes=80)).status == "late"
    assert judge("t", "", c, hourly, hourly[-1] + timedelta(minutes=140)).status == "missing"
    three = sorted(t for h in (6, 12, 18) for t in daily(20, hour=h, minute=0))
    c3 = cadence_of(three)
    assert c3.slots == (360, 720, 1080) and c3.describe() == "daily at 06:00, 12:00 and 18:00 UTC"


def test_weekly_cadence() -> None:
    weekly = [START + timedelta(days=7 * w, hours=3) for w in range(10)]
    c = cadence_of(weekly)
    assert c.weekdays == frozenset({START.weekday()}) and c.describe() == "weekly on Tue at 03:00 UTC"
    last = weekly[-1]
    assert judge("t", "", c, weekly, last + timedelta(days=6)).status == "on_time"
    assert judge("t", "", c, weekly, last + timedelta(days=7, hours=1)).status == "late"
    assert judge("t", "", c, weekly, last + timedelta(days=14, hours=1)).status == "missing"


def test_dst_in_the_schedule_time_zone_keeps_local_time() -> None:
    paris = ZoneInfo("Europe/Paris")
    # daily 02:15 Paris time across the end of summer time (25 October 2026)
    times = [datetime(2026, 10, 1, 2, 15, tzinfo=paris) + timedelta(days=d) for d in range(40)]
    times = [datetime.combine(t.date(), t.timetz().replace(tzinfo=None), tzinfo=paris).astimezone(UTC) for t in times]
    opts = FreshnessOptions(timezone="Europe/Paris")
    c = cadence_of(times, opts)
    assert c.slots == (135,) and c.describe() == "daily at 02:15 Europe/Paris"
    for cut in range(20, 40):  # every day before and after the change: on time an hour after the load
        seen = times[:cut]
        assert judge("t", "", c, seen, seen[-1] + timedelta(hours=23, minutes=30)).status == "on_time"
    # read in UTC, the same history is a load that moved by an hour in the middle: why timezone matters
    utc = cadence_of(times)
    assert utc.slots == (15,)  # most loads of the history were at 00:15 UTC (summer time)


def test_month_boundaries_are_ordinary_days() -> None:
    times = daily(70, start=datetime(2026, 1, 20, tzinfo=UTC))  # through 31 Jan, February (28 days), 1 March
    c = cadence_of(times)
    for cut in (12, 13, 40, 41):
        seen = times[:cut]
        assert judge("t", "", c, seen, seen[-1] + timedelta(hours=23)).status == "on_time"


def test_too_little_history_gives_no_judgement_and_says_why() -> None:
    few = learn_cadence("t", daily(5), OPTS)
    assert isinstance(few, NoJudgement) and "only 5 load(s)" in few.reason and "needs 8" in few.reason
    short = learn_cadence("t", [START + timedelta(hours=6 * i) for i in range(20)], OPTS)
    assert isinstance(short, NoJudgement) and "too little history" in short.reason
    fast = learn_cadence("t", [START + timedelta(minutes=5 * i) for i in range(12 * 24 * 8)], OPTS)
    assert isinstance(fast, NoJudgement) and "more often than every 30 minutes" in fast.reason


def test_reruns_count_as_one_load() -> None:
    times = daily(20)
    with_reruns = sorted(times + [t + timedelta(minutes=3) for t in times[::3]])
    assert collapse_reruns(with_reruns) == times
    assert cadence_of(with_reruns).slots == (135,)


def test_configured_schedule_and_tolerance_override_what_is_learnt() -> None:
    opts = FreshnessOptions(schedule="weekdays 06:00", tolerance="2h")
    c = learn_cadence("t", daily(3, hour=6, minute=0), opts)  # too little history to learn, but configured
    assert isinstance(c, Cadence) and not c.learnt and c.tolerance == timedelta(hours=2)
    assert c.describe() == "weekdays at 06:00 UTC"
    assert parse_schedule("hourly :05")[1][:2] == (5, 65)
    assert parse_schedule("mon,thu 03:00,15:30") == (frozenset({0, 3}), (180, 930))
    assert parse_duration("1h30m") == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('freshness = { tolerance = "soon" }', "duration 'soon'"),
        ('freshness = { schedule = "daily 25:00" }', "'25:00' is not a time of day"),
        ('freshness = { schedule = "sometimes 02:00" }', "days must be daily, weekdays"),
        ('freshness = { timezone = "Mars/Olympus" }', "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_freshness_configuration_is_refused_with_the_reason(body: str, message: str) -> None:
    text = f"""
[datasets.d]
keys = ["series"]
timestamp = "ts"
value = "v"
{body}
[datasets.d.trigger]
table_names = ["sales.*"]
[datasets.d.source]
kind = "file"
path = "m.csv"
"""
    with pytest.raises(DatasetConfigError, match=message):
        parse_catalog(text)


# -- deciding what to send ---------------------------------------------------------------------
def test_late_then_missing_then_arrived_each_sent_once() -> None:
    times = daily(30)
    c = cadence_of(times)
    last = times[-1]
    state = FreshnessState()

    def check(now: datetime, seen: list[datetime]) -> list[LoadIncident]:
        nonlocal state
        j = judge("sales.orders", "dq_sales", c, seen, now)
        sent, state = decide(state, [j], {"sales.orders": seen}, now)
        return sent

    assert check(last + timedelta(hours=20), times) == []  # not due yet
    late_at = last + timedelta(days=1, hours=1)
    (late,) = check(late_at, times)
    assert late.kind == "late_load" and late.due_at == last + timedelta(days=1) and late.missed == 1
    assert late.lateness_s == 3600 and late.job == "dq_sales" and late.cadence == "daily at 02:15 UTC"
    assert check(late_at + timedelta(minutes=15), times) == []  # repeated check: nothing new
    (missing,) = check(last + timedelta(days=2, hours=1), times)
    assert missing.kind == "missing_load" and missing.missed == 2 and missing.due_at == late.due_at
    assert check(last + timedelta(days=2, hours=2), times) == []
    arrival = last + timedelta(days=2, hours=4, minutes=25)
    (arrived,) = check(arrival + timedelta(minutes=10), [*times, arrival])
    assert arrived.kind == "load_arrived" and arrived.arrived_at == arrival
    assert arrived.lateness_s == (arrival - late.due_at).total_seconds()
    assert state.open == {}
    assert check(arrival + timedelta(minutes=20), [*times, arrival]) == []


def test_incident_record_round_trips_through_json() -> None:
    inc = LoadIncident(
        kind="load_arrived", table="sales.orders", job="dq_sales", due_at=START, cadence="daily at 02:15 UTC",
        lateness_s=8700.0, arrived_at=START + timedelta(hours=2, minutes=25), last_arrival=START - timedelta(days=1),
        missed=1,
    )  # fmt: skip
    doc = inc.to_json()
    assert doc["due_at"] == "2026-09-01T00:00:00Z" and doc["kind"] == "load_arrived"
    assert LoadIncident.from_json(doc) == inc
    with pytest.raises(ValueError, match="incident kind 'stale' is not one of"):
        LoadIncident(kind="stale", table="t")  # type: ignore[arg-type]


def test_concurrent_states_merge_to_the_more_advanced_incident() -> None:
    late = LoadIncident(kind="late_load", table="t", due_at=START, missed=1).to_json()
    missing = LoadIncident(kind="missing_load", table="t", due_at=START, missed=2).to_json()
    other = LoadIncident(kind="late_load", table="u", due_at=START, missed=1).to_json()
    merged = FreshnessState({"t": late}).merge(FreshnessState({"t": missing, "u": other}))
    assert merged.open == {"t": missing, "u": other}


def test_slow_load_against_the_tables_usual_duration_reported_once() -> None:
    times = daily(20)
    durations = [(t, 600.0 + 30 * (i % 5)) for i, t in enumerate(times)]
    now = times[-1] + timedelta(hours=1)
    assert slow_load("t", "j", durations, now, 8) is None  # an ordinary history
    slow = [*durations[:-1], (times[-1], 2400.0)]  # 40 min instead of about 11
    incident = slow_load("t", "j", slow, now, 8)
    assert incident is not None and incident.kind == "slow_load"
    assert incident.duration_s == 2400.0 and incident.usual_duration_s == 660.0 and incident.arrived_at == times[-1]
    assert slow_load("t", "j", slow, now + timedelta(days=2), 8) is None  # old news
    assert slow_load("t", "j", slow[:5], now, 8) is None  # too few loads to know what usual is
    sent, state = decide(FreshnessState(), [], {}, now, [incident])
    assert sent == [incident]
    assert decide(state, [], {}, now, [incident])[0] == []
