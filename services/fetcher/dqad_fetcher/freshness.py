"""Freshness: learn when each watched table's load is due from the ETL log, and judge the loads that
did not come (docs/alerts.md, "Late, missing and empty loads"; docs/architecture.md §6).

Pure functions over arrival times (no I/O, no pandas): :mod:`dqad_fetcher.loadlog` reads the log and
keeps the state; this module decides.

**How a cadence is learnt** (:func:`learn_cadence`), in the table's schedule time zone (the ETL's
scheduler keeps local time across DST, so a daily 02:15 Europe/Paris load stays at 02:15 there):

1. Re-runs collapse: arrivals closer than :data:`RERUN_GAP` count as one load.
2. Loads per day: the median (low) number of loads on the days that had any. Days with exactly that
   many give the *slots*: the i-th load of each such day, and the slot's time is the median of those
   times. Daily at 02:15 is one slot, "several times a day" several, hourly 24 (at most
   :data:`MAX_SLOTS`; faster loads are not judged).
3. Weekdays: a weekday is part of the schedule when at least half of its dates in the history had a
   load, so weekdays-only, weekly (one weekday) and "not on Sundays" fall out of the same rule, and
   one skipped Tuesday changes nothing.
4. Normal lateness: each load's delay after its slot. Tolerance = the 95th percentile of those delays
   (the typical load is at the slot, the slow ones set the margin), at least :data:`MIN_TOLERANCE`
   (scaled down for loads less than two hours apart) and less than the spacing of the slots.

Not enough history (fewer than ``min_loads`` loads, or less than :data:`MIN_SPAN` of it) gives no
cadence and a reason that the check reports, instead of a guess.

**Slow loads** (:func:`slow_load`): the log's own duration (``loaded_at - started_at``) of the latest
load against the table's earlier loads: slow past twice their median, at least 15 minutes more, and
above the 95th percentile of what they took. Reported once per load, within a day of it.

**How a table is judged** (:func:`judge`): the latest load fulfilled the slot occurrence nearest to
it; the next occurrence is *due*. Past ``due + tolerance`` without a load the table is *late*; once
the occurrence after that is past its own deadline too it is *missing*.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dqad.datasets import FreshnessOptions, parse_schedule
from dqad.freshness import LoadIncident

RERUN_GAP = timedelta(minutes=10)
MIN_TOLERANCE = timedelta(minutes=30)
MIN_SPAN = timedelta(days=7)
MAX_SLOTS = 48  # more than one load every 30 minutes: not judged (a lag metric suits such tables better)
LATENESS_QUANTILE = 0.95
SLOW_FACTOR = 2.0
SLOW_MIN_EXTRA_S = 15 * 60.0
SLOW_NEWS_WITHIN = timedelta(days=1)  # an older slow load is history, not news
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Arrival:
    """One successful load of a table, as the ETL log records it."""

    table: str
    at: datetime  # aware
    job: str = ""
    row_count: int | None = None


@dataclass(frozen=True)
class Cadence:
    """When a table's loads are due: slots of the day on some weekdays, and how late one may be."""

    slots: tuple[int, ...]  # minutes of the local day, sorted
    weekdays: frozenset[int]  # 0 = Monday
    tolerance: timedelta
    timezone: str = "UTC"
    learnt: bool = True  # False when the schedule came from the dataset's configuration
    loads: int = 0  # loads the cadence was learnt from

    def describe(self) -> str:
        """In words: "daily at 02:15 UTC", "weekdays at 06:00 and 18:00 Europe/Paris", "hourly at :05 UTC"."""
        if len(self.slots) == 24 and len({m % 60 for m in self.slots}) == 1:
            when = f"hourly at :{self.slots[0] % 60:02d}"
        elif len(self.slots) > 4:
            when = f"{len(self.slots)} times a day"
        else:
            clocks = [f"{m // 60:02d}:{m % 60:02d}" for m in self.slots]
            when = "at " + (clocks[0] if len(clocks) == 1 else ", ".join(clocks[:-1]) + " and " + clocks[-1])
        days = _days_words(self.weekdays)
        tz = self.timezone
        return f"{days} {when} {tz}".replace("daily hourly", "hourly")

    def occurrences(self, start: datetime, end: datetime) -> list[datetime]:
        """Slot times (UTC) in ``[start, end]``."""
        zone = ZoneInfo(self.timezone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        out = []
        while day <= last:
            if day.weekday() in self.weekdays:
                for minute in self.slots:
                    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
                    at = local.astimezone(UTC)
                    if start <= at <= end:
                        out.append(at)
            day += timedelta(days=1)
        return sorted(set(out))

    def spacing(self) -> timedelta:
        """The shortest time between two consecutive slots (across days and weekdays)."""
        week = [d * 1440 + m for d in sorted(self.weekdays) for m in self.slots]
        gaps = [b - a for a, b in pairwise(week)] + [week[0] + 7 * 1440 - week[-1]]
        return timedelta(minutes=min(gaps))


def _days_words(days: frozenset[int]) -> str:
    if days == frozenset(range(7)):
        return "daily"
    if days == frozenset(range(5)):
        return "weekdays"
    if days == frozenset(range(5, 7)):
        return "weekends"
    if len(days) == 1:
        return "weekly on " + _WEEKDAY_NAMES[next(iter(days))]
    return ",".join(_WEEKDAY_NAMES[d] for d in sorted(days))


@dataclass(frozen=True)
class NoJudgement:
    """Why a table is not judged (said in the check's result, never guessed past)."""

    table: str
    reason: str


def collapse_reruns(times: Iterable[datetime]) -> list[datetime]:
    """Sorted UTC arrival times with re-runs (within :data:`RERUN_GAP` of the previous load) dropped."""
    out: list[datetime] = []
    for at in sorted(t.astimezone(UTC) for t in times):
        if not out or at - out[-1] >= RERUN_GAP:
            out.append(at)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _floor_for(spacing: timedelta) -> timedelta:
    return min(MIN_TOLERANCE, max(timedelta(minutes=5), spacing / 4))


def learn_cadence(table: str, times: Iterable[datetime], options: FreshnessOptions) -> Cadence | NoJudgement:
    """The table's cadence from its arrival times, or why there is none (see the module docstring)."""
    loads = collapse_reruns(times)
    zone = ZoneInfo(options.timezone)
    tolerance_override = options.tolerance_delta()
    if options.schedule:
        weekdays, slots = parse_schedule(options.schedule)
        cadence = Cadence(slots, weekdays, timedelta(0), options.timezone, learnt=False, loads=len(loads))
        lateness = _lateness(cadence, loads)
        return replace(cadence, tolerance=tolerance_override or _tolerance(cadence, lateness))
    if len(loads) < options.min_loads:
        return NoJudgement(
            table, f"only {len(loads)} load(s) in the log: too little history to judge (needs {options.min_loads})"
        )
    if loads[-1] - loads[0] < MIN_SPAN:
        return NoJudgement(
            table,
            f"the log covers only {loads[-1] - loads[0]} of loads: too little history to judge "
            f"(needs {MIN_SPAN.days} days)",
        )
    local = [t.astimezone(zone) for t in loads]
    by_day: dict[date, list[datetime]] = defaultdict(list)
    for t in local:
        by_day[t.date()].append(t)
    per_day = statistics.median_low([len(v) for v in by_day.values()])
    if per_day > MAX_SLOTS:
        return NoJudgement(table, f"about {per_day} loads a day: loads more often than every 30 minutes are not judged")
    typical_days = [sorted(v) for v in by_day.values() if len(v) == per_day]
    slots = tuple(
        sorted(
            int(statistics.median(t.hour * 60 + t.minute for t in (day[i] for day in typical_days)))
            for i in range(per_day)
        )
    )
    weekdays = _weekdays_seen(by_day, loads[0].astimezone(zone).date(), loads[-1].astimezone(zone).date())
    if not weekdays:
        return NoJudgement(table, "no weekday had a load on at least half of its dates: no regular cadence")
    cadence = Cadence(slots, weekdays, timedelta(0), options.timezone, learnt=True, loads=len(loads))
    lateness = _lateness(cadence, loads)
    return replace(cadence, tolerance=tolerance_override or _tolerance(cadence, lateness))


def _weekdays_seen(by_day: dict[date, list[datetime]], first: date, last: date) -> frozenset[int]:
    """Weekdays with a load on at least half of their dates between the first and the last load."""
    dates_of: Counter[int] = Counter()
    day = first
    while day <= last:
        dates_of[day.weekday()] += 1
        day += timedelta(days=1)
    with_load = Counter(d.weekday() for d in by_day)
    return frozenset(w for w, n in dates_of.items() if with_load[w] >= max(1, n / 2))


def _nearest(occurrences: Sequence[datetime], at: datetime) -> datetime | None:
    return min(occurrences, key=lambda s: abs(at - s)) if occurrences else None


def _lateness(cadence: Cadence, loads: Sequence[datetime]) -> list[float]:
    """Seconds each load came after the slot nearest to it (negative: early)."""
    if not loads:
        return []
    occ = cadence.occurrences(loads[0] - timedelta(days=8), loads[-1] + timedelta(days=8))
    return [(t - s).total_seconds() for t in loads if (s := _nearest(occ, t)) is not None]


def _tolerance(cadence: Cadence, lateness: Sequence[float]) -> timedelta:
    spacing = cadence.spacing()
    floor = _floor_for(spacing)
    high = timedelta(seconds=_quantile(lateness, LATENESS_QUANTILE)) if lateness else timedelta(0)
    return min(max(floor, high), spacing * 0.9)


Status = Literal["on_time", "late", "missing"]


@dataclass(frozen=True)
class Judgement:
    table: str
    job: str
    status: Status
    cadence: Cadence
    last_arrival: datetime
    due_at: datetime  # the first occurrence after the latest load (the one waited for)
    deadline: datetime  # due_at + tolerance
    missed: int  # occurrences past their deadline with no load

    def incident(self, now: datetime) -> LoadIncident | None:
        if self.status == "on_time":
            return None
        return LoadIncident(
            kind="late_load" if self.status == "late" else "missing_load",
            table=self.table,
            job=self.job,
            due_at=self.due_at,
            cadence=self.cadence.describe(),
            lateness_s=max(0.0, (now - self.due_at).total_seconds()),
            last_arrival=self.last_arrival,
            missed=self.missed,
        )


def judge(table: str, job: str, cadence: Cadence, times: Sequence[datetime], now: datetime) -> Judgement:
    """On time, late or missing at ``now`` (see the module docstring); ``times`` must not be empty."""
    loads = collapse_reruns(t for t in times if t <= now)
    if not loads:
        raise ValueError(f"{table}: no load at or before {now.isoformat()} to judge from")
    last = loads[-1]
    spacing = cadence.spacing()
    occ = cadence.occurrences(last - spacing * 2 - timedelta(days=8), now + spacing * 2 + timedelta(days=8))
    fulfilled = _nearest([s for s in occ if s <= last + spacing / 2], last)
    pending = [s for s in occ if fulfilled is None or s > fulfilled]
    due = pending[0]
    missed = sum(1 for s in pending if s + cadence.tolerance <= now)
    status: Status = "on_time" if missed == 0 else "late" if missed == 1 else "missing"
    return Judgement(table, job, status, cadence, last, due, due + cadence.tolerance, missed)


def slow_load(
    table: str, job: str, durations: Sequence[tuple[datetime, float]], now: datetime, min_loads: int
) -> LoadIncident | None:
    """The latest load as a ``slow_load`` when it took far longer than this table's loads usually do.

    ``durations``: (load time, seconds) from the log. Needs ``min_loads`` earlier loads to know
    what usual is; the latest load must be within :data:`SLOW_NEWS_WITHIN` of ``now``.
    """
    ordered = sorted((at, d) for at, d in durations if d >= 0 and at <= now)
    if len(ordered) <= min_loads:
        return None
    *earlier, (at, latest) = ordered
    if now - at > SLOW_NEWS_WITHIN:
        return None
    past = [d for _, d in earlier]
    usual = statistics.median(past)
    threshold = max(usual * SLOW_FACTOR, usual + SLOW_MIN_EXTRA_S, _quantile(past, LATENESS_QUANTILE))
    if latest <= threshold:
        return None
    return LoadIncident(
        kind="slow_load", table=table, job=job, arrived_at=at, duration_s=latest, usual_duration_s=usual
    )


# -- what to send, given what was already sent ------------------------------------------------------
@dataclass
class FreshnessState:
    """Per dataset: the open (reported, not yet arrived) late/missing incident of each table."""

    open: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> incident JSON
    slow: dict[str, str] = field(default_factory=dict)  # table -> load time (ISO) of the last slow load sent

    @classmethod
    def from_json(cls, doc: dict | None) -> FreshnessState:
        doc = doc or {}
        return cls(
            open={k: dict(v) for k, v in doc.get("open", {}).items()},
            slow={k: str(v) for k, v in doc.get("slow", {}).items()},
        )

    def to_json(self) -> dict:
        return {"open": self.open, "slow": self.slow}

    def merge(self, other: FreshnessState) -> FreshnessState:
        """Union of two states written concurrently: the more advanced incident of a table wins."""
        merged = dict(other.open)
        for table, inc in self.open.items():
            theirs = merged.get(table)
            if theirs is None or (inc.get("missed", 0), inc.get("due_at") or "") >= (
                theirs.get("missed", 0),
                theirs.get("due_at") or "",
            ):
                merged[table] = inc
        slow = dict(other.slow)
        for table, at in self.slow.items():
            slow[table] = max(at, slow.get(table, ""))
        return FreshnessState(merged, slow)


def decide(
    state: FreshnessState,
    judgements: Sequence[Judgement],
    arrivals: Mapping[str, Sequence[datetime]],
    now: datetime,
    slow: Sequence[LoadIncident] = (),
) -> tuple[list[LoadIncident], FreshnessState]:
    """The incidents to send now and the state after sending them.

    * a table newly late or missing: sent, and remembered as open;
    * an open late incident that became missing: sent again (it got worse), once;
    * an open incident whose table has loaded since: closed with a ``load_arrived`` note saying when
      the load came and how late it was;
    * a slow load (:func:`slow_load`) not sent before: sent once;
    * anything already sent in this form: not sent again, however often the check runs.
    """
    send: list[LoadIncident] = []
    new_open: dict[str, dict[str, Any]] = {}
    judged = {j.table: j for j in judgements}
    for table, doc in state.open.items():
        opened = LoadIncident.from_json(doc)
        came = [
            t
            for t in collapse_reruns(arrivals.get(table, ()))
            if opened.last_arrival is None or t > opened.last_arrival
        ]
        if came:
            arrived = came[0]
            send.append(
                replace(
                    opened,
                    kind="load_arrived",
                    arrived_at=arrived,
                    lateness_s=max(0.0, (arrived - opened.due_at).total_seconds()) if opened.due_at else None,
                )
            )
            continue  # closed; a new lateness after this load is judged below
        j = judged.get(table)
        if j is None or j.status == "on_time":
            continue  # no longer judged (configuration changed) or no longer overdue: forget it quietly
        new_open[table] = doc
    for j in judgements:
        incident = j.incident(now)
        if incident is None:
            continue
        previous = new_open.get(j.table)
        if previous is None or (previous.get("kind") == "late_load" and incident.kind == "missing_load"):
            send.append(incident)
            new_open[j.table] = incident.to_json()
    sent_slow = dict(state.slow)
    for incident in slow:
        at = incident.to_json()["arrived_at"] or ""
        if at > sent_slow.get(incident.table, ""):
            send.append(incident)
            sent_slow[incident.table] = at
    return send, FreshnessState(new_open, sent_slow)
