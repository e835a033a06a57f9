"""``dqad validate FILE``: is this dataset catalog right, and can each source be read as declared?

The catalog is parsed by the same code every stage uses (:func:`dqad.datasets.parse_catalog`),
dataset by dataset so one mistake does not hide the next, and an unknown key is answered with
the key it was probably meant to be. Then each source is asked the fetcher's question on a
small scale:

* a **file** is read through the fetcher's own reader and canonical conversion, so a missing
  column, a timestamp that is not one or a value that is not numeric is reported exactly as the
  fetch would report it, with the line;
* a **sql** source connects with the DSN from its ``dsn_env`` variable and runs the query with the
  window bound as the fetch binds it, wrapped in ``LIMIT 0``: the server checks the query and
  says which columns and types it returns, without reading any row;
* sources that only exist on AWS (``redshift_data``, a DSN in Secrets Manager, an ``s3://`` file)
  are parsed, not contacted, and the line says so.

``dqad run`` and ``dqad listen --datasets`` load the catalog through :func:`read_catalog` too, so a
catalog that validates is the catalog they run.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from dqad.datasets import (
    Dataset,
    DatasetCatalog,
    FileSource,
    IncidentOptions,
    NotifierOptions,
    RedshiftDataSource,
    SqlSource,
    TrainerOptions,
    Trigger,
    parse_catalog,
    render_catalog,
)
from dqad_dev.errors import USAGE_ERROR, UserError, did_you_mean

if TYPE_CHECKING:
    import psycopg

#: Where an unknown key can sit, and the model whose fields are the keys allowed there.
SECTIONS: dict[str, type[BaseModel]] = {
    "": Dataset,
    "trigger": Trigger,
    "trainer": TrainerOptions,
    "notifier": NotifierOptions,
    "incidents": IncidentOptions,
    "source.file": FileSource,
    "source.sql": SqlSource,
    "source.redshift_data": RedshiftDataSource,
}
NUMERIC_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric", "oid"}
TIME_TYPES = {"timestamp", "timestamptz", "date"}
TEXT_TYPES = {"text", "varchar", "bpchar", "name", "unknown"}


# -- the catalog -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserCatalog:
    """A user's catalog file: each dataset parsed, or what is wrong with it."""

    path: Path
    raw: dict[str, dict[str, Any]]  # dataset name -> its table, local file paths made absolute
    datasets: dict[str, Dataset] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # dataset name -> what is wrong

    def require_valid(self) -> DatasetCatalog:
        """The whole catalog, as the chain will load it; the first problem as a :class:`UserError`."""
        if self.problems:
            name, problem = next(iter(self.problems.items()))
            raise UserError(f"{self.path}: dataset {name!r}: {problem} (run `dqad validate {self.path}`)")
        if not self.datasets:
            raise UserError(f"{self.path} declares no dataset: add a [datasets.<name>] table")
        return DatasetCatalog(datasets=self.datasets)

    def text(self) -> str:
        """The catalog as the chain reads it (TOML, with absolute paths: it is stored elsewhere)."""
        return render_catalog(self.raw)

    def select(self, name: str | None, every: bool) -> list[Dataset]:
        """The datasets one command runs: ``name``, all of them, or the only one."""
        catalog = self.require_valid()
        if every:
            return list(catalog.datasets.values())
        if name is None:
            if len(catalog.datasets) == 1:
                return list(catalog.datasets.values())
            raise UserError(
                f"{self.path} declares {len(catalog.datasets)} datasets ({', '.join(sorted(catalog.datasets))}): "
                "pass --dataset NAME or --all"
            )
        if name not in catalog.datasets:
            raise UserError(f"unknown dataset {name!r} in {self.path}{did_you_mean(name, catalog.datasets)}")
        return [catalog.datasets[name]]


