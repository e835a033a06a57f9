"""Dataset configuration: what a dataset is, declared in a file rather than in code (docs/architecture.md).

A dataset names where its metrics come from, which columns are keys / timestamp / value, which
Aurora log rows trigger it, and per-stage options. The file is TOML or JSON:

.. code-block:: toml

    [datasets.sales_dq]
    keys = ["table_name", "column_name", "metric_name"]
    timestamp = "load_ts"
    value = "metric_value"
    group = ["table_name"]            # keys identifying one load, for cross-metric features
    history_days = 180
    new_window_hours = 24
    [datasets.sales_dq.trigger]
    table_names = ["sales.*"]         # fnmatch patterns on qe_query_logs.table_name
    [datasets.sales_dq.source]
    kind = "sql"
    dsn_secret_arn = "arn:aws:secretsmanager:..."
    query = "SELECT ... WHERE load_ts >= %(history_start)s AND load_ts < %(new_end)s"

Validation happens when the file is loaded, with errors that name the dataset and the key, because a
typo in a column name should fail at deploy time, not as an empty email at 6 a.m.

Nothing here needs pandas or pyarrow: every stage loads the catalog (through :mod:`dqad.stage`),
and turning source rows into the canonical frame is the fetcher's own work
(:mod:`dqad_fetcher.canonical`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SQL_PARAMETERS = ("history_start", "new_start", "new_end")
_PARAM_REF = re.compile(r"%\((\w+)\)s|(?<![:\w]):([A-Za-z_]\w*)")
PARAM_REF = _PARAM_REF  # public: the fetcher renders the same references it validates here
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")  # a standard SQL string literal ('' is an escaped quote)

Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern)]


class DatasetConfigError(ValueError):
    """The dataset configuration is wrong; the message names the dataset and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def referenced_parameters(query: str) -> set[str]:
    """Named parameters a query template uses, in psycopg (``%(name)s``) or Data API (``:name``) form."""
    names = set()
    for pyformat, colon in _PARAM_REF.findall(query):
        names.add(pyformat or colon)
    return names


class _QuerySource(_Strict):
    query: str = Field(min_length=1)

    @field_validator("query")
    @classmethod
    def _parameters_known(cls, query: str) -> str:
        unknown = referenced_parameters(query) - set(SQL_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown SQL parameter(s) {sorted(unknown)}; a query may use {list(SQL_PARAMETERS)}")
        quoted = sorted({n for lit in _SQL_STRING.findall(query) for n in referenced_parameters(lit)})
        if quoted:
            # bound server-side it would be the text '$1'; rendered into a COPY or an UNLOAD, a syntax error
            raise ValueError(
                f"parameter(s) {quoted} inside a quoted string: write %(name)s (or :name) without quotes, "
                "the window bounds are bound as timestamps"
            )
        if ";" in query.strip().rstrip(";"):
            raise ValueError("a query must be one statement (found ';' inside it)")
        return query


FILE_SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}


class FileSource(_Strict):
    """A CSV / CSV.gz / Parquet file (local path or s3:// URI), for local use and small datasets.

    The columns are the dataset's ``keys`` / ``timestamp`` / ``value``; the simplest form is
    ``series,timestamp,value`` with ``keys = ["series"]``. ``format`` is taken from the suffix unless
    set; a ``.gz`` CSV is decompressed on the fly.
    """

    kind: Literal["file"]
    path: str = Field(min_length=1, description="CSV, CSV.gz or Parquet; local path or s3:// URI")
    format: Literal["csv", "parquet"] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    chunk_rows: int = Field(default=100_000, ge=1_000)

    @model_validator(mode="after")
    def _known_format(self) -> FileSource:
        if self.format is None and self.file_format is None:
            raise ValueError(
                f"cannot tell the format of {self.path!r} from its suffix; use one of "
                f"{sorted(FILE_SUFFIXES)} or set format = 'csv' | 'parquet'"
            )
        return self

    @property
    def file_format(self) -> str | None:
        if self.format:
            return self.format
        lower = self.path.lower()
        return next((fmt for suffix, fmt in FILE_SUFFIXES.items() if lower.endswith(suffix)), None)

    @property
    def gzipped(self) -> bool:
        return self.path.lower().endswith(".gz")


