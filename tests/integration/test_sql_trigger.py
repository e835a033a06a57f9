"""Acceptance tests of the Aurora trigger (sql/install.sql) against the real PostgreSQL.

Aurora's ``aws_lambda`` extension is replaced by the local stand-in (sql/local/install.sql), which
records each invoke in ``aws_lambda.invocations``: what would have been sent to Lambda is asserted
there. Each test runs in its own scratch database (fixtures in conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.errors import Diagnostic

from dqad_dev import sqlinstall
from dqad_fetcher import outbox

pytestmark = pytest.mark.postgres

INSERT_LOG = """
    INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status, row_count, loaded_at, query_text)
    VALUES (%(job)s, %(table)s, %(status)s, %(rows)s, %(loaded_at)s, %(query)s)
    RETURNING log_id
"""


def insert_log(
    conn: psycopg.Connection[Any],
    *,
    job: str = "dq_metrics_daily",
    table: str | None = "dq.metrics_daily",
    status: str = "SUCCESS",
    loaded_at: datetime | None = None,
    query: str = "INSERT INTO dq.metrics_daily SELECT 1",
) -> int:
    """Insert one log row as the ETL does (one statement, committed) and return its log_id."""
    with conn.transaction():
        row = conn.execute(
            INSERT_LOG,
            {"job": job, "table": table, "status": status, "rows": 10,
             "loaded_at": loaded_at or datetime(2026, 11, 2, 6, 0, tzinfo=UTC), "query": query},
        ).fetchone()
    assert row is not None
    return int(row[0])


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def invocations(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, function_name, region, payload, invocation_type FROM aws_lambda.invocations ORDER BY id"
    ).fetchall()


class Notices:
    """Collects server notices of one connection (RAISE WARNING reaches the client this way).

    A Diagnostic is only readable inside the handler (it wraps a result libpq frees afterwards),
    so the fields are copied out there.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.items: list[tuple[str, str]] = []
        conn.add_notice_handler(self._collect)

    def _collect(self, diag: Diagnostic) -> None:
        self.items.append((diag.severity_nonlocalized or "", diag.message_primary or ""))

    def warnings(self) -> list[str]:
        return [message for severity, message in self.items if severity == "WARNING"]


