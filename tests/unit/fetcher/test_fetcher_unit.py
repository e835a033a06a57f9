"""Fetcher units without network: SQL rendering, config validation, chunked canonical form, routing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from dqad.datasets import DatasetConfigError, Trigger, parse_catalog
from dqad.stage import StageRuntime
from dqad.storage import Storage
from dqad_fetcher import domain, sources
from dqad_fetcher.canonical import SchemaMismatch, to_canonical, to_canonical_chunk
from tests.fakes import fake_runtime

ROLE = "arn:aws:iam::123456789012:role/dqad-unload"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s"
WINDOW = (datetime(2026, 10, 3, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 2, 6, tzinfo=UTC))


def catalog(source: str, extra: str = "") -> str:
    return f"""
[datasets.d]
keys = ["table_name", "metric_name"]
timestamp = "ts"
value = "v"
group = ["table_name"]
{extra}
[datasets.d.trigger]
table_names = ["sales.*"]
[datasets.d.source]
{source}
"""


def redshift(extra: str = "", query: str = "SELECT * FROM m WHERE ts >= :history_start AND ts < :new_end") -> str:
    return f'kind = "redshift_data"\ndatabase = "dw"\nunload_iam_role = "{ROLE}"\nquery = "{query}"\n{extra}'


def ds_of(source: str, extra: str = ""):
    return parse_catalog(catalog(source, extra)).get("d")


# -- rendering the UNLOAD ------------------------------------------------------------------------
def test_timestamp_literal_is_utc_digits_only():
    paris = timezone(timedelta(hours=1))
    assert (
        sources.timestamp_literal(datetime(2026, 1, 1, 1, 0, tzinfo=paris)) == "TIMESTAMP '2026-01-01 00:00:00.000000'"
    )
    assert sources.timestamp_literal(datetime(2026, 1, 1, 0, 0, 0, 5)) == "TIMESTAMP '2026-01-01 00:00:00.000005'"
    with pytest.raises(TypeError):
        sources.timestamp_literal("2026-01-01'; DROP TABLE x; --")  # type: ignore[arg-type]


def test_render_unload_binds_literals_and_doubles_quotes():
    src = ds_of(
        redshift('cluster_identifier = "dw1"', "SELECT * FROM m WHERE ts >= %(history_start)s AND k = 'a';")
    ).source
    sql = sources.render_unload(src, WINDOW, "s3://bkt/runs/d/r1/unload/")
    assert sql == (
        "UNLOAD ('SELECT * FROM m WHERE ts >= TIMESTAMP ''2026-10-03 00:00:00.000000'' AND k = ''a''') "
        f"TO 's3://bkt/runs/d/r1/unload/' IAM_ROLE '{ROLE}' FORMAT AS PARQUET ALLOWOVERWRITE MAXFILESIZE 256 MB"
    )
    for bad in ("s3://bkt/x'y/", "file:///tmp/x/", "s3://BKT/x/"):
        with pytest.raises(sources.SourceError, match="refusing to UNLOAD"):
            sources.render_unload(src, WINDOW, bad)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('cluster_identifier = "dw1"\ndb_user = "reader"', {"ClusterIdentifier": "dw1", "DbUser": "reader"}),
        ('cluster_identifier = "dw1"', {"ClusterIdentifier": "dw1"}),
        ('workgroup_name = "dq-wg"', {"WorkgroupName": "dq-wg"}),
        (
            'workgroup_name = "dq-wg"\nsecret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbC"',
            {"WorkgroupName": "dq-wg", "SecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbC"},
        ),
    ],
)
def test_credentials_come_from_iam_or_a_secret_arn(extra, expected):
    kwargs = sources.execute_kwargs(ds_of(redshift(extra)).source, "SELECT 1", "n")
    assert kwargs == {"Database": "dw", "Sql": "SELECT 1", "StatementName": "n", **expected}


# -- configuration errors name what is wrong -----------------------------------------------------
@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            redshift('cluster_identifier = "c"\ndb_user = "u"\nsecret_arn = "arn:aws:secretsmanager:r:1:secret:s"'),
            "secret_arn",
        ),
        (
            redshift(f'cluster_identifier = "c"\ndb_user = "u"\nsecret_arn = "{SECRET}"'),
            "at most one of db_user",
        ),
        (redshift('workgroup_name = "wg1"\ndb_user = "u"'), "db_user applies to a provisioned cluster"),
        (redshift(""), "exactly one of cluster_identifier or workgroup_name"),
        (
            redshift('cluster_identifier = "c"').replace(ROLE, "arn:aws:iam::123456789012:role/x' CREDENTIALS 'y"),
            "not an IAM role ARN",
        ),
        (redshift('cluster_identifier = "c"', "SELECT * FROM m WHERE k = E'\\\\\\\\x'"), "backslash"),
        ('kind = "sql"\ndsn_env = "X"\nquery = "SELECT * FROM m WHERE ts >= :history_start"', "%(name)s"),
        ('kind = "sql"\ndsn_env = "X"\nquery = "SELECT * FROM m WHERE ts >= %(since)s"', "unknown SQL parameter"),
        ('kind = "file"\npath = "metrics.xlsx"', "cannot tell the format"),
    ],
)
def test_source_config_errors(source, message):
    with pytest.raises(DatasetConfigError, match="dataset 'd'") as info:
        parse_catalog(catalog(source))
    assert message in str(info.value)


# -- canonical form, chunk by chunk --------------------------------------------------------------
def raw_frame(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table_name": [f"sales.t{i % 3}" for i in range(n)],
            "metric_name": [f"m{i % 2}" for i in range(n)],
            "ts": pd.date_range("2026-10-20", periods=n, freq="h", tz="UTC"),
            "v": [Decimal(i) / 4 for i in range(n)],
        }
    )


def test_canonical_chunks_concatenate_to_the_whole():
    ds = ds_of('kind = "file"\npath = "m.parquet"')
    raw = raw_frame()
    table = pa.Table.from_pandas(raw, preserve_index=False)
    assert pa.types.is_decimal(table.schema.field("v").type)  # as the driver delivers numeric
    chunks = [to_canonical_chunk(table.slice(i, 7), ds) for i in range(0, len(raw), 7)]
    assert len({c.schema for c in chunks}) == 1
    streamed = pa.concat_tables(chunks).to_pandas()
    whole = to_canonical(raw.assign(v=raw["v"].astype(float)), ds)
    pd.testing.assert_frame_equal(streamed, whole, check_dtype=False)
    assert streamed["series"].iloc[0] == "sales.t0/m0" and streamed["group"].iloc[1] == "sales.t1"
    assert chunks[0].schema.field("timestamp").type == pa.timestamp("ns")


def test_status_matching_normalises_like_the_sql_guard():
    trigger = Trigger(table_names=("sales.*",))
    assert trigger.matches("sales.orders", "", " success ")
    assert trigger.matches("sales.orders", "", "Warning")  # the guard's success set is the default
    assert not trigger.matches("sales.orders", "", "FAILED")
    assert not trigger.matches("hr.people", "", "SUCCESS")


# -- the aurora entry point's outcomes -----------------------------------------------------------
@pytest.fixture
def rt() -> StageRuntime:
    return fake_runtime("fetcher", parse_catalog(catalog('kind = "file"\npath = "m.parquet"')))


PAYLOAD = {
    "log_id": "981234",
    "job_name": "tln_load_orders",
    "table_name": "sales.orders",
    "loaded_at": "2026-11-02T06:00:00.000000Z",
    "status": "SUCCESS",
    "source": "aurora-trigger",
}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({k: v for k, v in PAYLOAD.items() if k != "table_name"}, "missing field(s): table_name"),
        ({**PAYLOAD, "loaded_at": "yesterday"}, "not an ISO timestamp"),
        (["not", "an", "object"], "must be a JSON object"),
        ({**PAYLOAD, "table_name": "hr.people"}, "concerns no dataset"),
        ({**PAYLOAD, "status": "FAILED"}, "concerns no dataset"),
    ],
)
def test_bad_log_rows_are_skipped_and_logged(rt, payload, reason, caplog):
    with caplog.at_level(logging.INFO):
        assert domain.accept_log_row(rt, payload) == []
    assert rt.publisher.events == []
    logged = [r for r in caplog.records if r.name == "dqad-fetcher"]
    assert logged and any(reason in f"{r.getMessage()} {getattr(r, 'reason', '')}" for r in logged)


def test_unknown_log_id_is_tolerated(rt):
    """A rolled-back Aurora insert still invoked us: nothing reads the log table, the payload is enough."""
    runs = domain.accept_log_row(rt, {**PAYLOAD, "log_id": "never-committed-77", "status": " success "})
    (event,) = rt.publisher.events
    assert runs == [event.run_id] and event.log_id == "never-committed-77" and event.status == "SUCCESS"
    assert event.loaded_at == datetime(2026, 11, 2, 6, tzinfo=UTC)


def test_a_zero_row_load_is_also_reported_as_an_empty_load(rt):
    runs = domain.accept_log_row(rt, {**PAYLOAD, "row_count": "0"})
    completed, empty = rt.publisher.events
    assert runs == [completed.run_id] and completed.detail_type == "LoadCompleted"
    assert empty.detail_type == "LoadLogChecked" and empty.run_id.startswith("empty-")
    (incident,) = empty.incidents
    assert (incident.kind, incident.table, incident.row_count, incident.log_id) == (
        "empty_load",
        "sales.orders",
        0,
        "981234",
    )


@pytest.mark.parametrize("row_count", ["12", None, "", "lots", "-3"])
def test_a_non_zero_absent_or_bad_row_count_only_starts_the_run(rt, row_count, caplog):
    with caplog.at_level(logging.WARNING):
        domain.accept_log_row(rt, {**PAYLOAD, "row_count": row_count})
    assert [e.detail_type for e in rt.publisher.events] == ["LoadCompleted"]
    bad = row_count in ("lots", "-3")
    assert bad == any("row_count: not a count of rows" in str(getattr(r, "reason", "")) for r in caplog.records)


# -- routing by timestamp ------------------------------------------------------------------------
def canonical(ts: list[str]) -> pa.Table:
    frame = pd.DataFrame({"series": "a", "group": "a", "timestamp": pd.to_datetime(ts), "value": 1.0})
    return pa.Table.from_pandas(frame, preserve_index=False)


def test_window_split_routes_and_drops_outside_rows(tmp_path):
    split = domain.WindowSplit(Storage(None, "unused"), f"file://{tmp_path}/run", WINDOW)
    split.add(canonical(["2026-10-02 23:00", "2026-10-03 00:00", "2026-11-01 05:59"]))
    split.add(canonical(["2026-11-01 06:00", "2026-11-02 05:59", "2026-11-02 06:00"]))
    history, new = split.finish()
    assert (history.rows, new.rows, split.dropped) == (2, 2, 2)
    assert (tmp_path / "run" / "history.parquet").exists() and (tmp_path / "run" / "new.parquet").exists()


def test_window_split_without_new_rows_writes_nothing(tmp_path):
    split = domain.WindowSplit(Storage(None, "unused"), f"file://{tmp_path}/run", WINDOW)
    split.add(canonical(["2026-10-05 00:00"]))
    assert split.finish() is None
    assert not (tmp_path / "run").exists()


def test_split_chunks_tells_the_rows_read_after_each_chunk(tmp_path):
    """The progress of a fetch (what the CLI's bar shows): 0 first, then the running row count."""
    ds = ds_of('kind = "file"\npath = "m.parquet"')
    table = pa.Table.from_pandas(raw_frame(50), preserve_index=False)
    window = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 21, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC))
    split = domain.WindowSplit(Storage(None, "unused"), f"file://{tmp_path}/run", window)
    told: list[tuple[int, int | None]] = []
    chunks = [table.slice(0, 20), table.slice(20, 0), table.slice(20, 20), table.slice(40, 10)]
    domain.split_chunks(chunks, ds, split, lambda done, total: told.append((done, total)))
    assert told == [(0, None), (20, None), (40, None), (50, None)]  # an empty chunk tells nothing
    assert split.finish() is not None