class SqlSource(_QuerySource):
    """A DB-API (psycopg) connection to PostgreSQL or Redshift, streamed in ``chunk_rows`` chunks.

    ``fetch_method``: ``copy`` streams ``COPY (query) TO STDOUT`` (PostgreSQL only, several times
    cheaper), ``cursor`` reads a server-side cursor (any server, Redshift included), ``auto`` picks
    ``copy`` on PostgreSQL and ``cursor`` elsewhere (docs/fetcher.md).
    The query uses ``%(history_start)s`` / ``%(new_start)s`` / ``%(new_end)s``, bound by the driver.
    The DSN is never in the configuration: a Secrets Manager ARN on AWS, an environment variable
    locally.
    """

    kind: Literal["sql"]
    dsn_secret_arn: str | None = None  # Secrets Manager secret holding the DSN (on AWS)
    dsn_env: str | None = None  # name of an environment variable holding the DSN (local use)
    chunk_rows: int = Field(default=100_000, ge=1_000)
    statement_timeout_s: float = Field(default=900, gt=0, description="server-side statement_timeout")
    binary: bool = Field(
        default=True, description="cursor method: binary result format; false for a server that only sends text"
    )
    fetch_method: Literal["auto", "copy", "cursor"] = Field(
        default="auto",
        description="copy: COPY (query) TO STDOUT, PostgreSQL only, fastest; cursor: server-side cursor, "
        "works on Redshift too; auto: copy on PostgreSQL >= 9.0, cursor elsewhere",
    )

    @field_validator("query")
    @classmethod
    def _pyformat_only(cls, query: str) -> str:
        colon = {c for _, c in _PARAM_REF.findall(query) if c}
        if colon:
            raise ValueError(f"a sql source binds %(name)s parameters; found :name form for {sorted(colon)}")
        return query

    @model_validator(mode="after")
    def _one_dsn(self) -> SqlSource:
        if bool(self.dsn_secret_arn) == bool(self.dsn_env):
            raise ValueError("set exactly one of dsn_secret_arn or dsn_env")
        return self


IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")


class RedshiftDataSource(_QuerySource):
    """Redshift through the Data API: ``UNLOAD`` of the query to S3 as Parquet, polled to completion.

    Credentials come from IAM, never from configuration: ``cluster_identifier`` + ``db_user``
    (GetClusterCredentials under the Lambda's role), ``cluster_identifier`` alone (the IAM identity
    becomes the database user), ``workgroup_name`` (Redshift Serverless GetCredentials), or a
    ``secret_arn`` with either. The query uses ``:history_start`` / ``:new_start`` / ``:new_end`` (or
    the ``%(name)s`` form); see the fetcher's sources module for how they reach the UNLOAD.
    """

    kind: Literal["redshift_data"]
    database: Identifier
    cluster_identifier: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,62}$")
    workgroup_name: str | None = Field(default=None, pattern=r"^[a-z0-9-]{3,64}$")
    db_user: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_$.@:-]{0,127}$")
    secret_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
    unload_iam_role: str = Field(min_length=20, description="role Redshift assumes to UNLOAD to S3")
    poll_deadline_s: float = Field(default=600, gt=0)
    poll_initial_s: float = Field(default=0.5, gt=0, description="first wait between describe_statement calls")
    poll_max_interval_s: float = Field(default=10, gt=0, description="longest wait between two polls")
    max_file_size_mb: int = Field(default=256, ge=5, le=6200, description="UNLOAD MAXFILESIZE: bounds one part")
    chunk_rows: int = Field(default=100_000, ge=1_000)

    @field_validator("unload_iam_role")
    @classmethod
    def _role_arn(cls, role: str) -> str:
        # The role is written into the UNLOAD text: only a well-formed role ARN can get there.
        if not IAM_ROLE_ARN.fullmatch(role):
            raise ValueError(f"not an IAM role ARN: {role!r} (expected arn:aws:iam::<account>:role/<name>)")
        return role

    @field_validator("query")
    @classmethod
    def _no_backslash(cls, query: str) -> str:
        # The query travels inside UNLOAD's quoted literal; a backslash could act as an escape there.
        if "\\" in query:
            raise ValueError("a redshift_data query must not contain a backslash (it is embedded in UNLOAD('...'))")
        return query

    @model_validator(mode="after")
    def _one_target(self) -> RedshiftDataSource:
        if bool(self.cluster_identifier) == bool(self.workgroup_name):
            raise ValueError("set exactly one of cluster_identifier or workgroup_name")
        if self.db_user and self.secret_arn:
            raise ValueError("set at most one of db_user (temporary IAM credentials) or secret_arn")
        if self.db_user and self.workgroup_name:
            raise ValueError("db_user applies to a provisioned cluster; a workgroup derives the user from IAM")
        return self


