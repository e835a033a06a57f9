"""Fixtures for integration tests against the real PostgreSQL server.

Every test that needs PostgreSQL gets its **own scratch database** (``dqad_test_<8 hex>``), created
before the test and dropped after it with ``WITH (FORCE)`` — so tests never see each other's rows,
run in parallel under pytest-xdist, and leave nothing behind even when a connection is left open.

* ``pg_dsn``: DSN (libpq key/value string) of an empty scratch database.
* ``dqad_pg_dsn``: the same, with dqad installed as for local development (stand-in ``aws_lambda``,
  dev ``edo_dms.qe_query_logs``, the trigger) and configured with the fetcher in ``fetcher_target``.
* ``fetcher_target``: ``(function_name, region)`` that ``dqad_pg_dsn`` configures, for assertions.

The server is ``$DQAD_PG_ADMIN_DSN`` (default: ``host=127.0.0.1 port=5432 user=postgres
dbname=postgres``, trust auth). When it is not reachable the tests are *skipped* with the reason;
any other error (e.g. no right to CREATE DATABASE) fails them, because that is a broken setup, not a
missing one. Mark such tests ``@pytest.mark.postgres``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dqad_dev import sqlinstall

ADMIN_DSN = os.environ.get(
    "DQAD_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
_FETCHER_FUNCTION = "dqad-test-fetcher"
_FETCHER_REGION = "eu-west-1"


def _admin_connect() -> psycopg.Connection:
    """Autocommit connection to the maintenance database (CREATE/DROP DATABASE need autocommit)."""
    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """DSN of a fresh, empty database on the test server; dropped (forcefully) after the test."""
    try:
        admin = _admin_connect()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_DSN!r}: {exc}".strip())
    name = f"dqad_test_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(ADMIN_DSN, dbname=name)
    finally:
        with _admin_connect() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fetcher_target() -> tuple[str, str]:
    """(function_name, region) of the fetcher Lambda that ``dqad_pg_dsn`` configures."""
    return _FETCHER_FUNCTION, _FETCHER_REGION


@pytest.fixture
def dqad_pg_dsn(pg_dsn: str, fetcher_target: tuple[str, str]) -> str:
    """Scratch database with dqad's local stack installed and configured (see module docstring)."""
    with psycopg.connect(pg_dsn) as conn:
        sqlinstall.install(conn, local=True)
        sqlinstall.configure(conn, *fetcher_target)
    return pg_dsn
