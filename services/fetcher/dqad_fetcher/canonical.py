"""The canonical frame every stage reads, built from a source's rows: the fetcher's own work.

``series`` joins a dataset's key columns, ``group`` its load-identifying ones, timestamps become
naive UTC and values floats; a missing or mistyped column is a :class:`SchemaMismatch` naming it.
pandas and pyarrow are imported where they run, so the fetcher's Aurora entry point and the outbox
sweep, which never build a frame, do not pay for them at cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dqad.datasets import Dataset

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

CANONICAL = ("series", "group", "timestamp", "value")
#: The ETL job of each load, carried when the dataset lists it in ``context``: the scorer merges the
#: incidents of one job's loads into one (docs/alerts.md, "Incidents").
JOB_COLUMN = "job_name"


class SchemaMismatch(ValueError):
    """Source data lacks a configured column or has one of the wrong kind; names the column.

    ``row`` is the position (from 0) of the first offending row in the frame that was converted,
    when one row is to blame; :meth:`at` turns it into where the user can find it ("line 12 of
    metrics.csv"), which only the source knows.
    """

    def __init__(self, column: str, message: str, row: int | None = None) -> None:
        self.column = column
        self.detail = message
        self.row = row
        super().__init__(f"column {column!r}: {message}")

    def at(self, where: str) -> SchemaMismatch:
        """The same mismatch, its message ending with where the row is (e.g. ``line 12 of a.csv``)."""
        return SchemaMismatch(self.column, f"{self.detail} at {where}", self.row)


def to_canonical(raw: pd.DataFrame, ds: Dataset) -> pd.DataFrame:
    """Turn the source's long table into the frame every stage reads.

    ``series`` joins the key columns, ``group`` the load-identifying ones; timestamps become
    tz-naive UTC; values become float (non-numeric text is a schema error, not a silent NaN).
    Row-wise and vectorised: applying it to each chunk of a source and concatenating gives the same
    frame as applying it once (see :func:`to_canonical_chunk` for the streaming form).
    """
    import pandas as pd

    for col in (*ds.keys, ds.timestamp, ds.value):
        if col not in raw.columns:
            raise SchemaMismatch(col, f"missing from the source data (has: {', '.join(map(str, raw.columns))})")
    out = pd.DataFrame(index=raw.index)
    keys = raw[list(ds.keys)].astype(str)
    out["series"] = _joined(keys, list(ds.keys))
    group_cols = list(ds.group)
    out["group"] = _joined(keys, group_cols) if group_cols else out["series"]
    ts = pd.to_datetime(raw[ds.timestamp], utc=True, errors="coerce")
    if ts.isna().any():
        row = int(ts.isna().to_numpy().argmax())
        raise SchemaMismatch(ds.timestamp, f"not a timestamp: {raw[ds.timestamp].iloc[row]!r}", row)
    out["timestamp"] = ts.dt.tz_localize(None).astype("datetime64[ns]")
    values = pd.to_numeric(raw[ds.value], errors="coerce")
    text = values.isna() & raw[ds.value].notna()
    if text.any():
        row = int(text.to_numpy().argmax())
        raise SchemaMismatch(ds.value, f"not numeric: {raw[ds.value].iloc[row]!r}", row)
    out["value"] = values.astype("float64")
    for col in ds.keys:
        if col not in CANONICAL:
            out[col] = keys[col]
    if "is_rerun" in ds.context and "is_rerun" in raw.columns:
        out["is_rerun"] = raw["is_rerun"].fillna(False).astype(bool)
    if "loaded_at" in ds.context and "loaded_at" in raw.columns:
        loaded = pd.to_datetime(raw["loaded_at"], utc=True, errors="coerce").dt.tz_localize(None)
        out["load_delay_s"] = (loaded - out["timestamp"]).dt.total_seconds().astype("float64")
    if JOB_COLUMN in ds.context and JOB_COLUMN in raw.columns and JOB_COLUMN not in ds.keys:
        out[JOB_COLUMN] = raw[JOB_COLUMN].fillna("").astype(str)
    return out.reset_index(drop=True)


def _joined(frame: pd.DataFrame, cols: list[str]) -> pd.Series:
    """Columns joined with "/" (vectorised: a row-wise join costs seconds per million rows)."""
    first = frame[cols[0]]
    return first.str.cat(frame[cols[1:]], sep="/") if len(cols) > 1 else first


def canonical_arrow_schema(columns: list[str]) -> pa.Schema:
    """The Arrow schema of a canonical frame with these columns.

    Fixed per column name (text columns are ``string``), so every chunk of one fetch has the same
    schema and can be appended to one Parquet file, whatever pandas inferred for that chunk.
    """
    import pyarrow as pa

    types = {
        "timestamp": pa.timestamp("ns"),
        "value": pa.float64(),
        "load_delay_s": pa.float64(),
        "is_rerun": pa.bool_(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


class _NotArrowNative(Exception):
    """A chunk column whose pandas conversion the Arrow path does not reproduce exactly (internal)."""


def to_canonical_chunk(chunk: pa.Table | pa.RecordBatch | pd.DataFrame, ds: Dataset) -> pa.Table:
    """:func:`to_canonical` for one chunk of a streamed source, returned as an Arrow table.

    Computed with Arrow compute kernels, column at a time, without going through pandas: the
    round trip Arrow → pandas → Arrow (object strings, a Python ``str.cat``) was the largest cost of
    a fetch after decoding. The result is the same table :func:`to_canonical` would give, so series
    names (which human feedback labels refer to) never depend on the path taken. Where the two could
    differ — key columns that are neither text nor null-free integers, text timestamps or values
    that Arrow cannot parse, context columns of unusual types — the chunk goes through
    :func:`to_canonical` instead, which also names the offending column and value in its
    :class:`SchemaMismatch`. The result always has :func:`canonical_arrow_schema` types.
    """
    import pyarrow as pa

    if isinstance(chunk, pa.RecordBatch):
        chunk = pa.Table.from_batches([chunk])
    if isinstance(chunk, pa.Table):
        for col in (*ds.keys, ds.timestamp, ds.value):
            if col not in chunk.column_names:
                raise SchemaMismatch(col, f"missing from the source data (has: {', '.join(chunk.column_names)})")
        try:
            return _canonical_arrow(chunk, ds)
        except _NotArrowNative:
            pass
        for i, field in enumerate(chunk.schema):
            if pa.types.is_decimal(field.type):
                chunk = chunk.set_column(i, field.name, chunk.column(i).cast(pa.float64()))
            elif pa.types.is_null(field.type):
                chunk = chunk.set_column(i, field.name, chunk.column(i).cast(pa.string()))
        frame = chunk.to_pandas()
    else:
        frame = chunk
    out = to_canonical(frame, ds)
    schema = canonical_arrow_schema(list(out.columns))
    return pa.Table.from_pandas(out, schema=schema, preserve_index=False).replace_schema_metadata(None)


def refused_row(chunk: pa.Table, ds: Dataset) -> SchemaMismatch | None:
    """The mismatch :func:`to_canonical_chunk` would raise on this chunk's timestamps or values, with its row.

    For sources that can say where a row is (a file's line), so the user is sent to the line to fix
    rather than to a value to search for. The common case costs two Arrow casts: only a chunk
    whose timestamp or value column Arrow cannot read as such goes through pandas to find the row.
    Missing columns are left to the conversion, which names them.
    """
    if ds.timestamp not in chunk.column_names or ds.value not in chunk.column_names:
        return None
    try:
        _float_values(chunk.column(ds.value))
        if not _utc_naive_ns(chunk.column(ds.timestamp)).null_count:
            return None
    except _NotArrowNative:
        pass
    try:
        named = [c for c in dict.fromkeys((*ds.keys, ds.timestamp, ds.value)) if c in chunk.column_names]
        to_canonical(chunk.select(named).to_pandas(), ds)
    except SchemaMismatch as exc:
        return exc
    return None


def _canonical_arrow(raw: pa.Table, ds: Dataset) -> pa.Table:
    """:func:`to_canonical` in Arrow compute; raises :class:`_NotArrowNative` where it would differ."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = {col: _key_text(raw.column(col)) for col in ds.keys}

    def joined(cols: tuple[str, ...]) -> Any:  # a null part makes the whole null, as pandas' str.cat does
        if len(cols) == 1:
            return keys[cols[0]]
        return pc.binary_join_element_wise(*(keys[c] for c in cols), arrow_scalar("/", pa.string()))

    series = joined(ds.keys)
    timestamp = _utc_naive_ns(raw.column(ds.timestamp))
    if timestamp.null_count:
        first = pc.index(pc.is_null(timestamp), True).as_py()
        raise SchemaMismatch(ds.timestamp, f"not a timestamp: {raw.column(ds.timestamp)[first].as_py()!r}", first)
    columns: dict[str, Any] = {
        "series": series,
        "group": joined(ds.group) if ds.group else series,
        "timestamp": timestamp,
        "value": _float_values(raw.column(ds.value)),
    }
    for col in ds.keys:
        if col not in CANONICAL:
            columns[col] = keys[col]
    if "is_rerun" in ds.context and "is_rerun" in raw.column_names:
        rerun = raw.column("is_rerun")
        if not (pa.types.is_boolean(rerun.type) or pa.types.is_null(rerun.type)):
            raise _NotArrowNative("is_rerun")
        rerun = rerun.cast(pa.bool_())
        columns["is_rerun"] = pc.and_kleene(rerun, pc.is_valid(rerun))  # null → False, as fillna(False)
    if "loaded_at" in ds.context and "loaded_at" in raw.column_names:
        loaded = raw.column("loaded_at")
        if not pa.types.is_timestamp(loaded.type):
            raise _NotArrowNative("loaded_at")
        delay = pc.subtract(_utc_naive_ns(loaded), timestamp).cast(pa.int64()).cast(pa.float64())
        columns["load_delay_s"] = pc.divide(delay, arrow_scalar(1e9, pa.float64()))  # as total_seconds()
    if JOB_COLUMN in ds.context and JOB_COLUMN in raw.column_names and JOB_COLUMN not in ds.keys:
        job = raw.column(JOB_COLUMN)
        if pa.types.is_dictionary(job.type):
            job = job.cast(job.type.value_type)
        if not (pa.types.is_string(job.type) or pa.types.is_large_string(job.type)):
            raise _NotArrowNative(JOB_COLUMN)
        columns[JOB_COLUMN] = pc.fill_null(job.cast(pa.string()), "")
    schema = canonical_arrow_schema(list(columns))
    return pa.table([_one_chunk(c).cast(schema.field(n).type) for n, c in columns.items()], schema=schema)


def arrow_scalar(value: str | float | int | bool, kind: pa.DataType) -> pa.Scalar:
    """An Arrow scalar of ``kind`` (string, float64, bool, or int64-backed: integers, timestamps) built from bytes.

    ``pa.scalar`` / ``pa.array`` on Python values first check whether the value is a pandas object,
    and that check imports pandas: ~0.4 s of CPU, a quarter of a million-row fetch and most of a
    small one, paid on every cold start. The fetch path needs only a few constants (a separator, the
    window bounds), so it builds them from their bytes and never imports pandas.
    """
    import struct

    import pyarrow as pa

    if isinstance(value, bool):
        buffers = [None, pa.py_buffer(bytes([value]))]
    elif isinstance(value, str):
        data = value.encode()
        buffers = [None, pa.py_buffer(struct.pack("<ii", 0, len(data))), pa.py_buffer(data)]
    elif isinstance(value, float):
        buffers = [None, pa.py_buffer(struct.pack("<d", value))]
    else:
        buffers = [None, pa.py_buffer(struct.pack("<q", value))]
    return pa.Array.from_buffers(kind, 1, buffers)[0]


def _one_chunk(column: Any) -> Any:
    """A plain Array from an Array or ChunkedArray, so kernels see one buffer per column."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _key_text(column: Any) -> Any:
    """A key column as the text ``astype(str)`` gives: text as is (null stays null), integers in decimal.

    Integers with nulls (pandas makes them float, ``"1.0"``) and any other type are left to pandas.
    """
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type):
        return _one_chunk(column.cast(pa.string()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _one_chunk(column.cast(pa.string()))
    if pa.types.is_integer(kind) and column.null_count == 0:
        return _one_chunk(column.cast(pa.string()))
    raise _NotArrowNative("key")


def _utc_naive_ns(column: Any) -> Any:
    """Timestamps as tz-naive UTC nanoseconds, as ``pd.to_datetime(utc=True).tz_localize(None)``.

    An aware timestamp keeps its instant (Arrow stores UTC), a naive one is taken as UTC, a date is its
    midnight, ISO text is parsed by Arrow; text Arrow cannot parse goes to pandas.
    """
    import pyarrow as pa

    kind = column.type
    try:
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                column = column.cast(pa.timestamp(kind.unit))  # drops the zone, keeps the UTC instant
            return _one_chunk(column.cast(pa.timestamp("ns")))
        if pa.types.is_date(kind):
            return _one_chunk(column.cast(pa.timestamp("ns")))
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                return _one_chunk(column.cast(pa.timestamp("ns")))
            except pa.ArrowInvalid:
                return _one_chunk(column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("ns")))
    except pa.ArrowInvalid:
        pass  # out of range for ns, mixed offsets, another text format: pandas decides (and names it)
    raise _NotArrowNative("timestamp")


def _float_values(column: Any) -> Any:
    """Values as float64 with NaN as null (what ``pd.to_numeric`` then ``Table.from_pandas`` store)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    numeric = pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind)
    if not (text or numeric or pa.types.is_null(kind)):
        raise _NotArrowNative("value")
    if pa.types.is_decimal(kind):
        column = column.cast(pa.string())  # Arrow's decimal → float cast is not correctly rounded; parsing is
    try:
        values = _one_chunk(column.cast(pa.float64()))
    except pa.ArrowInvalid:
        raise _NotArrowNative("value") from None  # not numeric: pandas names the first bad value
    if pa.types.is_floating(kind) or text:
        nan = pc.is_nan(values)
        if pc.any(nan).as_py():
            if text:
                raise _NotArrowNative("value")  # "nan" as text: to_canonical treats it as not numeric
            values = pc.if_else(nan, pa.nulls(1, pa.float64())[0], values)
    return values
