"""The scheduled freshness check: read the ETL log, judge each watched table, report what is new.

Thin I/O around the pure decisions of :mod:`dqad_fetcher.freshness`:

* **the log** is ``edo_dms.qe_query_logs`` on Aurora, read with the outbox sweeper's DSN (the same
  database and secret, :func:`dqad_fetcher.handler.outbox_dsn`), or, on the embedded runtime, a CSV
  file with the log's columns named by ``DQAD_LOAD_LOG_URI`` (``dqad demo`` writes one);
* **the state** (open late/missing incidents per table) is ``freshness/<dataset>/state.json`` in
  the run bucket, written with S3 conditional writes (``If-Match`` on the ETag read, or
  ``If-None-Match: *``); two checks racing merge instead of erasing each other;
* **what is sent** is one ``LoadLogChecked`` per dataset with something new to say. Its run id
  derives from the incidents, so when the state write is lost after the publish, the next check
  sends the same run and the notifier's idempotency keeps it to one email. Publish comes first,
  then the state: a crash in between repeats the event (deduplicated), never loses it.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from dqad.contract import LoadIncidentDetail, LoadLogChecked
from dqad.datasets import Dataset, normalise_status
from dqad.freshness import LoadIncident
from dqad.stage import StageRuntime
from dqad_fetcher.freshness import FreshnessState, Judgement, NoJudgement, decide, judge, learn_cadence, slow_load

logger = Logger(service="dqad-fetcher")

#: Only the columns the check needs; a missing optional column (job_name, row_count) reads as NULL.
LOG_QUERY = """
SELECT l.table_name,
       to_jsonb(l) ->> 'job_name' AS job_name,
       l.status,
       coalesce(l.loaded_at, l.ended_at) AS loaded_at,
       (to_jsonb(l) ->> 'row_count') AS row_count,
       (to_jsonb(l) ->> 'started_at')::timestamptz AS started_at
  FROM edo_dms.qe_query_logs l
 WHERE l.table_name IS NOT NULL
   AND coalesce(l.loaded_at, l.ended_at) >= %(since)s
   AND coalesce(l.loaded_at, l.ended_at) <= %(until)s
 ORDER BY 4
"""
LOG_COLUMNS = ("table_name", "job_name", "status", "loaded_at", "row_count", "started_at")


class LoadLogError(ValueError):
    """A log row the check cannot read (named: which row, which column)."""


@dataclass(frozen=True)
class LogEntry:
    table: str
    job: str
    status: str
    at: datetime
    row_count: int | None = None
    started_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        """How long the load took, from the log's own started_at (None when absent or after the end)."""
        if self.started_at is None or self.started_at > self.at:
            return None
        return (self.at - self.started_at).total_seconds()


def _time(value: Any, column: str, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise LoadLogError(f"{where}: {column} is not a timestamp: {value!r}") from None
    if not isinstance(value, datetime):
        raise LoadLogError(f"{where}: {column} is not a timestamp: {value!r}")
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _entry(table: Any, job: Any, status: Any, at: Any, row_count: Any, started_at: Any, where: str) -> LogEntry:
    at = _time(at, "loaded_at", where)
    if at is None:
        raise LoadLogError(f"{where}: loaded_at is missing")
    count: int | None
    try:
        count = None if row_count in (None, "") else int(float(row_count))
    except ValueError:
        raise LoadLogError(f"{where}: row_count is not a number: {row_count!r}") from None
    return LogEntry(
        str(table),
        str(job or ""),
        normalise_status(str(status or "")),
        at,
        count,
        _time(started_at, "started_at", where),
    )


def read_sql_log(dsn: str, since: datetime, until: datetime) -> list[LogEntry]:
    """The log rows of ``[since, until]`` from ``edo_dms.qe_query_logs`` (read-only, UTC session)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=15, application_name="dqad-freshness") as conn:
        conn.read_only = True
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(LOG_QUERY, {"since": since, "until": until})
            return [
                _entry(table, job, status, at, count, started, f"qe_query_logs row {i + 1}")
                for i, (table, job, status, at, count, started) in enumerate(cur)
            ]


def read_csv_log(text: str, since: datetime, until: datetime) -> list[LogEntry]:
    """The same rows from a CSV export of the log (header with at least table_name, status, loaded_at)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("table_name", "status", "loaded_at") if c not in (reader.fieldnames or ())]
    if missing:
        raise LoadLogError(f"load log CSV lacks column(s) {', '.join(missing)} (has {reader.fieldnames})")
    out = []
    for i, row in enumerate(reader, start=2):
        e = _entry(
            row["table_name"],
            row.get("job_name"),
            row["status"],
            row["loaded_at"],
            row.get("row_count"),
            row.get("started_at"),
            f"line {i}",
        )
        if since <= e.at <= until:
            out.append(e)
    return out


