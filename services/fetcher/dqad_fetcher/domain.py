"""Fetcher: turn an ETL log row into runs, and fetch each run's metric history and new data.

Two steps, two entry points:

* ``accept_log_row`` (Aurora trigger → Lambda): validate the compact payload, find the datasets the
  row concerns and put one ``LoadCompleted`` per dataset on the bus. Real Aurora invokes *before*
  its transaction commits, so the log row may later be rolled back: the payload carries everything
  the run needs and nothing here reads the log table back, so a log id that does not exist is
  harmless (at worst one extra, correct, run over the metrics that are there).
* ``fetch`` (LoadCompleted from SQS): stream the dataset's window from its source, normalise each
  chunk to the canonical frame and route its rows by timestamp to ``history.parquet`` /
  ``new.parquet`` under the run's prefix (two writers, one pass: memory bounded by one chunk).

Outcomes of bad input (all tested):

* payload missing a field, unparseable, or concerning no dataset: skipped and logged, no event;
* a log id that does not exist in Aurora (the insert rolled back after the trigger invoked): nothing
  reads the log table, so the run proceeds from the payload; a load that never happened has no new
  data, which ends as below;
* no new rows in the load's window: no DatasetFetched, no downstream run, a warning in the log and a
  ``StageFailed`` (``NoNewData``) so the operator hears of the missing metrics;
* SQL error or statement timeout: ``StageFailed`` whose message carries the statement id;
* source data without a configured column, or with a non-numeric value / non-timestamp time:
  ``StageFailed`` naming the column.

Imports are split by entry point on purpose: the Aurora entry point and the sweeper only validate a
payload and publish, so this module imports nothing heavy at module level; pyarrow (and, through
:mod:`dqad_fetcher.sources` and :func:`dqad_fetcher.canonical.to_canonical_chunk`, pandas and numpy) is
imported by the fetch path when it runs. That keeps the Aurora/sweeper cold start well under a
second (docs/architecture.md §9: ≤ 0.5 s for the handler module); pyarrow types appear in annotations only under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger

from dqad.contract import DataRef, DatasetFetched, LoadCompleted, TimeWindow, loaded_at_problem, make_run_id
from dqad.datasets import Dataset, SqlSource, normalise_status
from dqad.stage import PermanentError, StageRuntime, publish_failure
from dqad.storage import ParquetSink, Storage
from dqad_fetcher.canonical import SchemaMismatch, arrow_scalar, to_canonical_chunk

if TYPE_CHECKING:
    import pyarrow as pa

    from dqad.ports import ProgressCallback
    from dqad_fetcher.sources import Window

logger = Logger(service="dqad-fetcher")

REQUIRED_LOG_FIELDS = ("log_id", "table_name", "loaded_at", "status")


class NoNewData(Exception):
    """The load's window holds no rows in the source: nothing to score, and someone should know."""


class LogRowError(ValueError):
    """The trigger's payload lacks a field or has one of the wrong kind."""