def read_catalog(path: str | Path) -> UserCatalog:
    """Read and parse a catalog file; a file that is not TOML/JSON at all is a :class:`UserError`."""
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise UserError(f"no such catalog file: {file} (write one: see README, 'Run it on your own data')") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the catalog {file}: {exc}") from None
    try:
        doc = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise UserError(f"{file} is not valid {kind}: {exc}") from None
    unknown = sorted(set(doc) - {"datasets"})
    if unknown:
        raise UserError(f"{file}: unknown top-level key {unknown[0]!r}{did_you_mean(unknown[0], ['datasets'])}")
    tables = doc.get("datasets") or {}
    if not isinstance(tables, dict):
        raise UserError(f"{file}: 'datasets' must be a table of [datasets.<name>] tables")
    base = file.resolve().parent
    raw = {name: _absolute_paths(body, base) for name, body in tables.items()}
    datasets, problems = {}, {}
    for name, body in raw.items():
        problem = dataset_problem(name, body)
        if problem:
            problems[name] = problem
        else:
            datasets[name] = parse_catalog(render_catalog({name: body})).datasets[name]
    return UserCatalog(file, raw, datasets, problems)


def _absolute_paths(body: Any, base: Path) -> Any:
    """A file source's relative path is relative to the catalog file, wherever dqad runs from."""
    if not isinstance(body, dict):
        return body
    source = body.get("source")
    if isinstance(source, dict) and source.get("kind") == "file" and isinstance(source.get("path"), str):
        path = source["path"]
        if "://" not in path and not Path(path).expanduser().is_absolute():
            body = {**body, "source": {**source, "path": str((base / path).resolve())}}
        elif path.startswith("~"):
            body = {**body, "source": {**source, "path": str(Path(path).expanduser())}}
    return body


def dataset_problem(name: str, body: Any) -> str | None:
    """What is wrong with one dataset's table, in words, or None."""
    from dqad.detect.config import DetectorConfig, LabelerConfig

    if not isinstance(body, dict):
        return "must be a table ([datasets.<name>])"
    try:
        parse_catalog(render_catalog({name: body}))
    except (ValueError, TypeError) as exc:
        try:
            Dataset.model_validate({"name": name, **body})
        except ValidationError as detailed:
            return _explain(detailed, body)
        return str(exc).removeprefix(f"dataset {name!r}: ")
    for section, config in (("labeler", LabelerConfig), ("detector", DetectorConfig)):
        options = body.get(section) or {}
        allowed = sorted(f.name for f in config.__dataclass_fields__.values())
        for key in options:
            if key not in allowed:
                return f"{section}.{key}: unknown key{did_you_mean(key, allowed, what='allowed')}"
        try:
            config.from_dict(options)
        except (ValueError, TypeError) as exc:
            return f"{section}: {exc}"
    return None


def _explain(exc: ValidationError, body: dict[str, Any]) -> str:
    """Pydantic's errors as one line; an unknown key gets its closest allowed key, and the
    "missing" complaint about that same key is dropped (it is the same mistake)."""
    problems: list[str] = []
    suggested: set[tuple[str, ...]] = set()
    errors = exc.errors()
    for err in errors:
        loc = _user_loc(err["loc"], body)
        if err["type"] == "extra_forbidden":
            section = ".".join(loc[:-1])
            if loc[:1] == ("source",):
                section = f"source.{(body.get('source') or {}).get('kind', '')}"
            model = SECTIONS.get(section)
            allowed = [f for f in (model.model_fields if model else {}) if f != "name"]
            hint = did_you_mean(loc[-1], allowed, what="allowed")
            close = hint.removeprefix(" (did you mean '").removesuffix("'?)")
            if hint.startswith(" (did you mean"):
                suggested.add((*loc[:-1], close))
            problems.append(f"{'.'.join(loc)}: unknown key{hint}")
    for err in errors:
        loc = _user_loc(err["loc"], body)
        if err["type"] == "extra_forbidden" or (err["type"] == "missing" and loc in suggested):
            continue
        problems.append(f"{'.'.join(loc) or 'dataset'}: {err['msg']}")
    return "; ".join(problems)