def test_prefetched_reraises_and_closes_the_source():
    closed = []

    def source():
        try:
            yield canonical(["2026-10-05"])
            raise RuntimeError("connection lost")
        finally:
            closed.append(True)

    it = domain.prefetched(source())
    assert next(it).num_rows == 1
    with pytest.raises(RuntimeError, match="connection lost"):
        next(it)
    assert closed == [True]


def test_dsn_from_rds_json_secret():
    dsn = domain.dsn_from_secret('{"username": "dq", "password": "p w\'x", "host": "h", "port": 5432, "dbname": "m"}')
    assert "user=dq" in dsn and "password='p w\\'x'" in dsn and "port=5432" in dsn and "dbname=m" in dsn
    assert domain.dsn_from_secret(" postgresql://u@h/db ") == "postgresql://u@h/db"


# -- the Arrow canonicalisation gives exactly what the pandas one gives ----------------------------
def _variant_table(n: int = 40) -> dict[str, pa.Array]:
    ts = [datetime(2026, 10, 20, tzinfo=UTC) + timedelta(hours=i, microseconds=7 * i) for i in range(n)]
    return {
        "table_name": pa.array([f"sales.t{i % 3}" if i != 5 else None for i in range(n)]),
        "metric_name": pa.array([f"m{i % 2}" for i in range(n)]).dictionary_encode(),
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "v": pa.array([i / 4 if i % 7 else float("nan") for i in range(n)]),
        "is_rerun": pa.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)]),
        "loaded_at": pa.array([t + timedelta(minutes=3, microseconds=1) for t in ts], type=pa.timestamp("us", "UTC")),
    }