@pytest.fixture
def conn(dqad_pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit connection to an installed, configured scratch database."""
    with psycopg.connect(dqad_pg_dsn, autocommit=True) as c:
        yield c


def set_failing(dsn: str, failing: bool) -> None:
    """Flip the stand-in's failure switch from ANOTHER connection, as an operator or test would."""
    with psycopg.connect(dsn, autocommit=True) as other:
        assert scalar(other, "SELECT aws_lambda.set_failing(%s)", [failing]) is failing


# --- install / uninstall ----------------------------------------------------------------------


def test_install_twice_then_uninstall_twice_then_reinstall(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as c:
        first = sqlinstall.install(c, local=True)
        second = sqlinstall.install(c, local=True)
        assert first == second
        assert [p.relative_to(sqlinstall.sql_dir()).as_posix() for p in first] == [
            "local/install.sql", "local/qe_query_logs.sql", "install.sql"]
        trigger = c.execute(
            "SELECT tgname, tgrelid::regclass::text, tgfoid::regproc::text FROM pg_trigger"
            " WHERE tgname = 'edm_trigger_ad_lambdainvoke'").fetchall()
        assert trigger == [("edm_trigger_ad_lambdainvoke", "edo_dms.qe_query_logs",
                            "edo_dms.edm_func_ad_lambdainvoke")]
        sqlinstall.configure(c, "fn-a", "eu-west-1")
        c.commit()

        sqlinstall.uninstall(c)
        sqlinstall.uninstall(c)
        assert scalar(c, "SELECT count(*) FROM pg_trigger WHERE tgname = 'edm_trigger_ad_lambdainvoke'") == 0
        assert scalar(c, "SELECT to_regproc('edo_dms.edm_func_ad_lambdainvoke')") is None
        c.commit()
        insert_log(c)
        assert invocations(c) == []
        # Settings and outbox survive an uninstall: configuration and undelivered loads are data.
        assert scalar(c, "SELECT value FROM edo_dms.dqad_settings WHERE key = 'fetcher_function'") == "fn-a"
        assert scalar(c, "SELECT to_regclass('edo_dms.dqad_outbox')::text") == "edo_dms.dqad_outbox"
        c.commit()

        sqlinstall.install(c, local=False)  # the stand-in is still there from the first install
        insert_log(c)
        assert [(r[1], r[4]) for r in invocations(c)] == [("fn-a", "Event")]


def test_uninstall_is_harmless_where_nothing_was_installed(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as c:
        sqlinstall.uninstall(c)
        sqlinstall.uninstall(c)


def test_stand_in_has_auroras_signatures(conn: psycopg.Connection[Any]) -> None:
    """The four documented invoke overloads and create_lambda_function_arn, with their OUT columns."""
    arn = "aws_commons._lambda_function_arn_1"
    payload_types = ("json", "jsonb")
    expected = {f"aws_lambda.invoke(text, {p}, text, text, text, {p}, character varying)": p
                for p in payload_types}
    expected |= {f"aws_lambda.invoke({arn}, {p}, text, text, {p}, character varying)": p
                 for p in payload_types}
    for signature, payload_type in expected.items():
        proc = scalar(conn, "SELECT to_regprocedure(%s)::oid", [signature])
        assert proc is not None, signature
        result = scalar(conn, "SELECT pg_get_function_result(%s)", [proc])
        assert result == "record", signature
        out_cols = conn.execute(
            "SELECT array_agg(n ORDER BY o), array_agg(m ORDER BY o) FROM unnest("
            " (SELECT proargnames FROM pg_proc WHERE oid = %s),"
            " (SELECT proargmodes::text[] FROM pg_proc WHERE oid = %s)) WITH ORDINALITY AS a(n, m, o)"
            " WHERE m = 'o'", [proc, proc]).fetchone()
        assert out_cols is not None
        assert out_cols[0] == ["status_code", "payload", "executed_version", "log_result"], signature
        out_types = scalar(conn, "SELECT proallargtypes::regtype[]::text[] FROM pg_proc WHERE oid = %s",
                           [proc])
        assert out_types[-4:] == ["integer", payload_type, "text", "text"], signature
    arn_fn = scalar(conn, "SELECT to_regprocedure('aws_commons.create_lambda_function_arn(text, text)')::oid")
    assert scalar(conn, "SELECT pg_get_function_result(%s)", [arn_fn]) == arn
    assert scalar(conn, "SELECT pg_get_function_arguments(%s)", [arn_fn]) == (
        "function_name text, region text DEFAULT NULL::text")
    # Defaults as documented: RequestResponse, a synchronous call answered 200.
    row = conn.execute(
        "SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('f', 'eu-west-1'),"
        " '{\"a\": 1}'::json)").fetchone()
    assert row == (200, None, "$LATEST", None)
    assert [r[1:] for r in invocations(conn)] == [("f", "eu-west-1", {"a": 1}, "RequestResponse")]
    # A full ARN carries its region; Event answers 202.
    row = conn.execute(
        "SELECT status_code FROM aws_lambda.invoke('arn:aws:lambda:us-east-2:123456789012:function:g',"
        " '{}'::jsonb, invocation_type => 'Event')").fetchone()
    assert row == (202,)
    assert invocations(conn)[-1][1:3] == ("arn:aws:lambda:us-east-2:123456789012:function:g", "us-east-2")


# --- the trigger ------------------------------------------------------------------------------


def test_hundred_inserts_make_hundred_event_invocations(
    conn: psycopg.Connection[Any], fetcher_target: tuple[str, str]
) -> None:
    loaded = datetime(2026, 11, 2, 6, 0, 0, 123456, tzinfo=UTC)
    ids = [insert_log(conn, job=f"job_{i}", table=f"dq.table_{i}", loaded_at=loaded) for i in range(100)]

    calls = invocations(conn)
    assert len(calls) == 100
    function_name, region = fetcher_target
    for log_id, (_, fn, reg, payload, invocation_type) in zip(ids, calls, strict=True):
        i = ids.index(log_id)
        assert (fn, reg, invocation_type) == (function_name, region, "Event")
        assert payload == {
            "log_id": str(log_id), "job_name": f"job_{i}", "table_name": f"dq.table_{i}",
            "loaded_at": "2026-11-02T06:00:00.123456Z", "status": "SUCCESS", "source": "aurora-trigger",
            "row_count": "10",
        }
    assert scalar(conn, "SELECT count(*) FROM edo_dms.dqad_outbox") == 0


def test_settings_change_takes_effect_without_reinstall(conn: psycopg.Connection[Any]) -> None:
    sqlinstall.configure(conn, "dqad-other-fetcher", "us-west-2")
    insert_log(conn)
    assert invocations(conn)[-1][1:3] == ("dqad-other-fetcher", "us-west-2")


def test_payload_is_bounded_and_never_carries_query_text(conn: psycopg.Connection[Any]) -> None:
    log_id = insert_log(conn, job="j" * 10_000, table="t" * 10_000, status="  success ",
                        query="SELECT " + "x" * 1_000_000)
    [(_, _, _, payload, _)] = invocations(conn)
    assert payload["log_id"] == str(log_id)
    assert payload["job_name"] == "j" * 256
    assert payload["table_name"] == "t" * 256
    assert payload["status"] == "  success "  # sent as written; the guard normalises only to decide
    assert set(payload) == {"log_id", "job_name", "table_name", "loaded_at", "status", "source", "row_count"}
    assert payload["row_count"] == "10"  # the load's own row count (an empty load is reported at once)
    assert scalar(conn, "SELECT max(octet_length(payload::text)) FROM aws_lambda.invocations") < 1024


def test_guard_skips_rows_that_cannot_concern_a_dataset(conn: psycopg.Connection[Any]) -> None:
    for status in ("FAILED", "failed", "ERROR", "ABORTED", "RUNNING", "STARTED", "", "SUCCESS_PARTIAL"):
        insert_log(conn, status=status)
    insert_log(conn, status="SUCCESS", table=None)
    assert invocations(conn) == []
    assert scalar(conn, "SELECT count(*) FROM edo_dms.dqad_outbox") == 0
    assert scalar(conn, "SELECT count(*) FROM edo_dms.qe_query_logs") == 9  # the ETL's rows are all there

    accepted = ["SUCCESS", "success", " Succeeded ", "SUCCESSFUL", "OK", "COMPLETED", "DONE", "WARNING"]
    for status in accepted:
        insert_log(conn, status=status)
    assert [r[3]["status"] for r in invocations(conn)] == accepted


def test_failing_invoke_still_commits_hundred_inserts_into_outbox(
    conn: psycopg.Connection[Any], dqad_pg_dsn: str
) -> None:
    set_failing(dqad_pg_dsn, True)  # another session: the switch must hold across connections
    notices = Notices(conn)

    ids = [insert_log(conn, job=f"job_{i}") for i in range(100)]

    assert scalar(conn, "SELECT count(*) FROM edo_dms.qe_query_logs") == 100
    assert invocations(conn) == []
    rows = conn.execute(
        "SELECT log_id, payload, error, attempts, delivered_at FROM edo_dms.dqad_outbox ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == [str(i) for i in ids]
    for log_id, payload, error, attempts, delivered_at in rows:
        assert payload["log_id"] == log_id and payload["source"] == "aurora-trigger"
        assert payload["table_name"] == "dq.metrics_daily"
        assert "simulated Lambda failure" in error
        assert (attempts, delivered_at) == (0, None)
    warnings = notices.warnings()
    assert len(warnings) == 100
    assert all("dqad_outbox" in w and "simulated Lambda failure" in w for w in warnings)

    set_failing(dqad_pg_dsn, False)
    insert_log(conn)
    assert len(invocations(conn)) == 1


def test_missing_settings_go_to_outbox_and_insert_commits(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        sqlinstall.install(c, local=True)  # not configured
        notices = Notices(c)
        log_id = insert_log(c)
        assert scalar(c, "SELECT count(*) FROM edo_dms.qe_query_logs") == 1
        assert invocations(c) == []
        [(outbox_log_id, error)] = c.execute("SELECT log_id, error FROM edo_dms.dqad_outbox").fetchall()
        assert outbox_log_id == str(log_id)
        assert "dqad settings missing" in error and "fetcher_function" in error
        assert len(notices.warnings()) == 1

        c.execute("INSERT INTO edo_dms.dqad_settings (key, value) VALUES ('fetcher_function', 'f')")
        insert_log(c)  # region still missing
        assert scalar(c, "SELECT count(*) FROM edo_dms.dqad_outbox") == 2


def test_without_aws_lambda_inserts_commit_into_outbox(pg_dsn: str) -> None:
    """install.sql on a database without the extension (or stand-in): installs, and never breaks the ETL."""
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        sqlinstall.apply_sql_file(c, sqlinstall.sql_dir() / "local" / "qe_query_logs.sql")
        notices = Notices(c)
        sqlinstall.apply_sql_file(c, sqlinstall.sql_dir() / "install.sql")
        assert any("aws_lambda.invoke is not installed" in m for _, m in notices.items)
        sqlinstall.configure(c, "f", "eu-west-1")
        log_id = insert_log(c)
        [(outbox_log_id, error)] = c.execute("SELECT log_id, error FROM edo_dms.dqad_outbox").fetchall()
        assert outbox_log_id == str(log_id)
        assert "aws_commons" in error or "aws_lambda" in error


def test_kill_switch_disables_the_trigger(conn: psycopg.Connection[Any]) -> None:
    sqlinstall.configure(conn, "f", "eu-west-1", enabled=False)
    insert_log(conn)
    assert invocations(conn) == []
    assert scalar(conn, "SELECT count(*) FROM edo_dms.dqad_outbox") == 0


def test_insert_commits_even_when_the_outbox_is_gone(conn: psycopg.Connection[Any], dqad_pg_dsn: str) -> None:
    set_failing(dqad_pg_dsn, True)
    conn.execute("DROP TABLE edo_dms.dqad_outbox")
    notices = Notices(conn)
    insert_log(conn)
    assert scalar(conn, "SELECT count(*) FROM edo_dms.qe_query_logs") == 1
    [warning] = notices.warnings()
    assert "outbox insert failed too" in warning


def test_etl_role_needs_no_aws_lambda_grant(conn: psycopg.Connection[Any]) -> None:
    """SECURITY DEFINER: the ETL's role only needs to insert into its own log table."""
    role = sql.Identifier(f"dqad_etl_{conn.info.dbname[-8:]}")
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    try:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA edo_dms TO {}").format(role))
        conn.execute(sql.SQL("GRANT INSERT, SELECT ON edo_dms.qe_query_logs TO {}").format(role))
        conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE edo_dms.qe_query_logs_log_id_seq TO {}").format(role))
        conn.execute(sql.SQL("SET ROLE {}").format(role))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM aws_lambda.invocations")
        insert_log(conn)
        conn.execute("RESET ROLE")
        assert len(invocations(conn)) == 1
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_rolled_back_insert_leaves_no_local_invocation(conn: psycopg.Connection[Any]) -> None:
    """The stand-in is transactional (documented difference: Aurora has already invoked by then)."""
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute(INSERT_LOG, {"job": "j", "table": "t", "status": "SUCCESS", "rows": 1,
                                  "loaded_at": None, "query": None})
        raise RuntimeError("ETL aborts its transaction")
    assert invocations(conn) == []


def test_loaded_at_falls_back_to_ended_at_and_is_utc(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'Europe/Paris'")
    conn.execute(
        "INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status, ended_at, loaded_at)"
        " VALUES ('j', 't', 'SUCCESS', '2026-11-02 07:30:00+01', NULL)")
    assert invocations(conn)[-1][3]["loaded_at"] == "2026-11-02T06:30:00.000000Z"


def test_sample_insert_starts_the_demo_dataset(conn: psycopg.Connection[Any]) -> None:
    sqlinstall.apply_sql_file(conn, sqlinstall.sql_dir() / "local" / "sample_insert.sql")
    [(_, _, _, payload, invocation_type)] = invocations(conn)
    assert invocation_type == "Event"
    assert (payload["job_name"], payload["table_name"], payload["status"]) == (
        "dq_metrics_daily", "dq.metrics_daily", "SUCCESS")


# --- NOTIFY and the bridge's read API ---------------------------------------------------------


def test_notify_carries_the_invocation_id(conn: psycopg.Connection[Any], dqad_pg_dsn: str) -> None:
    with psycopg.connect(dqad_pg_dsn, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(sqlinstall.NOTIFY_CHANNEL)))
        log_id = insert_log(conn)
        received = list(listener.notifies(timeout=10, stop_after=1))
    assert len(received) == 1, "no NOTIFY within 10 s"
    note = received[0]
    assert note.channel == sqlinstall.NOTIFY_CHANNEL
    invocation = sqlinstall.fetch_invocation(conn, int(note.payload))
    assert invocation is not None
    assert invocation.payload is not None and invocation.payload["log_id"] == str(log_id)
    assert invocation.invocation_type == "Event"
    assert sqlinstall.pending_invocations(conn, after_id=0) == [invocation]
    assert sqlinstall.pending_invocations(conn, after_id=invocation.id) == []
    assert sqlinstall.fetch_invocation(conn, invocation.id + 1000) is None


# --- outbox API ---------------------------------------------------------------------------------


@pytest.fixture
def outbox_of_100(conn: psycopg.Connection[Any], dqad_pg_dsn: str) -> list[int]:
    """100 undelivered outbox rows (the stand-in failing), failure switch turned back off."""
    set_failing(dqad_pg_dsn, True)
    for i in range(100):
        insert_log(conn, job=f"job_{i}")
    set_failing(dqad_pg_dsn, False)
    return [r[0] for r in conn.execute("SELECT id FROM edo_dms.dqad_outbox ORDER BY id").fetchall()]


def test_claim_and_mark_deliver_each_row_once(
    conn: psycopg.Connection[Any], outbox_of_100: list[int]
) -> None:
    claimed = outbox.claim_outbox(conn, limit=1000)
    assert [r.id for r in claimed] == outbox_of_100
    assert all(r.attempts == 1 and r.payload["source"] == "aurora-trigger" for r in claimed)
    assert all(r.log_id == r.payload["log_id"] and r.error for r in claimed)
    assert outbox.mark_delivered(conn, [r.id for r in claimed]) == 100
    assert outbox.claim_outbox(conn, limit=1000) == []
    assert outbox.claim_outbox(conn, limit=1000, lease_seconds=0) == []  # delivered is final
    assert outbox.mark_delivered(conn, [r.id for r in claimed]) == 0
    assert scalar(conn, "SELECT count(*) FROM edo_dms.dqad_outbox WHERE delivered_at IS NULL") == 0


def test_claim_respects_limit_and_lease(conn: psycopg.Connection[Any], outbox_of_100: list[int]) -> None:
    first = outbox.claim_outbox(conn, limit=10)
    assert [r.id for r in first] == outbox_of_100[:10]
    second = outbox.claim_outbox(conn, limit=10)
    assert [r.id for r in second] == outbox_of_100[10:20]  # leased rows are not claimed again
    # A sweeper that died after claiming: once the lease is over its rows come back.
    again = outbox.claim_outbox(conn, limit=20, lease_seconds=0)
    assert [r.id for r in again] == outbox_of_100[:20]
    assert {r.attempts for r in again} == {2}
    # A failed delivery gives rows back at once, keeping the reason.
    assert outbox.release_outbox(conn, [r.id for r in first], "PutEvents throttled") == 10
    assert [r.id for r in outbox.claim_outbox(conn, limit=100)] == outbox_of_100[:10] + outbox_of_100[20:]
    assert scalar(conn, "SELECT last_error FROM edo_dms.dqad_outbox WHERE id = %s", [first[0].id]) == (
        "PutEvents throttled")
    assert outbox.claim_outbox(conn, limit=0) == []


def test_concurrent_claimers_never_get_the_same_row(
    conn: psycopg.Connection[Any], dqad_pg_dsn: str, outbox_of_100: list[int]
) -> None:
    # Deterministic interleaving: A holds its claim uncommitted while B claims.
    with psycopg.connect(dqad_pg_dsn) as b, conn.transaction():
        a_rows = outbox.claim_outbox(conn, limit=30)
        b_rows = outbox.claim_outbox(b, limit=1000)
    assert len(a_rows) == 30 and len(b_rows) == 70
    assert {r.id for r in a_rows}.isdisjoint(r.id for r in b_rows)
    assert sorted(r.id for r in a_rows + b_rows) == outbox_of_100


def test_many_threads_sweeping_claim_each_row_exactly_once(
    dqad_pg_dsn: str, outbox_of_100: list[int]
) -> None:
    claimed: list[list[int]] = [[] for _ in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(claimed))

    def sweep(slot: int) -> None:
        try:
            with psycopg.connect(dqad_pg_dsn) as c:
                start.wait(timeout=10)
                while batch := outbox.claim_outbox(c, limit=3):
                    claimed[slot].extend(r.id for r in batch)
                    outbox.mark_delivered(c, [r.id for r in batch])
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(len(claimed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    everything = [i for ids in claimed for i in ids]
    assert sorted(everything) == outbox_of_100  # every row once: none lost, none twice
    assert len(everything) == len(set(everything))