def _user_loc(loc: tuple[Any, ...], body: dict[str, Any]) -> tuple[str, ...]:
    """Pydantic's location without the union tag it inserts (``source.file.path`` → ``source.path``)."""
    parts = tuple(str(p) for p in loc)
    if parts[:1] == ("source",) and len(parts) > 2 and parts[1] == (body.get("source") or {}).get("kind"):
        return (parts[0], *parts[2:])
    return parts


# -- the sources -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSummary:
    """What a check of a source found: enough for one line, and the latest load for ``dqad run``."""

    detail: str
    latest: datetime | None = None  # UTC, tz-aware: the newest timestamp the source holds


def check_source(ds: Dataset, now: datetime | None = None) -> SourceSummary:
    """Read (a file) or probe (SQL) the dataset's source; a :class:`UserError` says what is wrong."""
    src = ds.source
    if isinstance(src, FileSource):
        return _check_file(ds, src)
    if isinstance(src, SqlSource):
        return _check_sql(ds, src, now or datetime.now(UTC))
    return SourceSummary("parsed; a redshift_data source is checked by the fetcher on AWS, not locally")


def _check_file(ds: Dataset, src: FileSource) -> SourceSummary:
    from dqad.storage import Storage
    from dqad_fetcher.canonical import SchemaMismatch, to_canonical_chunk
    from dqad_fetcher.sources import SourceError, iter_file_source

    if src.path.startswith("s3://"):
        return SourceSummary(f"parsed; {src.path} is read by the fetcher on AWS, not checked locally")
    path = Path(src.path)
    if not path.is_file():
        raise UserError(f"source file {path} does not exist (the path is relative to the catalog file)")
    rows, series, first, last = 0, set(), None, None
    try:
        for raw in iter_file_source(Storage(None, ""), src, ds):
            table = to_canonical_chunk(raw, ds)
            if not table.num_rows:
                continue
            import pyarrow.compute as pc

            rows += table.num_rows
            series.update(table.column("series").unique().to_pylist())
            lo, hi = pc.min(table.column("timestamp")).as_py(), pc.max(table.column("timestamp")).as_py()
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
    except SchemaMismatch as exc:
        raise UserError(f"{path}: {exc}{_column_hint(exc.column, ds)}") from None
    except SourceError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # Arrow's "not a Parquet file", a truncated gzip...
        raise UserError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise UserError(f"{path} has no rows: a source needs the history and the latest load")
    assert first is not None and last is not None
    span = f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
    return SourceSummary(f"{rows:,} rows, {len(series):,} series, {span}", last.replace(tzinfo=UTC))


def _column_hint(column: str, ds: Dataset) -> str:
    role = "timestamp" if column == ds.timestamp else "value" if column == ds.value else "keys"
    return f" (the dataset's {role} column; fix the file or the catalog's `{role}`)"


def _sql_dsn(ds: Dataset, src: SqlSource) -> str:
    if not src.dsn_env:
        raise UserError(
            f"dataset {ds.name!r}: its DSN is in Secrets Manager (dsn_secret_arn); to run it locally set "
            "source.dsn_env to the name of an environment variable holding the DSN"
        )
    dsn = os.environ.get(src.dsn_env)
    if not dsn:
        raise UserError(
            f"dataset {ds.name!r}: environment variable {src.dsn_env} is not set "
            f"(export {src.dsn_env}='host=... dbname=...' with the source database's DSN)"
        )
    return dsn


def _connect(ds: Dataset, dsn: str) -> psycopg.Connection[Any]:
    import psycopg

    try:
        conn = psycopg.connect(dsn, connect_timeout=10, application_name="dqad-validate")
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["connection failed"])[0]
        raise UserError(f"dataset {ds.name!r}: cannot connect to the SQL source: {first}") from None
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def _bound(ds: Dataset, now: datetime) -> dict[str, datetime]:
    history_start, new_start, new_end = ds.window(now)
    return {"history_start": history_start, "new_start": new_start, "new_end": new_end}


