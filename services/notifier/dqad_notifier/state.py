"""What the notifier remembers per dataset, so that people are told once, not every load.

Stored as one JSON object, ``alerts/<dataset>/state.json`` in the run bucket:

* ``alerted``: every (series, timestamp) already mailed. The same point in another run (a re-run of
  the load, a backfill, a replay after the idempotency record expired) is never mailed again.
* ``incidents``: per series, an open incident: anomalous on its latest scored load(s), with when it
  started and when it was last mailed. The next anomalous load of that series is part of the same
  incident and is only mailed again once ``realert_after_hours`` have passed since the last mail;
  a normal load of the series closes the incident.
* ``last_heartbeat``: the UTC day of the last "all clear" email.

Time is *load* time (the points' timestamps), not wall-clock time, so replaying or backfilling old
runs makes the same decisions as the original runs did. Load times jitter (a daily job that ran at
02:16 yesterday may run at 02:09 today), so an interval is considered elapsed within a tolerance of
10% (at most one hour): ``realert_after_hours = 24`` re-alerts a daily incident every day.

The decision (:func:`decide`) is a pure function of the state and the scores; :class:`StateStore`
reads and writes it with S3 conditional writes (``If-Match`` / ``If-None-Match``), merging on a
conflict, so two runs of one dataset finishing at once never erase each other's memory.

Plain Python over :class:`~dqad_notifier.scores.ScoredPoint` rows and :mod:`datetime`: the notifier
ships without pandas (see :mod:`dqad_notifier.scores`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from dqad_notifier.scores import ScoredPoint

logger = Logger(service="dqad-notifier")

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
KEEP_ALERTED = timedelta(days=90)  # forget mailed points this much older than the newest load
KEEP_INCIDENT = timedelta(days=30)  # an incident with no anomalous load for this long is dropped
_SEP = "\x1f"


def _ts(value: datetime | str) -> datetime:
    """A load time as naive UTC (an aware one converted, an ISO string parsed)."""
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def point_key(series: str, timestamp: datetime | str) -> str:
    return f"{series}{_SEP}{_ts(timestamp).isoformat()}"


def realert_due(elapsed: timedelta, realert_after_hours: float) -> bool:
    """True once a continuing incident may be mailed again (with 10%/1 h tolerance for load jitter)."""
    interval = timedelta(hours=realert_after_hours)
    tolerance = min(interval * 0.1, timedelta(hours=1))
    return elapsed >= interval - tolerance


@dataclass
class AlertState:
    alerted: dict[str, str] = field(default_factory=dict)  # point_key -> load time of the point
    incidents: dict[str, dict[str, str]] = field(default_factory=dict)  # series -> since, last_ts, last_alert_ts
    last_heartbeat: str = ""  # YYYY-MM-DD (UTC)

    @classmethod
    def from_json(cls, doc: dict | None) -> AlertState:
        doc = doc or {}
        return cls(
            alerted=dict(doc.get("alerted", {})),
            incidents={k: dict(v) for k, v in doc.get("incidents", {}).items()},
            last_heartbeat=str(doc.get("last_heartbeat", "")),
        )

    def to_json(self) -> dict:
        return {
            "version": 1,
            "alerted": self.alerted,
            "incidents": self.incidents,
            "last_heartbeat": self.last_heartbeat,
        }

    def merge(self, other: AlertState) -> AlertState:
        """Union of two states (a concurrent writer's and ours): nothing either of them mailed is lost."""
        incidents = dict(other.incidents)
        for series, mine in self.incidents.items():
            theirs = incidents.get(series)
            if theirs is None or mine.get("last_ts", "") >= theirs.get("last_ts", ""):
                merged = dict(mine)
                if theirs:
                    merged["last_alert_ts"] = max(mine.get("last_alert_ts", ""), theirs.get("last_alert_ts", ""))
                    merged["since"] = min(mine.get("since", ""), theirs.get("since", "")) or mine.get("since", "")
                incidents[series] = merged
        return AlertState(
            alerted={**other.alerted, **self.alerted},
            incidents=incidents,
            last_heartbeat=max(self.last_heartbeat, other.last_heartbeat),
        )

    def prune(self) -> None:
        """Bound the state: old points cannot reappear in a new load, old incidents are over."""
        times = [_ts(v) for v in self.alerted.values()]
        times += [_ts(i["last_ts"]) for i in self.incidents.values() if i.get("last_ts")]
        if not times:
            return
        newest = max(times)
        self.alerted = {k: v for k, v in self.alerted.items() if _ts(v) >= newest - KEEP_ALERTED}
        self.incidents = {
            s: i for s, i in self.incidents.items() if _ts(i.get("last_ts", newest)) >= newest - KEEP_INCIDENT
        }


@dataclass
class Decision:
    """Which anomalies of a run to mail, and why the others are not mailed."""

    alert: list[ScoredPoint]  # ``ongoing_since`` set where the point continues a mailed incident
    repeated: int  # already mailed (same series and timestamp)
    continuing: int  # part of an incident mailed less than realert_after_hours ago
    below_threshold: int  # under the dataset's min_severity
    state: AlertState

    @property
    def suppressed(self) -> int:
        return self.repeated + self.continuing + self.below_threshold


def decide(
    state: AlertState, scores: Sequence[ScoredPoint], realert_after_hours: float, min_severity: str
) -> Decision:
    """Apply the memory to a run's scores. Pure: returns the new state, stores nothing."""
    new = AlertState.from_json(json.loads(json.dumps(state.to_json())))  # deep copy
    floor = SEVERITY_RANK.get(min_severity, 0)
    keep: list[ScoredPoint] = []
    repeated = continuing = below = 0
    for point in sorted(scores, key=lambda p: (p.series, p.timestamp)):
        series, ts = point.series, _ts(point.timestamp)
        inc = new.incidents.get(series)
        if not point.is_anomaly:
            if inc and ts > _ts(inc["last_ts"]):
                del new.incidents[series]  # a normal load: the incident is over
            continue
        if SEVERITY_RANK.get(point.severity, 0) < floor:
            below += 1
            continue
        key = point_key(series, ts)
        if key in new.alerted or (inc and ts <= _ts(inc["last_ts"])):
            repeated += 1
            continue
        if inc and not realert_due(ts - _ts(inc["last_alert_ts"]), realert_after_hours):
            inc["last_ts"] = ts.isoformat()
            continuing += 1
            continue
        since = None
        if inc:
            since = _ts(inc["since"])
            inc.update(last_ts=ts.isoformat(), last_alert_ts=ts.isoformat())
        else:
            new.incidents[series] = {
                "since": ts.isoformat(),
                "last_ts": ts.isoformat(),
                "last_alert_ts": ts.isoformat(),
            }
        new.alerted[key] = ts.isoformat()
        keep.append(dataclasses.replace(point, ongoing_since=since))
    new.prune()
    return Decision(keep, repeated, continuing, below, new)


class StateStore:
    """``alerts/<dataset>/state.json`` on S3, with optimistic concurrency (conditional writes)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    @staticmethod
    def key(dataset: str) -> str:
        return f"alerts/{dataset}/state.json"

    def load(self, dataset: str) -> tuple[AlertState, str | None]:
        """The state and its ETag (None when there is none yet)."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key(dataset))
        except self.s3.exceptions.NoSuchKey:
            return AlertState(), None
        return AlertState.from_json(json.loads(obj["Body"].read())), obj["ETag"]

    def save(self, dataset: str, state: AlertState, etag: str | None, attempts: int = 5) -> None:
        """Write ``state`` if nobody wrote since ``etag``; otherwise merge with theirs and try again."""
        for _ in range(attempts):
            body = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key(dataset),
                    Body=body,
                    ContentType="application/json",
                    **condition,
                )
                return
            except self.s3.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
                theirs, etag = self.load(dataset)
                logger.info("alert state changed concurrently; merging", extra={"dataset": dataset})
                state = state.merge(theirs)
        raise RuntimeError(f"could not save alert state for {dataset} after {attempts} concurrent updates")