Source = Annotated[FileSource | SqlSource | RedshiftDataSource, Field(discriminator="kind")]


#: The success set of the Aurora trigger's WHEN guard (sql/install.sql), the default of a dataset.
SUCCESS_STATUSES = ("SUCCESS", "SUCCEEDED", "SUCCESSFUL", "OK", "COMPLETED", "COMPLETE", "DONE", "WARNING")


def normalise_status(status: str) -> str:
    """``upper(btrim(status))``, exactly as the trigger's guard compares it."""
    return status.strip().upper()


class Trigger(_Strict):
    table_names: tuple[str, ...] = ()
    job_names: tuple[str, ...] = ()
    statuses: tuple[str, ...] = SUCCESS_STATUSES

    def matches(self, table_name: str, job_name: str, status: str) -> bool:
        # Same normalisation as the SQL guard: ' success ' from the ETL is a success on both sides.
        if normalise_status(status) not in {normalise_status(s) for s in self.statuses}:
            return False
        by_table = any(fnmatch.fnmatchcase(table_name, p) for p in self.table_names)
        by_job = any(fnmatch.fnmatchcase(job_name, p) for p in self.job_names)
        return by_table or by_job


class TrainerOptions(_Strict):
    max_model_age_days: float = Field(default=7, gt=0)
    retrain_on_new_labels: bool = True
    drift_threshold: float = Field(default=0.25, gt=0, description="relative shift of the median score")
    # The training job (docs/architecture.md §12): SageMaker Processing instances, and the rows it
    # trains on at most (every series with a labelled anomaly, a stratified sample of the others).
    instance_type: str | None = Field(default=None, pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=20)
    sample_rows: int = Field(default=1_000_000, ge=1_000)


class ShardOptions(_Strict):
    """When a run is split into shards (docs/architecture.md §12).

    A run whose fetched rows (history + new, i.e. series × history points) exceed ``max_rows`` is
    written as ``ceil(rows / max_rows)`` shards by load group; the labeler and the scorer process
    each shard as its own message.
    """

    max_rows: int = Field(default=1_000_000, ge=1, description="rows (history + new) one stage invocation holds")