def _no_rows(src: SqlSource) -> str:
    """The user's query as a subquery that returns its columns and no row."""
    return f"SELECT * FROM ({src.query.strip().rstrip(';')}) AS dqad_query LIMIT 0"


def _check_sql(ds: Dataset, src: SqlSource, now: datetime) -> SourceSummary:
    import psycopg
    from psycopg import postgres, sql

    with _connect(ds, _sql_dsn(ds, src)) as conn:
        try:
            cur = conn.execute(_no_rows(src), _bound(ds, now))
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"dataset {ds.name!r}: the query fails: {first}") from None
        types = {}
        for col in cur.description or []:
            info = postgres.types.get(col.type_code)
            types[col.name] = info.name if info else str(col.type_code)
        missing = [c for c in (*ds.keys, ds.timestamp, ds.value) if c not in types]
        if missing:
            raise UserError(
                f"dataset {ds.name!r}: the query returns no column {missing[0]!r}"
                f"{did_you_mean(missing[0], set(types) - {*ds.keys, ds.timestamp, ds.value}, what='it returns')}"
            )
        if types[ds.timestamp] not in TIME_TYPES | TEXT_TYPES:
            raise UserError(
                f"dataset {ds.name!r}: timestamp column {ds.timestamp!r} is {types[ds.timestamp]}: "
                "return a timestamp, timestamptz or date"
            )
        if types[ds.value] not in NUMERIC_TYPES | TEXT_TYPES:
            raise UserError(
                f"dataset {ds.name!r}: value column {ds.value!r} is {types[ds.value]}: return a number "
                "(cast it, e.g. metric_value::float8)"
            )
        latest_query = sql.Composed([
            sql.SQL("SELECT max("),
            sql.Identifier(ds.timestamp),
            sql.SQL(") FROM ("),
            sql.SQL(src.query.strip().rstrip(";")),
            sql.SQL(") AS dqad_query"),
        ])
        try:
            latest = conn.execute(latest_query, _bound(ds, now)).fetchone()
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"dataset {ds.name!r}: cannot read the latest load: {first}") from None
    stamp = _as_utc(latest[0] if latest else None)
    shown = ", ".join(f"{c} {types[c]}" for c in (*ds.keys, ds.timestamp, ds.value))
    when = f"latest load {stamp:%Y-%m-%d %H:%M} UTC" if stamp else "no rows in the history window"
    return SourceSummary(f"query ok ({shown}); {when}", stamp)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        import pandas as pd

        value = pd.Timestamp(value).to_pydatetime()
    if not isinstance(value, datetime):  # a date
        value = datetime(value.year, value.month, value.day)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# -- the command -------------------------------------------------------------------------------------
def validate(path: str | Path, out: Any = print) -> int:
    """Print one line per dataset; 0 when every dataset is right, else 2."""
    catalog = read_catalog(path)
    failed = 0
    for name in catalog.raw:
        if name in catalog.problems:
            out(f"{name}: {catalog.problems[name]}")
            failed += 1
            continue
        ds = catalog.datasets[name]
        try:
            summary = check_source(ds)
        except UserError as exc:
            out(f"{name}: {str(exc).removeprefix(f'dataset {name!r}: ')}")
            failed += 1
            continue
        out(f"{name}: ok ({ds.source.kind} source: {summary.detail})")
    if not catalog.raw:
        out(f"{catalog.path} declares no dataset: add a [datasets.<name>] table")
        return USAGE_ERROR
    return USAGE_ERROR if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    return validate(args.file)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a dataset catalog and that each source can be read as declared",
        description=(
            "Parse a dataset catalog (TOML or JSON) and check each source: a file is read through the "
            "fetcher's reader (columns, timestamps, numbers); a sql source runs its query with LIMIT 0 "
            "to check the columns and their types. One line per dataset; exit code 0 when all are ok, 2 otherwise."
        ),
    )
    p.add_argument("file", help="the dataset catalog, e.g. datasets.toml")
    p.set_defaults(func=cmd_validate)
