"""Security: identifiers from configuration are validated, and no credential reaches the logs.

* Every column name in a dataset's configuration ends up in SQL and in frames: anything but a plain
  identifier (quotes, semicolons, comments, spaces) is refused when the catalog is parsed, naming
  the field, before any query is built.
* A chain fed by a ``sql`` source whose DSN holds a password (the real PostgreSQL) logs nothing
  that contains the password or the AWS secret key: Powertools logs go to stdout, captured here.
"""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from dqad.datasets import DatasetConfigError, parse_catalog, render_catalog
from dqad_dev.loadtest import load_dataset, outcomes, start_loads

pytestmark = pytest.mark.slow

INJECTIONS = [
    'metric_value"; DROP TABLE m; --',
    "metric_value' OR '1'='1",
    "metric_value -- comment",
    "metric value",
    "metric_value;",
    "m/*x*/v",
    "\u0440ow_count",  # a Cyrillic look-alike letter
    "",
]


@pytest.mark.parametrize("field", ["keys", "timestamp", "value", "group", "context"])
@pytest.mark.parametrize("bad", INJECTIONS)
def test_sql_identifiers_from_configuration_refuse_injection(field: str, bad: str) -> None:
    toml = render_catalog({"ds": load_dataset("ds", "bucket", history_days=30)})
    quoted = bad.replace("\\", "\\\\").replace('"', '\\"')
    patched = {
        "keys": ('keys = ["table_name", "metric_name"]', f'keys = ["table_name", "{quoted}"]'),
        "timestamp": ('timestamp = "load_ts"', f'timestamp = "{quoted}"'),
        "value": ('value = "metric_value"', f'value = "{quoted}"'),
        "group": ('group = ["table_name"]', f'group = ["{quoted}"]'),
        "context": ('context = ["job_name", "is_rerun", "loaded_at"]', f'context = ["{quoted}"]'),
    }[field]
    with pytest.raises(DatasetConfigError, match=field):
        parse_catalog(toml.replace(*patched))


PASSWORD = "s3cr3t-Pa55w0rd-never-logged"
AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-dqadTestSecretKey"


def test_a_sql_source_chain_never_logs_the_password_or_the_aws_secret(
    chain,
    baseline,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import os

    cloud, storage = chain
    import io

    metrics = pd.read_parquet(io.BytesIO(storage.get_bytes(storage.uri("sources/ds000/metrics.parquet"))))
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE metrics (table_name text, metric_name text, load_ts timestamp, metric_value double precision,"
            " job_name text, is_rerun boolean, loaded_at timestamp)"
        )
        with conn.cursor().copy("COPY metrics FROM STDIN") as copy:
            for row in metrics[
                ["table_name", "metric_name", "load_ts", "metric_value", "job_name", "is_rerun", "loaded_at"]
            ].itertuples(index=False):
                copy.write_row(row)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # what the stages' clients are built with
    monkeypatch.setenv("DQAD_TEST_SOURCE_DSN", f"{pg_dsn} password={PASSWORD}")
    source = {
        "kind": "sql",
        "dsn_env": "DQAD_TEST_SOURCE_DSN",
        "chunk_rows": 1000,
        "query": "SELECT * FROM metrics WHERE load_ts >= %(history_start)s AND load_ts < %(new_end)s",
    }
    toml = render_catalog({"ds000": load_dataset("ds000", storage.bucket, history_days=70, source=source)})
    storage.put_bytes(storage.uri("config/datasets.toml"), toml.encode())

    capfd.readouterr()
    caplog.set_level("DEBUG")
    (run_id,) = start_loads(cloud, baseline.loads[1:])
    cloud.pump(deadline_s=120)
    out, err = capfd.readouterr()
    assert outcomes(storage, [run_id])[run_id].kind == "notified"
    # Powertools' stdout handler may be bound to an earlier stream; its records also reach caplog,
    # with every extra field: scan the formatted stream output and each record's full attributes.
    records = "\n".join(repr(vars(r)) for r in caplog.records)
    assert "'message': 'fetched'" in records or "'msg': 'fetched'" in records  # the logs were captured
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET
    for text in (out, err, caplog.text, records):
        assert PASSWORD not in text
        assert AWS_SECRET not in text
