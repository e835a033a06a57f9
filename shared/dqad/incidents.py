"""Incidents: the anomalies of one load named for what happened to it (docs/architecture.md §6).

A reader does not act on "row_count, distinct_count, sum_amount and null_pct are outside their
ranges"; they act on "sales.order_lines loaded empty". So the scorer groups the anomalies of one load
of one table (the series sharing a load group and a timestamp) into one :class:`Incident` whose kind
comes from the evidence: which metrics moved (recognised by name, :class:`MetricRoles`) and how far
from their expected range. Loads of several tables by the same ETL job whose incidents share a kind
become one incident ("job dq_sales: 5 tables loaded empty"), because one broken job is one thing to fix.

The type is the currency of every reader of incidents: the scorer writes them (``incidents.json``
next to the scores), the report and every notifier channel lead with them, and producers other than
the scorer (the freshness check's late and missing loads) build them directly. Plain Python, no
pandas: the notifier ships without it, and derives incidents itself from the scores of a run whose
event predates ``incidents.json``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from dqad.wording import about, fmt_value, is_missing, metric_words, plural

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
FORMAT_VERSION = 1
JOB_WINDOW = timedelta(hours=6)  # loads of one job this close together are one run of it


class Kind(StrEnum):
    """What happened to a load. The value is the slug written to JSON; :attr:`words` is what people read."""

    EMPTY = "empty_load"
    PARTIAL = "partial_load"
    DUPLICATED = "duplicated_load"
    NULL_SPIKE = "null_spike"
    DISTINCT_COLLAPSE = "distinct_collapse"
    STUCK = "stuck_values"
    DRIFT = "drift"
    SLOW = "slow_load"
    LATE = "late_load"  # produced by the freshness check, not from scores
    MISSING = "missing_load"  # produced by the freshness check, not from scores
    OTHER = "other"

    @property
    def words(self) -> str:
        return _WORDS[self]


_WORDS = {
    Kind.EMPTY: "empty load",
    Kind.PARTIAL: "partial load",
    Kind.DUPLICATED: "duplicated load",
    Kind.NULL_SPIKE: "null spike",
    Kind.DISTINCT_COLLAPSE: "distinct collapse",
    Kind.STUCK: "stuck values",
    Kind.DRIFT: "drift",
    Kind.SLOW: "slow load",
    Kind.LATE: "late load",
    Kind.MISSING: "missing load",
    Kind.OTHER: "other",
}

# How several tables of one job read in a merged incident: "job dq_sales: 5 tables loaded empty".
_MANY = {
    Kind.EMPTY: "loaded empty",
    Kind.PARTIAL: "loaded partially",
    Kind.DUPLICATED: "loaded twice",
    Kind.NULL_SPIKE: "with a null spike",
    Kind.DISTINCT_COLLAPSE: "with collapsed distinct values",
    Kind.STUCK: "with stuck values",
    Kind.DRIFT: "drifting",
    Kind.SLOW: "loaded slowly",
    Kind.LATE: "loading late",
    Kind.MISSING: "not loaded",
    Kind.OTHER: "with unusual metrics",
}

ROLES = ("row_count", "null_pct", "distinct", "sum", "duration")

#: Metric name patterns (fnmatch, case-insensitive, on the metric part of a series name) per role.
DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "row_count": ("row_count", "rows", "n_rows", "*row_count*", "*rowcount*", "*_rows", "rows_*", "record_count"),
    "null_pct": (
        "null_pct",
        "*null_pct*",
        "*null_rate*",
        "*null_percent*",
        "*pct_null*",
        "*nulls_pct*",
        "*null_share*",
    ),
    "distinct": ("distinct*", "*distinct_count*", "*n_distinct*", "*cardinality*", "*unique_count*"),
    "sum": ("sum", "sum_*", "*_sum", "*total*"),
    "duration": ("*duration*", "*elapsed*", "*runtime*", "*load_time*"),
}


@dataclass(frozen=True)
class MetricRoles:
    """Which metric names mean rows, empty values, distinct values, totals and durations.

    A dataset's own patterns (``[datasets.<name>.incidents] metrics``) are tried before the defaults,
    so a warehouse that calls its row count ``n_loaded`` says so once in its configuration.
    """

    patterns: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def role(self, metric: str) -> str:
        name = metric.lower()
        for table in (self.patterns, DEFAULT_PATTERNS):
            for role in ROLES:
                if any(fnmatch.fnmatchcase(name, p.lower()) for p in table.get(role, ())):
                    return role
        return ""


class Point(Protocol):
    """A scored point as incidents read it (a row of ``scores.parquet``; the notifier's ScoredPoint)."""

    @property
    def series(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def value(self) -> float | None: ...
    @property
    def is_anomaly(self) -> bool: ...
    @property
    def severity(self) -> str: ...
    @property
    def expected_low(self) -> float | None: ...
    @property
    def expected_high(self) -> float | None: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class Evidence:
    """One metric of an incident: its value against its expected range."""

    series: str
    metric: str  # the series name without its table ("row_count", "customer_id/null_pct")
    role: str  # one of ROLES or ""
    value: float | None
    expected_low: float | None
    expected_high: float | None
    is_anomaly: bool = True
    severity: str = ""
    score: float = 0.0
    timestamp: datetime | None = None  # the point's load time when it differs from the incident's

    @property
    def words(self) -> str:
        return metric_words(self.metric, self.role)

    @property
    def expected(self) -> float | None:
        lo, hi = _num(self.expected_low), _num(self.expected_high)
        return None if lo is None or hi is None else (lo + hi) / 2


@dataclass(frozen=True)
class Incident:
    """One thing that happened to one load (or to the loads of one job): what, where, when, how bad.

    ``tables`` holds one load group, or several when one job's loads are merged; ``job`` is the ETL
    job when known (""). ``timestamp`` is the load time (naive UTC; the earliest load of a merged
    incident). ``status`` is ``"open"``, or ``"closed"`` for a note that an incident is over (a late
    load that has landed). ``details`` are the per-table summaries of a merged incident.
    """

    kind: Kind
    tables: tuple[str, ...]
    timestamp: datetime
    severity: str
    summary: str
    metrics: tuple[Evidence, ...] = ()
    job: str = ""
    dataset: str = ""
    status: str = "open"
    details: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Stable across re-runs of the same load: kind, job (or table) and load time."""
        where = f"job:{self.job}" if len(self.tables) > 1 else self.tables[0] if self.tables else self.job
        return f"{self.kind.value}|{where}|{_naive(self.timestamp).isoformat()}"

    @property
    def table(self) -> str:
        return self.tables[0] if len(self.tables) == 1 else ""

    def points(self) -> set[tuple[str, datetime]]:
        """(series, load time) of the anomalous points it groups, to match it with what is alerted."""
        return {(m.series, _naive(m.timestamp or self.timestamp)) for m in self.metrics if m.is_anomaly}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "kind_words": self.kind.words,
            "summary": self.summary,
            "severity": self.severity,
            "status": self.status,
            "dataset": self.dataset,
            "job": self.job,
            "tables": list(self.tables),
            "timestamp": _naive(self.timestamp).isoformat(),
            "details": list(self.details),
            "metrics": [
                {
                    "series": m.series,
                    "metric": m.metric,
                    "words": m.words,
                    "role": m.role,
                    "value": _num(m.value),
                    "expected_low": _num(m.expected_low),
                    "expected_high": _num(m.expected_high),
                    "is_anomaly": m.is_anomaly,
                    "severity": m.severity,
                    "score": _num(m.score) or 0.0,
                    **({"timestamp": _naive(m.timestamp).isoformat()} if m.timestamp else {}),
                }
                for m in self.metrics
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Incident:
        return cls(
            kind=Kind(doc["kind"]),
            tables=tuple(doc.get("tables", ())),
            timestamp=_naive(datetime.fromisoformat(doc["timestamp"])),
            severity=str(doc.get("severity", "")),
            summary=str(doc["summary"]),
            job=str(doc.get("job", "")),
            dataset=str(doc.get("dataset", "")),
            status=str(doc.get("status", "open")),
            details=tuple(doc.get("details", ())),
            metrics=tuple(
                Evidence(
                    series=m["series"],
                    metric=m.get("metric", m["series"]),
                    role=m.get("role", ""),
                    value=m.get("value"),
                    expected_low=m.get("expected_low"),
                    expected_high=m.get("expected_high"),
                    is_anomaly=bool(m.get("is_anomaly", True)),
                    severity=str(m.get("severity", "")),
                    score=float(m.get("score") or 0.0),
                    timestamp=_naive(datetime.fromisoformat(m["timestamp"])) if m.get("timestamp") else None,
                )
                for m in doc.get("metrics", ())
            ),
        )


def dumps(incidents: Iterable[Incident]) -> bytes:
    """``incidents.json``: ``{"version": 1, "incidents": [...]}``, worst first."""
    doc = {"version": FORMAT_VERSION, "incidents": [i.to_json() for i in incidents]}
    return json.dumps(doc, indent=1, ensure_ascii=False).encode()


def loads(data: bytes | str) -> list[Incident]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"incidents file is not version {FORMAT_VERSION} of dqad's incidents.json")
    return [Incident.from_json(d) for d in doc.get("incidents", ())]


def worst_first(incidents: Iterable[Incident]) -> list[Incident]:
    return sorted(
        incidents,
        key=lambda i: (SEVERITY_RANK.get(i.severity, 3), -max((m.score for m in i.metrics), default=0.0), i.id),
    )


# -- rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """Thresholds of the rules; defaults suit daily loads, a dataset can change them in its configuration."""

    roles: MetricRoles = field(default_factory=MetricRoles)
    partial_below: float = 0.8  # rows under this share of the expected (and under the range): partial
    duplicate_ratio: tuple[float, float] = (1.7, 2.3)  # rows this many times the expected: loaded twice
    collapse_below: float = 0.5  # distinct values under this share of the expected, rows normal
    stuck_loads: int = 3  # same value as this many previous loads, where the series normally varies
    drift_loads: int = 2  # previous loads on the same side beyond the range: a sustained shift
    job_window: timedelta = JOB_WINDOW  # loads of one job this close together are one run of it


def find_incidents(
    points: Iterable[Point],
    rules: Rules | None = None,
    *,
    dataset: str = "",
    jobs: Mapping[str, str] | None = None,
    previous: Mapping[str, Sequence[float]] | None = None,
) -> list[Incident]:
    """The incidents of a run's scored points, worst first.

    ``jobs`` maps a load group to its ETL job (from the scores' job column), ``previous`` a series to
    its values on the loads before this one, oldest first (for stuck values and drift; without it
    those two kinds are not recognised). Every load with at least one anomaly gives one incident;
    the load's normal points are evidence too (rows normal while distinct values collapse).
    """
    rules = rules or Rules()
    loads_: dict[tuple[str, datetime], list[Point]] = {}
    for p in points:
        loads_.setdefault((str(p.group), _naive(p.timestamp)), []).append(p)
    found = []
    for (group, ts), pts in loads_.items():
        if any(bool(p.is_anomaly) for p in pts):
            found.append(_classify(group, ts, pts, rules, dataset, (jobs or {}).get(group, ""), previous or {}))
    return worst_first(merge_by_job(found, rules.job_window))


def _classify(
    group: str,
    ts: datetime,
    pts: Sequence[Point],
    rules: Rules,
    dataset: str,
    job: str,
    previous: Mapping[str, Sequence[float]],
) -> Incident:
    ev = [
        Evidence(
            series=str(p.series),
            metric=_metric(str(p.series), group),
            role=rules.roles.role(_leaf(_metric(str(p.series), group))),
            value=_num(p.value),
            expected_low=_num(p.expected_low),
            expected_high=_num(p.expected_high),
            is_anomaly=bool(p.is_anomaly),
            severity="" if is_missing(p.severity) else str(p.severity),
            score=_num(p.score) or 0.0,
        )
        for p in sorted(pts, key=lambda p: (not p.is_anomaly, -(_num(p.score) or 0.0), str(p.series)))
    ]
    flagged = [e for e in ev if e.is_anomaly]
    kind, summary, lead = _rule(group, ev, flagged, rules, previous)
    involved = tuple(e for e in ev if e.is_anomaly or e in lead)
    severity = min((e.severity for e in flagged if e.severity), key=lambda s: SEVERITY_RANK.get(s, 3), default="low")
    return Incident(kind, (group,), ts, severity, summary, involved, job=job, dataset=dataset)


class _Verdict(NamedTuple):
    """What a rule makes of a load: its kind, its one-line summary and the normal metrics it cites."""

    kind: Kind
    summary: str
    lead: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class _Load:
    """The evidence of one load as the rules read it, anomalies first."""

    table: str
    ev: list[Evidence]
    flagged: list[Evidence]
    rules: Rules
    previous: Mapping[str, Sequence[float]]

    def first(self, role: str, *, flagged_only: bool = True) -> Evidence | None:
        return next((e for e in (self.flagged if flagged_only else self.ev) if e.role == role), None)

    def before(self, e: Evidence) -> Sequence[float]:
        return self.previous.get(e.series, ())


def _rule(
    table: str,
    ev: list[Evidence],
    flagged: list[Evidence],
    rules: Rules,
    previous: Mapping[str, Sequence[float]],
) -> _Verdict:
    """The kind of a load's incident, its one-line summary and the normal metrics it cites.

    The rules are tried in order and the first that recognises the load names it: an empty load also
    moves every other metric, so the most telling explanation has to win over the ones it implies.
    """
    load = _Load(table, ev, flagged, rules, previous)
    for rule in _RULES:
        verdict = rule(load)
        if verdict is not None:
            return verdict
    return _other(load)


def _empty(load: _Load) -> _Verdict | None:
    rows_any = load.first("row_count", flagged_only=False)
    if rows_any is not None and rows_any.value == 0 and (rows_any.is_anomaly or load.flagged):
        usual = f" instead of about {about(rows_any.expected)}" if rows_any.expected else ""
        return _Verdict(Kind.EMPTY, f"{load.table} loaded empty: 0 rows{usual}", (rows_any,))
    return None


def _stuck_values(load: _Load) -> _Verdict | None:
    n = load.rules.stuck_loads
    stuck = [e for e in load.flagged if _stuck(e, load.before(e), n)]
    if not stuck:
        return None
    names = ", ".join(dict.fromkeys(e.words for e in stuck))
    return _Verdict(Kind.STUCK, f"{load.table}: {names} repeated the previous {n} loads' numbers exactly")


def _row_count_change(load: _Load) -> _Verdict | None:
    """Partial and duplicated loads: a flagged row count far from its expected value."""
    rows, table, rules = load.first("row_count"), load.table, load.rules
    if rows is None or rows.value is None or not rows.expected:
        return None
    ratio = rows.value / rows.expected
    if _below(rows) and ratio < rules.partial_below:
        return _Verdict(
            Kind.PARTIAL,
            f"{table} loaded partially: {about(rows.value, 'rows')} instead of about {about(rows.expected)}"
            f" ({ratio:.0%} of the usual)",
        )
    lo, hi = rules.duplicate_ratio
    total = load.first("sum", flagged_only=False)
    total_ratio = total.value / total.expected if total and total.value is not None and total.expected else None
    if _above(rows) and lo <= ratio <= hi and (total_ratio is None or lo <= total_ratio <= hi):
        return _Verdict(
            Kind.DUPLICATED,
            f"{table} loaded twice: {about(rows.value, 'rows')}, {ratio:.1f}× the usual {about(rows.expected)}",
            (total,) if total is not None and not total.is_anomaly else (),
        )
    return None


def _distinct_collapse(load: _Load) -> _Verdict | None:
    distinct = load.first("distinct")
    rows_any = load.first("row_count", flagged_only=False)
    rows_ok = rows_any is None or not rows_any.is_anomaly
    collapsed = (
        distinct is not None
        and distinct.value is not None
        and bool(distinct.expected)
        and _below(distinct)
        and distinct.value / distinct.expected < load.rules.collapse_below  # type: ignore[operator]
    )
    if not (collapsed and rows_ok):
        return None
    assert distinct is not None
    return _Verdict(
        Kind.DISTINCT_COLLAPSE,
        f"{load.table}: {distinct.words} collapsed to {fmt_value(distinct.value)} instead of about "
        f"{about(distinct.expected)}",
        (rows_any,) if rows_any is not None else (),
    )


def _null_spike(load: _Load) -> _Verdict | None:
    nulls = load.first("null_pct")
    if nulls is None or not _above(nulls):
        return None
    return _Verdict(
        Kind.NULL_SPIKE,
        f"{load.table}: {nulls.words} rose to {fmt_value(nulls.value)}% (normally at most "
        f"{fmt_value(nulls.expected_high)}%)",
    )


def _drift(load: _Load) -> _Verdict | None:
    drifting = [e for e in load.flagged if _drifting(e, load.before(e), load.rules.drift_loads)]
    if not drifting:
        return None
    e = drifting[0]
    way = "above" if _above(e) else "below"
    loads = load.rules.drift_loads + 1
    edge = e.expected_high if way == "above" else e.expected_low
    return _Verdict(
        Kind.DRIFT,
        f"{load.table}: {e.words} has stayed {way} its usual range for {loads} loads (now {fmt_value(e.value)}, "
        f"usually {'at most' if way == 'above' else 'at least'} {fmt_value(edge)})",
    )


def _slow(load: _Load) -> _Verdict | None:
    duration = load.first("duration")
    if duration is None or not _above(duration):
        return None
    return _Verdict(
        Kind.SLOW,
        f"{load.table} loaded slowly: {duration.words} {fmt_value(duration.value)} instead of at most "
        f"{fmt_value(duration.expected_high)}",
    )


def _other(load: _Load) -> _Verdict:
    flagged = load.flagged
    parts = [f"{e.words} {_how_far(e)}" for e in flagged[:3]]
    more = f" and {len(flagged) - 3} more" if len(flagged) > 3 else ""
    return _Verdict(Kind.OTHER, f"{load.table}: {', '.join(parts)}{more}")


#: The rules in the order they are tried (see ``_rule``); a load none recognises is ``_other``.
_RULES: tuple[Callable[[_Load], _Verdict | None], ...] = (
    _empty,
    _stuck_values,
    _row_count_change,
    _distinct_collapse,
    _null_spike,
    _drift,
    _slow,
)


def merge_by_job(incidents: Sequence[Incident], window: timedelta = JOB_WINDOW) -> list[Incident]:
    """One incident per (job, kind) for the loads of one job within ``window`` of each other.

    A job that loads five tables empty is one failure of that job, told once ("job dq_sales: 5 tables
    loaded empty"), with each table's own summary kept in ``details``. Incidents without a job stay
    as they are.
    """
    out: list[Incident] = []
    by_key: dict[tuple[str, Kind], list[Incident]] = {}
    for inc in incidents:
        if inc.job and len(inc.tables) == 1 and inc.status == "open":
            by_key.setdefault((inc.job, inc.kind), []).append(inc)
        else:
            out.append(inc)
    for (job, kind), group in by_key.items():
        group.sort(key=lambda i: i.timestamp)
        cluster: list[Incident] = []
        for inc in group:
            if cluster and inc.timestamp - cluster[0].timestamp > window:
                out.append(_merged(job, kind, cluster))
                cluster = []
            cluster.append(inc)
        out.append(_merged(job, kind, cluster))
    return out


def _merged(job: str, kind: Kind, parts: list[Incident]) -> Incident:
    if len(parts) == 1:
        return parts[0]
    tables = tuple(dict.fromkeys(t for p in parts for t in p.tables))
    ts = min(p.timestamp for p in parts)
    metrics = tuple(replace(m, timestamp=m.timestamp or p.timestamp) for p in parts for m in p.metrics)
    return Incident(
        kind=kind,
        tables=tables,
        timestamp=ts,
        severity=min((p.severity for p in parts), key=lambda s: SEVERITY_RANK.get(s, 3)),
        summary=f"job {job}: {plural(len(tables), 'table', 'tables')} {_MANY[kind]}",
        metrics=metrics,
        job=job,
        dataset=parts[0].dataset,
        details=tuple(p.summary for p in parts),
    )


# -- helpers -------------------------------------------------------------------------------------------
def _naive(ts: datetime) -> datetime:
    if hasattr(ts, "to_pydatetime"):
        ts = ts.to_pydatetime()
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _num(v: object) -> float | None:
    if is_missing(v):
        return None
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _metric(series: str, group: str) -> str:
    prefix = f"{group}/"
    return series[len(prefix) :] if group and series.startswith(prefix) and series != group else series


def _leaf(metric: str) -> str:
    """The metric's own name: the last key of the series ("customer_id/null_pct" -> "null_pct")."""
    return metric.rsplit("/", 1)[-1]


def _below(e: Evidence) -> bool:
    return e.value is not None and e.expected_low is not None and e.value < e.expected_low


def _above(e: Evidence) -> bool:
    return e.value is not None and e.expected_high is not None and e.value > e.expected_high


def _how_far(e: Evidence) -> str:
    if e.value is None:
        return "missing"
    if _below(e) or _above(e):
        edge = e.expected_low if _below(e) else e.expected_high
        assert edge is not None
        word = "below" if _below(e) else "above"
        if edge:
            return f"{abs(e.value - edge) / abs(edge):.0%} {word} its range ({fmt_value(e.value)})"
        return f"{word} its range ({fmt_value(e.value)})"
    return f"unusual at {fmt_value(e.value)}"


def _stuck(e: Evidence, before: Sequence[float], n: int) -> bool:
    """The value equals each of the ``n`` previous loads', in a series whose history otherwise varies."""
    if e.value is None or len(before) < n + 2:
        return False
    recent = [float(v) for v in before[-n:]]
    older = {float(v) for v in before[:-n] if not is_missing(v)}
    return all(v == e.value for v in recent) and len(older) > 1


def _drifting(e: Evidence, before: Sequence[float], n: int) -> bool:
    """This load and the ``n`` before it all lie beyond the same edge of the (current) expected range."""
    if len(before) < n or not (_above(e) or _below(e)):
        return False
    recent = [_num(v) for v in before[-n:]]
    if _above(e):
        return all(v is not None and v > e.expected_high for v in recent)  # type: ignore[operator]
    return all(v is not None and v < e.expected_low for v in recent)  # type: ignore[operator]


def metric_label(series: str, group: str, roles: MetricRoles | None = None) -> str:
    """A series' metric for a reader: its words, with the name people grep for in brackets.

    "rows loaded (row_count)", "share of empty values in customer_id (null_pct)"; a metric no role
    recognises keeps its own name alone.
    """
    metric = _metric(series, group)
    role = (roles or MetricRoles()).role(_leaf(metric))
    return f"{metric_words(metric, role)} ({_leaf(metric)})" if role else metric