def render_csv_log(entries: Iterable[LogEntry]) -> str:
    """The CSV form :func:`read_csv_log` reads (``dqad demo`` writes its log this way)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for e in entries:
        started = "" if e.started_at is None else e.started_at.isoformat()
        writer.writerow(
            (e.table, e.job, e.status, e.at.isoformat(), "" if e.row_count is None else e.row_count, started)
        )
    return buf.getvalue()


# -- state -----------------------------------------------------------------------------------------
class FreshnessStore:
    """``freshness/<dataset>/state.json`` with optimistic concurrency (S3 conditional writes)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    @staticmethod
    def key(dataset: str) -> str:
        return f"freshness/{dataset}/state.json"

    def load(self, dataset: str) -> tuple[FreshnessState, str | None]:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key(dataset))
        except self.s3.exceptions.NoSuchKey:
            return FreshnessState(), None
        return FreshnessState.from_json(json.loads(obj["Body"].read())), obj["ETag"]

    def save(self, dataset: str, state: FreshnessState, etag: str | None, attempts: int = 5) -> None:
        for _ in range(attempts):
            body = json.dumps(state.to_json(), indent=1, sort_keys=True).encode()
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket, Key=self.key(dataset), Body=body, ContentType="application/json", **condition
                )
                return
            except self.s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                ):
                    raise
                theirs, etag = self.load(dataset)
                logger.info("freshness state changed concurrently; merging", extra={"dataset": dataset})
                state = state.merge(theirs)
        raise RuntimeError(f"could not save the freshness state of {dataset} after {attempts} concurrent updates")


# -- the check -------------------------------------------------------------------------------------
@dataclass
class CheckReport:
    checked_at: str
    datasets: int = 0
    tables: int = 0
    late: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)
    not_judged: dict[str, str] = field(default_factory=dict)  # table -> why
    sent: int = 0  # incidents published
    runs: list[str] = field(default_factory=list)


def incidents_run_id(dataset: str, incidents: Sequence[LoadIncident], prefix: str = "log") -> str:
    """Deterministic: the same news about the same loads is the same run (dedupe downstream)."""
    digest = hashlib.sha256("\x1f".join([dataset, *sorted(i.key for i in incidents)]).encode()).hexdigest()
    return f"{prefix}-{digest[:24]}"


def publish_incidents(
    rt: StageRuntime, dataset: str, incidents: Sequence[LoadIncident], now: datetime, prefix: str
) -> str:
    event = LoadLogChecked(
        run_id=incidents_run_id(dataset, incidents, prefix),
        dataset=dataset,
        checked_at=now,
        incidents=tuple(LoadIncidentDetail.model_validate(i.to_json()) for i in incidents),
    )
    rt.publisher.publish(event)
    return event.run_id


@dataclass
class DatasetJudgement:
    judgements: list[Judgement]
    arrivals: dict[str, list[datetime]]
    slow: list[LoadIncident]


def judge_dataset(ds: Dataset, entries: Sequence[LogEntry], now: datetime, report: CheckReport) -> DatasetJudgement:
    """Judge every watched table of one dataset that appears in the log (successful loads only)."""
    patterns = ds.watched_tables
    ok = {normalise_status(s) for s in ds.trigger.statuses}
    since = now - timedelta(days=ds.freshness.history_days)
    times: dict[str, list[datetime]] = defaultdict(list)
    durations: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    jobs: dict[str, str] = {}
    for e in entries:
        if e.status in ok and since <= e.at <= now and any(fnmatch.fnmatchcase(e.table, p) for p in patterns):
            times[e.table].append(e.at)
            jobs[e.table] = e.job or jobs.get(e.table, "")
            if e.duration_s is not None:
                durations[e.table].append((e.at, e.duration_s))
    judgements = []
    slow = []
    for table in sorted(times):
        report.tables += 1
        took = slow_load(table, jobs[table], durations.get(table, []), now, ds.freshness.min_loads)
        if took is not None:
            slow.append(took)
            report.slow.append(table)
        cadence = learn_cadence(table, times[table], ds.freshness)
        if isinstance(cadence, NoJudgement):
            report.not_judged[table] = cadence.reason
            continue
        j = judge(table, jobs[table], cadence, times[table], now)
        judgements.append(j)
        if j.status == "late":
            report.late.append(table)
        elif j.status == "missing":
            report.missing.append(table)
    return DatasetJudgement(judgements, times, slow)


def run_check(rt: StageRuntime, entries: Sequence[LogEntry], now: datetime) -> CheckReport:
    """Judge every dataset's watched tables at ``now``; publish and remember what is new."""
    report = CheckReport(checked_at=now.isoformat())
    store = FreshnessStore(rt.clients("s3"), rt.settings.bucket)
    for ds in rt.catalog.datasets.values():
        if not ds.freshness.enabled or not ds.watched_tables:
            continue
        report.datasets += 1
        judged = judge_dataset(ds, entries, now, report)
        state, etag = store.load(ds.name)
        send, new_state = decide(state, judged.judgements, judged.arrivals, now, judged.slow)
        if send:
            report.runs.append(publish_incidents(rt, ds.name, send, now, "fresh"))
            report.sent += len(send)
        if new_state.to_json() != state.to_json():
            store.save(ds.name, new_state, etag)
    for table, reason in report.not_judged.items():
        logger.info("table not judged", extra={"table": table, "reason": reason})
    return report
