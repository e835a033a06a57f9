"""Dataset configuration: clear errors for unknown keys, bad columns and bad SQL parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from dqad.datasets import DatasetConfigError, parse_catalog, referenced_parameters
from dqad_fetcher.canonical import SchemaMismatch, to_canonical

BASE = """
[datasets.sales_dq]
keys = ["table_name", "metric_name"]
timestamp = "load_ts"
value = "metric_value"
group = ["table_name"]
[datasets.sales_dq.trigger]
table_names = ["sales.*"]
[datasets.sales_dq.source]
"""
FILE_SOURCE = 'kind = "file"\npath = "metrics.csv"\n'


def test_a_valid_catalog_loads_and_matches_log_rows() -> None:
    cat = parse_catalog(BASE + FILE_SOURCE)
    ds = cat.get("sales_dq")
    assert ds.columns == ("table_name", "metric_name", "load_ts", "metric_value")
    assert [d.name for d in cat.matching("sales.orders", "", "success")] == ["sales_dq"]
    assert cat.matching("sales.orders", "", "FAILED") == []
    assert cat.matching("crm.customers", "", "SUCCESS") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + FILE_SOURCE + "colour = 'blue'\n", "source.file.colour: Extra inputs are not permitted"),
        (BASE.replace('timestamp = "load_ts"', 'timestamp = "load ts; drop"') + FILE_SOURCE, "timestamp"),
        (BASE.replace('group = ["table_name"]', 'group = ["column_name"]') + FILE_SOURCE, "group columns"),
        (
            BASE + 'kind = "sql"\ndsn_env = "DSN"\nquery = "select * from m where ts >= %(since)s"\n',
            "unknown SQL parameter(s) ['since']",
        ),
        (BASE + 'kind = "sql"\ndsn_env = "DSN"\nquery = "select 1; drop table m"\n', "one statement"),
        (
            BASE + 'kind = "sql"\ndsn_env = "DSN"\nquery = "select * from m where ts < \'%(new_end)s\'"\n',
            "parameter(s) ['new_end'] inside a quoted string",
        ),
        (BASE + 'kind = "sql"\nquery = "select 1"\n', "exactly one of dsn_secret_arn or dsn_env"),
        ("[datasetz.x]\n", "unknown top-level key"),
        ("[datasets.Bad-Name]\n", "lower-case"),
        ("not toml = = 1", "not valid TOML"),
    ],
)
def test_bad_configuration_is_named(text: str, message: str) -> None:
    with pytest.raises(DatasetConfigError) as info:
        parse_catalog(text)
    assert message in str(info.value)


def test_query_parameters_in_both_styles() -> None:
    assert referenced_parameters("a >= %(history_start)s and b < :new_end and c::date") == {"history_start", "new_end"}
    # quotes elsewhere in a query are fine: only a parameter inside a literal is refused
    ok = 'kind = "sql"\ndsn_env = "DSN"\nquery = "select * from m where s = \'it\'\'s\' and ts < %(new_end)s"\n'
    assert parse_catalog(BASE + ok).get("sales_dq").source.query.endswith("%(new_end)s")


def test_window_puts_only_the_new_load_in_new() -> None:
    ds = parse_catalog(BASE + FILE_SOURCE).get("sales_dq")
    start, new_start, end = ds.window(datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    assert (end - new_start).total_seconds() == 24 * 3600
    assert (new_start - start).days == 180
    assert new_start < datetime(2026, 11, 2, 6, 0, tzinfo=UTC) < end


def test_to_canonical_builds_series_group_and_utc_timestamps() -> None:
    ds = parse_catalog(BASE + FILE_SOURCE).get("sales_dq")
    raw = pd.DataFrame(
        {
            "table_name": ["sales.orders"] * 2,
            "metric_name": ["row_count", "null_pct"],
            "load_ts": ["2026-11-02T07:00:00+01:00", "2026-11-02T06:00:00Z"],
            "metric_value": ["10", 2.5],
        }
    )
    out = to_canonical(raw, ds)
    assert list(out["series"]) == ["sales.orders/row_count", "sales.orders/null_pct"]
    assert list(out["group"]) == ["sales.orders"] * 2
    assert (out["timestamp"] == pd.Timestamp("2026-11-02 06:00")).all()
    assert out["value"].tolist() == [10.0, 2.5]


@pytest.mark.parametrize(
    ("column", "patch"),
    [("metric_value", {"metric_value": ["ten"]}), ("load_ts", {"load_ts": ["yesterday"]}), ("metric_name", None)],
)
def test_schema_mismatch_names_the_column(column: str, patch: dict | None) -> None:
    ds = parse_catalog(BASE + FILE_SOURCE).get("sales_dq")
    raw = pd.DataFrame({"table_name": ["t"], "metric_name": ["m"], "load_ts": ["2026-11-02"], "metric_value": [1]})
    raw = raw.drop(columns=[column]) if patch is None else raw.assign(**patch)
    with pytest.raises(SchemaMismatch) as info:
        to_canonical(raw, ds)
    assert info.value.column == column


def test_a_rendered_catalog_is_the_toml_a_user_would_write_and_parses_back() -> None:
    from dqad.datasets import long_format_dataset, render_catalog

    text = render_catalog(
        {
            "sales_dq": long_format_dataset(
                description='orders "daily" 📈',
                history_days=30,
                trigger_tables=["sales.*"],
                source={"kind": "file", "path": "metrics.csv"},
                labeler={"holidays": [datetime(2026, 12, 25).date()]},
                notifier={},
            )
        }
    )
    assert text.startswith("[datasets.sales_dq]\ndescription = \"orders \\\"daily\\\" 📈\"\n")
    ds = parse_catalog(text).get("sales_dq")
    assert ds.columns == ("table_name", "metric_name", "load_ts", "metric_value")
    assert ds.history_days == 30 and ds.description == 'orders "daily" 📈'
    assert [d.name for d in parse_catalog(text).matching("sales.orders", "", "SUCCESS")] == ["sales_dq"]


def test_rendering_a_catalog_refuses_what_the_parser_would_refuse() -> None:
    from dqad.datasets import long_format_dataset, render_catalog

    source = {"kind": "file", "path": "x.csv"}
    with pytest.raises(DatasetConfigError, match="history_days"):
        render_catalog({"d": long_format_dataset(trigger_tables=["t"], source=source, history_days="x")})
    with pytest.raises(TypeError, match="set"):
        render_catalog({"d": long_format_dataset(trigger_tables=["t"], source=source, keys={1})})
