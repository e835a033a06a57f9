"""The SECURITY DEFINER trigger function cannot be borrowed (real PostgreSQL, sql/install.sql).

The function runs with its owner's rights (the role allowed to call aws_lambda.invoke). If anyone
could attach it to a table of their own, they could make it invoke the fetcher with rows they chose.
Two locks: EXECUTE is revoked from PUBLIC (creating a trigger needs EXECUTE; firing one does not),
and the function refuses to run on any table but ``edo_dms.qe_query_logs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.postgres


@pytest.fixture
def conn(dqad_pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dqad_pg_dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def schema_user(conn: psycopg.Connection[Any]) -> Iterator[sql.Identifier]:
    """A role with USAGE on edo_dms and a schema of its own, nothing else."""
    role = sql.Identifier(f"dqad_other_{conn.info.dbname[-8:]}")
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA edo_dms TO {}").format(role))
    conn.execute(sql.SQL("CREATE SCHEMA mine AUTHORIZATION {}").format(role))
    try:
        yield role
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP SCHEMA mine CASCADE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(sql.SQL("DROP ROLE {}").format(role))


def invocation_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM aws_lambda.invocations").fetchone()
    assert row is not None
    return int(row[0])


def test_public_cannot_execute_the_trigger_function(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT has_function_privilege('public', 'edo_dms.edm_func_ad_lambdainvoke()', 'EXECUTE')"
    ).fetchone()
    assert row == (False,)


def test_a_role_with_only_usage_cannot_attach_it_to_its_own_table(
    conn: psycopg.Connection[Any], schema_user: sql.Identifier
) -> None:
    conn.execute(sql.SQL("SET ROLE {}").format(schema_user))
    conn.execute("CREATE TABLE mine.logs (log_id int, job_name text, table_name text, status text)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="edm_func_ad_lambdainvoke"):
        conn.execute(
            "CREATE TRIGGER forged AFTER INSERT ON mine.logs FOR EACH ROW "
            "EXECUTE FUNCTION edo_dms.edm_func_ad_lambdainvoke()"
        )
    conn.execute("RESET ROLE")
    assert invocation_count(conn) == 0


def test_the_function_refuses_any_other_table_even_for_its_owner(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE public.elsewhere (log_id int, job_name text, table_name text, status text)")
    conn.execute(
        "CREATE TRIGGER borrowed AFTER INSERT ON public.elsewhere FOR EACH ROW "
        "EXECUTE FUNCTION edo_dms.edm_func_ad_lambdainvoke()"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only runs as the AFTER INSERT row trigger"):
        conn.execute("INSERT INTO public.elsewhere VALUES (1, 'j', 'demo_table', 'SUCCESS')")
    assert invocation_count(conn) == 0


def test_the_real_trigger_still_fires_for_the_etl(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status) VALUES ('j', 't', 'SUCCESS')"
    )
    assert invocation_count(conn) == 1