class NotifierOptions(_Strict):
    """Who gets mailed what (see docs/alerts.md)."""

    max_in_body: int = Field(default=20, ge=1, description="anomalies listed in the email; the rest in the report")
    min_severity: Literal["low", "medium", "high"] = "low"
    realert_after_hours: float = Field(default=24, ge=0, description="a continuing incident is re-sent after this")
    heartbeat: bool = Field(default=False, description="at most one 'all clear' email per UTC day on clean runs")
    feedback_link_expiry_hours: float = Field(
        default=14 * 24, gt=0, le=30 * 24, description="validity of the email's links (at most 30 days)"
    )


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` as a timedelta; anything else is refused, named."""
    match = _DURATION.match(text or "")
    if not text or not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"duration {text!r}: expected e.g. '30m', '2h', '1h30m' or '90s'")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


class FreshnessOptions(_Strict):
    """When a watched table's load is due, and how late is too late (docs/alerts.md, freshness).

    Learnt from the ETL log by default; ``schedule`` and ``tolerance`` override what was learnt:
    ``freshness = { tolerance = "30m", schedule = "weekdays 02:15", timezone = "Europe/Paris" }``.
    """

    enabled: bool = True
    tables: tuple[str, ...] = Field(default=(), description="fnmatch patterns; default: the trigger's table_names")
    # 'daily 02:15', 'weekdays 06:00,18:00', 'mon,thu 03:00', 'hourly :05'
    schedule: str | None = None
    # how late a load may be before it is reported: '30m', '2h'
    tolerance: str | None = None
    # IANA zone the ETL schedule runs in (a scheduler keeps local time across DST)
    timezone: str = "UTC"
    history_days: float = Field(default=35, gt=1, le=366, description="log history the cadence is learnt from")
    min_loads: int = Field(default=8, ge=3, description="fewer loads than this: no judgement, and it says so")

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'Europe/Paris' or 'UTC')") from None
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None:
            parse_schedule(v)
        return v

    def tolerance_delta(self) -> timedelta | None:
        return None if self.tolerance is None else parse_duration(self.tolerance)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_schedule(text: str) -> tuple[frozenset[int], tuple[int, ...]]:
    """A schedule override as (weekdays 0=Monday…, minutes of the day of each load).

    ``daily 02:15``, ``weekdays 06:00,18:00``, ``weekends 09:00``, ``mon,thu 03:00``, ``hourly :05``
    (every hour at minute 5), ``hourly`` (at :00). Refused with the reason otherwise.
    """
    parts = (text or "").strip().lower().split()
    if not parts:
        raise ValueError("schedule is empty: expected e.g. 'daily 02:15' or 'weekdays 06:00'")
    days_word = parts[0]
    if days_word == "hourly":
        minute = 0
        if len(parts) == 2:
            m = re.fullmatch(r":?(\d{1,2})", parts[1])
            if m is None or int(m.group(1)) > 59:
                raise ValueError(f"schedule {text!r}: 'hourly' takes a minute such as ':05'")
            minute = int(m.group(1))
        elif len(parts) > 2:
            raise ValueError(f"schedule {text!r}: 'hourly' takes at most a minute such as ':05'")
        return frozenset(range(7)), tuple(h * 60 + minute for h in range(24))
    if len(parts) != 2:
        raise ValueError(f"schedule {text!r}: expected '<days> <HH:MM>[,<HH:MM>…]', e.g. 'weekdays 02:15'")
    named = {"daily": range(7), "weekdays": range(5), "weekends": range(5, 7)}
    if days_word in named:
        days = frozenset(named[days_word])
    else:
        try:
            days = frozenset(_WEEKDAYS.index(d[:3]) for d in days_word.split(","))
        except ValueError:
            raise ValueError(
                f"schedule {text!r}: days must be daily, weekdays, weekends or names like mon,thu"
            ) from None
    minutes = []
    for clock in parts[1].split(","):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", clock)
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"schedule {text!r}: {clock!r} is not a time of day HH:MM")
        minutes.append(int(m.group(1)) * 60 + int(m.group(2)))
    return days, tuple(sorted(set(minutes)))
MetricRole = Literal["row_count", "null_pct", "distinct", "sum", "duration"]


class IncidentOptions(_Strict):
    """How the scorer names incidents (docs/alerts.md, "Incidents").

    ``metrics`` adds name patterns (fnmatch, case-insensitive, on a series' last key) per role, tried
    before the defaults of :data:`dqad.incidents.DEFAULT_PATTERNS`: ``metrics = { row_count =
    ["n_loaded"] }``. ``job_column`` is the context column naming each load's ETL job; loads of one
    job within ``job_window_hours`` whose incidents share a kind become one incident.
    """

    metrics: dict[MetricRole, tuple[str, ...]] = Field(default_factory=dict)
    job_column: str = "job_name"
    job_window_hours: float = Field(default=6, gt=0)
    stuck_loads: int = Field(default=3, ge=1, description="repeats of the previous loads' value that make it stuck")
    drift_loads: int = Field(default=2, ge=1, description="previous loads beyond the same edge that make a drift")
    partial_below: float = Field(default=0.8, gt=0, lt=1, description="rows under this share of usual: partial")
    duplicate_ratio: tuple[float, float] = (1.7, 2.3)

    def rules(self) -> Any:
        """The :class:`dqad.incidents.Rules` these options describe."""
        from dqad.incidents import MetricRoles, Rules

        return Rules(
            roles=MetricRoles({str(k): v for k, v in self.metrics.items()}),
            partial_below=self.partial_below,
            duplicate_ratio=self.duplicate_ratio,
            stuck_loads=self.stuck_loads,
            drift_loads=self.drift_loads,
            job_window=timedelta(hours=self.job_window_hours),
        )


class Channel(_Strict):
    """A chat or webhook destination besides the email (docs/alerts.md, "Channels").

    ``secret`` names the Secrets Manager secret holding the webhook URL (for ``webhook``: a JSON
    object ``{"url": ..., "signing_key": ...}``), never the URL itself: a webhook URL is a credential.
    """

    kind: Literal["slack", "teams", "webhook"]
    secret: str = Field(min_length=1, max_length=2048)
    name: str = Field(default="", max_length=64, description="how operator alerts name it; default: kind/secret")

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}/{self.secret.rsplit(':', 1)[-1]}"


class Holidays(_Strict):
    """A dataset's holiday calendar: a country's (``holidays`` package) and the dataset's own dates.

    ``holidays = { country = "US", subdivision = "NY", extra = ["2026-12-24"] }``. Holidays are a
    candidate calendar effect: each series shows whether they move it (docs/architecture.md §6).
    """

    country: str | None = None
    subdivision: str | None = None
    extra: tuple[date, ...] = ()

    @model_validator(mode="after")
    def _known_calendar(self) -> Holidays:
        if self.subdivision and not self.country:
            raise ValueError("holidays.subdivision needs holidays.country")
        if self.country:  # unknown codes fail when the catalog loads, not at the first labelling run
            self.dates(date(2000, 1, 1), date(2000, 1, 1))
        return self

    def dates(self, start: date, end: date) -> tuple[date, ...]:
        from dqad.detect.holiday_calendar import holiday_dates

        return holiday_dates(self.country, start, end, subdivision=self.subdivision, extra=self.extra)


#: years of holidays a run's configuration carries (history before it, scoring loads after it)
HOLIDAY_YEARS_BACK, HOLIDAY_YEARS_AHEAD = 3, 2


class Dataset(_Strict):
    name: str
    description: str = ""
    keys: tuple[Identifier, ...] = Field(min_length=1)
    timestamp: Identifier
    value: Identifier
    group: tuple[Identifier, ...] = ()
    context: tuple[Identifier, ...] = ()
    history_days: float = Field(default=180, gt=0)
    new_window_hours: float = Field(default=24, gt=0)
    trigger: Trigger
    source: Source
    labeler: dict[str, Any] = Field(default_factory=dict)
    detector: dict[str, Any] = Field(default_factory=dict)
    holidays: Holidays | None = None
    trainer: TrainerOptions = TrainerOptions()
    shards: ShardOptions = ShardOptions()
    notifier: NotifierOptions = NotifierOptions()
    freshness: FreshnessOptions = FreshnessOptions()
    incidents: IncidentOptions = IncidentOptions()
    channels: tuple[Channel, ...] = ()

    @model_validator(mode="after")
    def _columns_consistent(self) -> Dataset:
        named = [*self.keys, self.timestamp, self.value]
        if len(set(named)) != len(named):
            raise ValueError("keys, timestamp and value must be distinct columns")
        stray = set(self.group) - set(self.keys)
        if stray:
            raise ValueError(f"group columns {sorted(stray)} must be among keys {list(self.keys)}")
        labels = [c.label for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError("channels: two channels with the same name; give each a distinct name")
        return self

    def stage_settings(self, stage: Literal["labeler", "detector"], today: date | None = None) -> dict[str, Any]:
        """The labeler's or detector's settings with the dataset's holiday calendar expanded into dates.

        A plain ``holidays = [...]`` list in the stage's own section keeps working; the calendar's
        dates are added to it, for the years a run's history and its scoring loads can span.
        """
        out = dict(self.labeler if stage == "labeler" else self.detector)
        if self.holidays is not None:
            t = today or datetime.now(UTC).date()
            span = (date(t.year - HOLIDAY_YEARS_BACK, 1, 1), date(t.year + HOLIDAY_YEARS_AHEAD, 12, 31))
            own = [str(d)[:10] for d in out.get("holidays", ())]
            out["holidays"] = sorted({*own, *(d.isoformat() for d in self.holidays.dates(*span))})
        return out

    @property
    def watched_tables(self) -> tuple[str, ...]:
        """fnmatch patterns of the tables whose loads the freshness check watches (default: the trigger's)."""
        return self.freshness.tables or self.trigger.table_names

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, self.timestamp, self.value, *self.context)

    def window(self, loaded_at: datetime) -> tuple[datetime, datetime, datetime]:
        """(history_start, new_start, new_end) for a load: only the new load is "new"."""
        end = loaded_at.astimezone(UTC) if loaded_at.tzinfo else loaded_at.replace(tzinfo=UTC)
        end = end + timedelta(seconds=1)  # the load's own timestamp is included
        new_start = end - timedelta(hours=self.new_window_hours)
        return new_start - timedelta(days=self.history_days), new_start, end


class DatasetCatalog(_Strict):
    datasets: dict[str, Dataset]

    def get(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise DatasetConfigError(
                f"unknown dataset {name!r}; configured: {', '.join(sorted(self.datasets)) or 'none'}"
            ) from None

    def matching(self, table_name: str, job_name: str, status: str) -> list[Dataset]:
        return [d for d in self.datasets.values() if d.trigger.matches(table_name, job_name, status)]


def parse_catalog(text: str, fmt: str = "toml") -> DatasetCatalog:
    try:
        raw = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise DatasetConfigError(f"dataset configuration is not valid {fmt.upper()}: {exc}") from None
    unknown_top = set(raw) - {"datasets"}
    if unknown_top:
        raise DatasetConfigError(f"unknown top-level key(s) {sorted(unknown_top)}; expected 'datasets'")
    datasets = {}
    for name, body in (raw.get("datasets") or {}).items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise DatasetConfigError(f"dataset name {name!r}: use lower-case letters, digits and _")
        try:
            datasets[name] = Dataset.model_validate({"name": name, **body})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
            raise DatasetConfigError(f"dataset {name!r}: {problems}") from None
    return DatasetCatalog(datasets=datasets)


# -- writing a catalog ------------------------------------------------------------------------------
# The long format most warehouses' data-quality jobs write (one row per table, metric and load), and
# the one the demo, the load test, the benchmarks and most tests use.
STANDARD_LONG_FORMAT: dict[str, Any] = {
    "keys": ["table_name", "metric_name"],
    "timestamp": "load_ts",
    "value": "metric_value",
    "group": ["table_name"],
}


def long_format_dataset(*, trigger_tables: list[str], source: dict[str, Any], **options: Any) -> dict[str, Any]:
    """One dataset of :data:`STANDARD_LONG_FORMAT`: its trigger tables, its source and any other keys.

    ``options`` are the dataset's other keys (``history_days``, ``description``, ``context``) and
    per-stage sections (``labeler={...}``, ``trainer={...}``); ``None`` means "leave the default".
    """
    given = {k: v for k, v in options.items() if v is not None}
    body = {"description": given.pop("description")} if "description" in given else {}
    body |= STANDARD_LONG_FORMAT | given
    body["trigger"] = {"table_names": list(trigger_tables)}
    body["source"] = dict(source)
    return body


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # inside a list (channels = [{ kind = "slack", ... }]): an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "isoformat"):
        return json.dumps(value.isoformat(), ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to a dataset catalog")


def render_catalog(datasets: dict[str, dict[str, Any]]) -> str:
    """The TOML text of a catalog, as a user would write it (``[datasets.<name>]`` and its sections).

    Generated catalogs (demo, load test, benchmarks, tests) go through the same parser as a user's
    file, so what they exercise is the real configuration path, not a shortcut around it.
    """
    lines: list[str] = []

    def table(path: str, body: dict[str, Any]) -> None:
        lines.extend(["", f"[{path}]"])
        lines.extend(f"{key} = {_toml_value(v)}" for key, v in body.items() if not isinstance(v, dict))
        for key, v in body.items():
            if isinstance(v, dict):
                table(f"{path}.{key}", v)

    for name, body in datasets.items():
        table(f"datasets.{name}", body)
    text = "\n".join(lines).lstrip() + "\n"
    parse_catalog(text)  # fail here, naming the key, rather than in a handler later
    return text


def load_catalog(storage: Any, uri: str) -> DatasetCatalog:
    fmt = "json" if uri.endswith(".json") else "toml"
    return parse_catalog(storage.get_bytes(uri).decode(), fmt)