ARROW_NATIVE = {
    "text and dictionary keys, aware us timestamps, NaN floats": {},
    "integer key": {"metric_name": pa.array(range(40), type=pa.int32())},
    "naive ms timestamps": {"ts": pa.array([datetime(2026, 10, 20, i % 24) for i in range(40)], pa.timestamp("ms"))},
    "dates": {"ts": pa.array([datetime(2026, 10, 1 + i % 28).date() for i in range(40)])},
    "ISO text timestamps": {"ts": pa.array([f"2026-10-{1 + i % 28:02d} 0{i % 10}:30:00" for i in range(40)])},
    "text timestamps with offsets": {"ts": pa.array([f"2026-10-{1 + i % 9:02d}T06:00+0{i % 3}:00" for i in range(40)])},
    "zoned timestamps": {"ts": pa.array([datetime(2026, 10, 20, tzinfo=UTC)] * 40, pa.timestamp("s", "Europe/Paris"))},
    "decimal values": {"v": pa.array([Decimal(i) / 8 for i in range(40)], type=pa.decimal128(18, 4))},
    "integer values": {"v": pa.array([i if i % 3 else None for i in range(40)], type=pa.int64())},
    "text values": {"v": pa.array([f"{i}.5e1" if i % 4 else None for i in range(40)])},
    "all-null values": {"v": pa.nulls(40)},
}
PANDAS_ONLY = {
    "integer key with nulls": {"metric_name": pa.array([None if i == 3 else i for i in range(40)])},
    "float key": {"metric_name": pa.array([i / 2 for i in range(40)])},
    "text is_rerun": {"is_rerun": pa.array(["false"] * 40)},
    "text loaded_at": {"loaded_at": pa.array(["2026-10-20 00:00:00"] * 40)},
    "free-form text timestamps": {"ts": pa.array(["10/20/2026 06:00"] * 40)},
}


