"""Where a dataset's metrics come from: a file (local use), a SQL connection, or the Redshift Data API.

Every source answers the same question: the dataset's long table between ``history_start`` and
``new_end``, as a pandas DataFrame with the configured columns. Time bounds are always bound
parameters, never formatted into SQL.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import pandas as pd
from dqad.datasets import Dataset, FileSource, SqlSource
from dqad.storage import Storage


class SourceError(RuntimeError):
    """The source could not answer (SQL error, timeout); carries the statement id when there is one."""

    def __init__(self, message: str, statement_id: str | None = None) -> None:
        self.statement_id = statement_id
        super().__init__(message + (f" (statement {statement_id})" if statement_id else ""))


def read_file_source(storage: Storage, src: FileSource) -> pd.DataFrame:
    data = storage.get_bytes(src.path)
    path = src.path.lower()
    if path.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if path.endswith((".csv", ".csv.gz")):
        return pd.read_csv(io.BytesIO(data), compression="gzip" if path.endswith(".gz") else None)
    raise SourceError(f"file source {src.path!r}: expected .parquet, .csv or .csv.gz")


def read_sql_source(src: SqlSource, dsn: str, params: dict[str, datetime]) -> pd.DataFrame:
    """Run the dataset's query with bound window parameters through a server-side cursor, in chunks."""
    import psycopg  # only the SQL source pays for the driver import

    frames = []
    try:
        with psycopg.connect(dsn) as conn, conn.cursor(name="dqad_fetch") as cur:
            cur.itersize = src.chunk_rows
            cur.execute(src.query, params)
            columns = None
            while rows := cur.fetchmany(src.chunk_rows):
                columns = columns or [d.name for d in cur.description]
                frames.append(pd.DataFrame(rows, columns=columns))
    except psycopg.Error as exc:
        raise SourceError(f"SQL source failed: {exc}".strip()) from exc
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def read_source(
    ds: Dataset, storage: Storage, window: tuple[datetime, datetime, datetime], secrets: Any
) -> pd.DataFrame:
    """The dataset's rows in the window [history_start, new_end)."""
    history_start, new_start, new_end = window
    src = ds.source
    if isinstance(src, FileSource):
        raw = read_file_source(storage, src)
        if ds.timestamp in raw.columns:
            ts = pd.to_datetime(raw[ds.timestamp], utc=True, errors="coerce")
            raw = raw[(ts >= history_start) & (ts < new_end)]
        return raw
    if isinstance(src, SqlSource):
        dsn = secrets.dsn(src)
        return read_sql_source(src, dsn, {"history_start": history_start, "new_start": new_start, "new_end": new_end})
    raise SourceError(f"source kind {src.kind!r} is not available in this build")