@dataclass(frozen=True)
class LogRow:
    log_id: str
    job_name: str
    table_name: str
    loaded_at: datetime
    status: str
    row_count: int | None = None  # what the ETL says it loaded (the trigger sends it when the log has it)

    @classmethod
    def from_payload(cls, payload: Any) -> LogRow:
        if not isinstance(payload, dict):
            raise LogRowError(f"payload must be a JSON object, got {type(payload).__name__}")
        missing = [f for f in REQUIRED_LOG_FIELDS if payload.get(f) in (None, "")]
        if missing:
            raise LogRowError(f"log row is missing field(s): {', '.join(missing)}")
        try:
            loaded_at = datetime.fromisoformat(str(payload["loaded_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise LogRowError(f"loaded_at: not an ISO timestamp: {payload['loaded_at']!r}") from None
        if loaded_at.tzinfo is None:
            loaded_at = loaded_at.replace(tzinfo=UTC)  # Aurora's timestamp without time zone is UTC by convention
        problem = loaded_at_problem(loaded_at)
        if problem:
            raise LogRowError(problem)
        return cls(
            log_id=str(payload["log_id"])[:64],
            job_name=str(payload.get("job_name") or "")[:256],
            table_name=str(payload["table_name"])[:256],
            loaded_at=loaded_at.astimezone(UTC),
            status=normalise_status(str(payload["status"]))[:32],
            row_count=_row_count(payload.get("row_count")),
        )


def _row_count(raw: Any) -> int | None:
    """The log's row count, or None when absent. A bad one is ignored with a warning naming it: the
    load's metric run must not be lost because an optional column holds rubbish."""
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = -1
    if value < 0:
        logger.warning("log row_count ignored", extra={"reason": f"row_count: not a count of rows: {raw!r}"})
        return None
    return value


def accept_log_row(rt: StageRuntime, payload: Any) -> list[str]:
    """Publish one LoadCompleted per dataset the log row concerns; return the run ids.

    A row that is malformed or concerns no dataset is skipped and logged, never raised: the
    invocation is asynchronous and a raise would only make Lambda retry a row that cannot succeed.
    """
    try:
        row = LogRow.from_payload(payload)
    except LogRowError as exc:
        logger.warning("log row skipped", extra={"reason": str(exc)})
        return []
    datasets = rt.catalog.matching(row.table_name, row.job_name, row.status)
    if not datasets:
        logger.info("log row concerns no dataset", extra={"table_name": row.table_name, "log_id": row.log_id})
        return []
    run_ids = []
    for ds in datasets:
        event = LoadCompleted(
            run_id=make_run_id(ds.name, row.log_id, row.loaded_at),
            dataset=ds.name,
            log_id=row.log_id,
            job_name=row.job_name,
            table_name=row.table_name,
            loaded_at=row.loaded_at,
            status=row.status,
        )
        rt.publisher.publish(event)
        run_ids.append(event.run_id)
        if row.row_count == 0:
            report_empty_load(rt, ds.name, row)
    return run_ids


def report_empty_load(rt: StageRuntime, dataset: str, row: LogRow) -> str:
    """The ETL log says this successful load wrote 0 rows: say so now, in plain words.

    The metric run goes on as usual (it confirms and details the damage); this does not wait for it,
    nor for metrics that an empty load may never produce. The run id derives from the log row, so a
    re-driven or repeated invocation is one email.
    """
    from dqad.freshness import LoadIncident
    from dqad_fetcher.loadlog import publish_incidents

    incident = LoadIncident(
        kind="empty_load",
        table=row.table_name,
        job=row.job_name,
        arrived_at=row.loaded_at,
        row_count=0,
        log_id=row.log_id,
    )
    run_id = publish_incidents(rt, dataset, [incident], row.loaded_at, "empty")
    logger.warning("empty load logged", extra={"table_name": row.table_name, "log_id": row.log_id, "run_id": run_id})
    return run_id


def dsn_from_secret(secret: str) -> str:
    """A libpq DSN from a Secrets Manager secret: a DSN/URL string, or RDS's JSON form.

    RDS-managed secrets hold ``{"username", "password", "host", "port", "dbname"}``; the DSN is
    built with psycopg's ``make_conninfo`` so a password with spaces or quotes is escaped correctly.
    """
    text = secret.strip()
    if not text.startswith("{"):
        return text
    from psycopg.conninfo import make_conninfo

    raw = json.loads(text)
    keys = {
        "username": "user",
        "user": "user",
        "password": "password",
        "host": "host",
        "port": "port",
        "dbname": "dbname",
        "database": "dbname",
        "sslmode": "sslmode",
    }
    return make_conninfo("", **{keys[k]: str(v) for k, v in raw.items() if k in keys and v not in (None, "")})


class Secrets:
    """DSNs for SQL sources: from Secrets Manager on AWS, from an environment variable locally."""

    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt

    def dsn(self, src: SqlSource) -> str:
        if src.dsn_env:
            value = os.environ.get(src.dsn_env)
            if not value:
                raise PermanentError(f"environment variable {src.dsn_env} (the dataset's dsn_env) is not set")
            return value
        secret = self.rt.clients("secretsmanager").get_secret_value(SecretId=src.dsn_secret_arn)["SecretString"]
        return dsn_from_secret(secret)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class WindowSplit:
    """Routes canonical chunks by timestamp: ``[history_start, new_start)`` → history,
    ``[new_start, new_end)`` → new, anything else is dropped (and counted).

    The two Parquet sinks open on the first chunk with its schema; a later chunk with other columns
    is a :class:`SchemaMismatch` naming the column. Nothing is uploaded until :meth:`finish`, and
    nothing at all when the window has no new rows.
    """

    def __init__(self, storage: Storage, prefix: str, window: Window) -> None:
        import pyarrow as pa

        self.storage = storage
        self.prefix = prefix
        epoch = datetime(1970, 1, 1)
        hs, ns, ne = (
            arrow_scalar((_naive_utc(t) - epoch) // timedelta(microseconds=1) * 1000, pa.timestamp("ns"))
            for t in window
        )
        self._bounds = (hs, ns, ne)
        self.history: ParquetSink | None = None
        self.new: ParquetSink | None = None
        self.schema: pa.Schema | None = None
        self.rows_in = 0
        self.dropped = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        import pyarrow.compute as pc

        if self.schema is None:
            self.schema = table.schema
            self.history = self.storage.parquet_sink(f"{self.prefix}/history.parquet", table.schema)
            self.new = self.storage.parquet_sink(f"{self.prefix}/new.parquet", table.schema)
        elif table.schema.names != self.schema.names:
            odd = sorted(set(table.schema.names) ^ set(self.schema.names)) or table.schema.names
            raise SchemaMismatch(str(odd[0]), "columns changed between chunks of the source")
        assert self.history is not None and self.new is not None
        hs, ns, ne = self._bounds
        ts = table.column("timestamp")
        bounds = pc.min_max(ts)  # a chunk wholly on one side (most of them) is written without a copy
        low, high = bounds["min"], bounds["max"]
        empty = table.slice(0, 0)
        if pc.greater_equal(low, hs).as_py() and pc.less(high, ns).as_py():
            history, new = table, empty
        elif pc.greater_equal(low, ns).as_py() and pc.less(high, ne).as_py():
            history, new = empty, table
        else:
            in_history = pc.and_(pc.greater_equal(ts, hs), pc.less(ts, ns))
            in_new = pc.and_(pc.greater_equal(ts, ns), pc.less(ts, ne))
            history, new = table.filter(in_history), table.filter(in_new)
        self.history.write(history)
        self.new.write(new)
        self.rows_in += table.num_rows
        self.dropped += table.num_rows - history.num_rows - new.num_rows

    def finish(self) -> tuple[DataRef, DataRef] | None:
        """Upload both files and return their pointers, or discard them (None) when nothing is new."""
        if self.history is None or self.new is None or self.new.rows == 0:
            self.abort()
            return None
        return self.history.close(), self.new.close()

    def abort(self) -> None:
        for sink in (self.history, self.new):
            if sink is not None:
                sink.abort()


def prefetched(chunks: Iterator[pa.Table], depth: int = 1) -> Iterator[pa.Table]:
    """Read the source ``depth`` chunk(s) ahead in a thread, so fetching and canonicalising overlap.

    The database works (and the driver waits on the network, GIL released) while this thread
    canonicalises and writes the previous chunk. Memory stays bounded: at most ``depth`` chunks wait
    in the queue. The source generator runs, and is closed, in the reader thread only.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    break
            else:
                put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the source's connection / temp files are released in the thread that opened them

    reader = threading.Thread(target=produce, name="dqad-fetch-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "chunk":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        reader.join(timeout=60)


def split_chunks(
    chunks: Iterable[pa.Table], ds: Any, split: WindowSplit, progress: ProgressCallback | None = None
) -> None:
    """Canonicalise each raw chunk and route it; errors leave nothing uploaded.

    ``progress`` is told ``(0, None)`` first, then the rows read so far after each chunk.
    """
    try:
        if progress:
            progress(0, None)
        for raw in prefetched(iter(chunks)):
            if raw.num_rows:
                split.add(to_canonical_chunk(raw, ds))
                if progress:
                    progress(split.rows_in, None)
    except BaseException:
        split.abort()
        raise


#: How the Redshift Data API poller waits and reads the time (module-level so tests can drive it).
POLL_SLEEP: Callable[[float], None] = time.sleep
POLL_CLOCK: Callable[[], float] = time.monotonic
#: Told how many rows a fetch has read (see :func:`split_chunks`). None on AWS; the CLI's embedded
#: runtime (``dqad_dev.run.drive_chain``) sets a terminal progress bar here while the fetcher runs.
FETCH_PROGRESS: ProgressCallback | None = None


class _Files(NamedTuple):
    """The run's two Parquet files, uploaded."""

    history: DataRef
    new: DataRef


@dataclass(frozen=True)
class _Fetched:
    """One pass over the source: the files it wrote, or None when the window had no new rows (nothing
    was uploaded), and what the log line says about it either way."""

    files: _Files | None
    log: dict[str, Any]


def fetch(
    rt: StageRuntime,
    detail: LoadCompleted,
    *,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> DatasetFetched | None:
    """Fetch one run's window, write the two Parquet files, emit DatasetFetched (idempotent: fixed keys).

    ``sleep`` / ``clock`` (default :data:`POLL_SLEEP` / :data:`POLL_CLOCK`) pace the Redshift Data
    API poller; tests inject them to drive a statement to FINISHED, FAILED or a timeout without waiting.
    """
    try:
        ds = rt.catalog.get(detail.dataset)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    window = ds.window(detail.loaded_at)
    fetched = _fetch_window(rt, detail, ds, window, sleep or POLL_SLEEP, clock or POLL_CLOCK)
    if fetched.files is None:
        _report_no_new_data(rt, detail, window, fetched.log)
        return None
    return _publish_fetched(rt, detail, ds, window, fetched.files, fetched.log)


def _fetch_window(
    rt: StageRuntime,
    detail: LoadCompleted,
    ds: Dataset,
    window: Window,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> _Fetched:
    """Stream the source once into the two files. A SQL error, a timeout or data that does not fit the
    configured columns would fail the same way on a retry: they are permanent (a StageFailed)."""
    from dqad_fetcher.sources import SourceContext, SourceError, iter_source

    prefix = rt.run_prefix(ds.name, detail.run_id)
    ctx = SourceContext(
        storage=rt.storage,
        dsn=Secrets(rt).dsn,
        client=rt.clients,
        unload_uri=f"{prefix}/unload/",
        run_id=detail.run_id,
        sleep=sleep,
        clock=clock,
    )
    split = WindowSplit(rt.storage, prefix, window)
    started = time.perf_counter()
    try:
        split_chunks(iter_source(ds, window, ctx), ds, split, FETCH_PROGRESS)
        refs = split.finish()
    except (SchemaMismatch, SourceError) as exc:
        raise PermanentError(str(exc)) from exc
    log = {
        "run_id": detail.run_id,
        "dataset": ds.name,
        "rows": split.rows_in,
        "outside_window": split.dropped,
        "statements": ctx.statement_ids,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return _Fetched(files=None if refs is None else _Files(*refs), log=log)


def _report_no_new_data(rt: StageRuntime, detail: LoadCompleted, window: Window, log: dict[str, Any]) -> None:
    """An ETL load with no metrics is itself worth telling someone about: the run ends here, but
    visibly (an operator alert), never in silence. The record is handled, not parked in the DLQ."""
    _, new_start, new_end = window
    logger.warning("no new data in the load's window; no run downstream", extra=log)
    publish_failure(
        rt,
        detail,
        NoNewData(
            f"the source has no rows for this load's window [{new_start:%Y-%m-%d %H:%M}, {new_end:%Y-%m-%d %H:%M}) "
            f"UTC: the metrics of log {detail.log_id} ({detail.table_name}) are missing"
        ),
    )


def _publish_fetched(
    rt: StageRuntime, detail: LoadCompleted, ds: Dataset, window: Window, files: _Files, log: dict[str, Any]
) -> DatasetFetched:
    """DatasetFetched for the run, or one per shard when the run is too big for one message."""
    history_start, new_start, new_end = window
    logger.info("fetched", extra={**log, "history_rows": files.history.rows, "new_rows": files.new.rows})
    event = DatasetFetched(
        run_id=detail.run_id,
        dataset=ds.name,
        history=files.history,
        new=files.new,
        window=TimeWindow(history_start=history_start, new_start=new_start, new_end=new_end),
        load_log_id=detail.log_id,
    )
    shards = shard_run(rt, event, ds.shards.max_rows)
    for shard_event in shards or [event]:
        rt.publisher.publish(shard_event)
    return event


def shard_run(rt: StageRuntime, event: DatasetFetched, max_rows: int) -> list[DatasetFetched]:
    """The run as shard messages when it holds more than ``max_rows`` rows (docs/architecture.md §12).

    The fetched files are read back batch by batch and written as parts by load group
    (:func:`dqad.shards.partition`); one DatasetFetched per shard carries that shard's two parts.
    An empty list: the run is small enough for one message.
    """
    from dqad.contract import Shard
    from dqad.shards import TooManyShards, join_id, partition, shard_count

    try:
        count = shard_count(event.history.rows + event.new.rows, max_rows)
    except TooManyShards as exc:
        raise PermanentError(str(exc)) from exc
    if count == 1:
        return []
    prefix = rt.run_prefix(event.dataset, event.run_id)
    parts = partition(rt.storage, prefix, {"history": event.history, "new": event.new}, count)
    if len(parts) == 1:  # every load group hashed to one shard: the run is one message after all
        return []
    join = join_id("fetcher", *(p[name].sha256 for p in parts for name in ("history", "new")))
    logger.info("sharded", extra={"run_id": event.run_id, "shards": len(parts), "join": join})
    return [
        event.model_copy(
            update={"history": p["history"], "new": p["new"], "shard": Shard(index=i, count=len(parts), join=join)}
        )
        for i, p in enumerate(parts)
    ]