@pytest.mark.parametrize("variant", [*ARROW_NATIVE, *PANDAS_ONLY])
def test_arrow_canonical_equals_pandas_canonical(variant, monkeypatch):
    ds = ds_of('kind = "file"\npath = "m.parquet"', 'context = ["is_rerun", "loaded_at"]')
    table = pa.table({**_variant_table(), **ARROW_NATIVE.get(variant, PANDAS_ONLY.get(variant, {}))})
    expected = to_canonical(table.to_pandas(), ds)
    if variant in ARROW_NATIVE:  # the fast path must not need pandas for these
        monkeypatch.setattr("dqad_fetcher.canonical.to_canonical", lambda *a: pytest.fail("went through pandas"))
    got = to_canonical_chunk(table, ds)
    assert got.schema.names == list(expected.columns)
    expected_table = pa.Table.from_pandas(expected, schema=got.schema, preserve_index=False)
    assert got.equals(expected_table.replace_schema_metadata(None)), variant


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("v", pa.array(["1.5", "ten"]), "not numeric: 'ten'"),
        ("v", pa.array(["1.5", "nan"]), "not numeric: 'nan'"),
        ("ts", pa.array(["2026-10-20", None], type=pa.string()), "not a timestamp: None"),
        ("ts", pa.array([datetime(2026, 10, 20), None], type=pa.timestamp("us")), "not a timestamp: None"),
        ("ts", pa.array(["2026-10-20", "yesterday"]), "not a timestamp: 'yesterday'"),
    ],
)
def test_arrow_canonical_names_the_bad_column(column, values, message):
    ds = ds_of('kind = "file"\npath = "m.parquet"')
    base = {"table_name": pa.array(["a", "b"]), "metric_name": pa.array(["m", "m"]), "ts": pa.array(["2026-10-20"] * 2)}
    table = pa.table({**base, "v": pa.array(["1", "2"]), column: values})
    with pytest.raises(SchemaMismatch, match=message) as info:
        to_canonical_chunk(table, ds)
    assert info.value.column == column


def test_streaming_path_never_imports_pandas(tmp_path):
    """Parse, canonicalise, split and write chunks in a fresh interpreter: pandas must stay unloaded.

    Importing it costs ~0.4 s of CPU per cold start (a quarter of a million-row fetch); any
    ``pa.scalar``/``pa.array`` on a Python value in this path would bring it back silently.
    """
    import subprocess
    import sys
    import textwrap

    (tmp_path / "catalog.toml").write_text(
        catalog('kind = "file"\npath = "m.csv"', 'context = ["is_rerun", "loaded_at"]')
    )
    script = textwrap.dedent(f"""
        import sys
        from datetime import datetime
        from pathlib import Path
        import pyarrow as pa, pyarrow.csv as pacsv
        from dqad.datasets import parse_catalog
        from dqad_fetcher.canonical import to_canonical_chunk
        from dqad.storage import Storage
        from dqad_fetcher import domain

        ds = parse_catalog(Path("{tmp_path}/catalog.toml").read_text()).get("d")
        csv = b"sales.a,m1,2026-11-01 07:00:00+00,1.5,t,2026-11-01 07:10:00+00\\n" * 3
        types = {{"ts": pa.timestamp("us", "UTC"), "loaded_at": pa.timestamp("us", "UTC"), "is_rerun": pa.bool_()}}
        raw = pacsv.read_csv(
            pa.py_buffer(csv),
            pacsv.ReadOptions(column_names=list(ds.columns)),
            convert_options=pacsv.ConvertOptions(column_types=types, true_values=["t"]),
        )
        window = tuple(datetime.fromisoformat(t) for t in {[t.isoformat() for t in WINDOW]!r})
        split = domain.WindowSplit(Storage(None, "unused"), "file://{tmp_path}/run", window)
        split.add(to_canonical_chunk(raw, ds))
        history, new = split.finish()
        assert (history.rows, new.rows) == (0, 3), (history, new)
        print("pandas" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
