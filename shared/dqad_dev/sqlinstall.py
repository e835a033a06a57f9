"""Install the dqad Aurora trigger and talk to the tables it writes.

The SQL lives in the repository's ``sql/`` folder (plain files an Aurora DBA can read and apply with
``psql -1 -f``); this module applies the same files from Python so that tests, ``dqad listen`` and the
CLI install exactly what production gets, never a second copy of it.

It also reads the **local stand-in's calls** (``aws_lambda.invocations``): what ``aws_lambda.invoke``
would have sent to Lambda on Aurora, read by the local bridge after a ``NOTIFY`` carrying the call's
id. The outbox the fetcher sweeps on AWS is the fetcher's own (:mod:`dqad_fetcher.outbox`).

Functions take an open psycopg 3 connection and never close it: the caller owns the connection and
its lifetime. Every function that writes commits its own work (through ``conn.transaction()``) unless
the caller already has a transaction open, in which case the work joins it as a savepoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

__all__ = [
    "NOTIFY_CHANNEL",
    "SQL_DIR_ENV",
    "Invocation",
    "apply_sql_file",
    "configure",
    "fetch_invocation",
    "install",
    "pending_invocations",
    "sql_dir",
    "uninstall",
]

#: Channel on which the local stand-in of ``aws_lambda.invoke`` announces each call (payload: its id).
NOTIFY_CHANNEL = "dqad_lambda_invocations"

#: Environment variable that overrides where the ``sql/`` folder is (e.g. in a packaged install,
#: where the repository layout is not there).
SQL_DIR_ENV = "DQAD_SQL_DIR"

@dataclass(frozen=True, slots=True)
class Invocation:
    """One call of the local ``aws_lambda.invoke`` stand-in (``aws_lambda.invocations``).

    ``invocation_type`` is kept so the bridge can skip ``DryRun`` calls, which on AWS never run the
    function.
    """

    id: int
    function_name: str
    region: str | None
    payload: dict[str, Any] | None
    invocation_type: str
    called_at: datetime


def sql_dir() -> Path:
    """Locate the repository's ``sql/`` folder.

    ``$DQAD_SQL_DIR`` wins when set; otherwise the folder at the repository root, two levels above
    this package (``shared/dqad`` -> repo root), which is where it is in a checkout or editable
    install. Raises ``FileNotFoundError`` naming both places when neither exists, rather than letting
    a later ``open`` fail with a path the reader cannot relate to configuration.
    """
    override = os.environ.get(SQL_DIR_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        if not (path / "install.sql").is_file():
            raise FileNotFoundError(f"${SQL_DIR_ENV}={override!r} does not contain install.sql")
        return path
    path = Path(__file__).resolve().parents[2] / "sql"
    if not (path / "install.sql").is_file():
        raise FileNotFoundError(
            f"dqad's sql/ folder was not found at {path}; set ${SQL_DIR_ENV} to the folder holding "
            "install.sql"
        )
    return path


def apply_sql_file(conn: psycopg.Connection[Any], path: str | os.PathLike[str]) -> None:
    """Run one SQL file in a single transaction (all or nothing).

    The whole file is sent as one simple-protocol query, so multi-statement files, ``DO`` blocks and
    dollar quoting work exactly as under ``psql -1 -f``. The files therefore hold no psql
    meta-commands and no ``BEGIN``/``COMMIT`` of their own.
    """
    text = Path(path).read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute(text.encode("utf-8"))  # bytes: no client-side placeholder parsing of '%'


def install(conn: psycopg.Connection[Any], *, local: bool) -> list[Path]:
    """Install the trigger; with ``local=True`` first the dev stand-ins it needs.

    Order matters: ``sql/local/install.sql`` (fake ``aws_lambda`` / ``aws_commons``) and
    ``sql/local/qe_query_logs.sql`` (the ETL's table, which exists already on Aurora) before
    ``sql/install.sql``, whose trigger needs the table. Every file is idempotent, so calling this
    again is safe. Returns the files applied, in order, for logs. Configuration is separate
    (:func:`configure`): installing never guesses a function name or region.
    """
    base = sql_dir()
    files = [base / "local" / "install.sql", base / "local" / "qe_query_logs.sql"] if local else []
    files.append(base / "install.sql")
    for path in files:
        apply_sql_file(conn, path)
    return files


def uninstall(conn: psycopg.Connection[Any]) -> Path:
    """Remove the trigger and its function (``sql/uninstall.sql``); settings and outbox are kept."""
    path = sql_dir() / "uninstall.sql"
    apply_sql_file(conn, path)
    return path


def configure(
    conn: psycopg.Connection[Any], function_name: str, region: str, *, enabled: bool = True
) -> None:
    """Point the trigger at the fetcher Lambda of one environment.

    Written to ``edo_dms.dqad_settings``, which the trigger reads on every call, so a change takes
    effect for the next insert without reinstalling. Empty values are refused here because the
    trigger would only turn them into outbox rows later.
    """
    if not function_name or not function_name.strip():
        raise ValueError("function_name must not be empty")
    if not region or not region.strip():
        raise ValueError("region must not be empty")
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO edo_dms.dqad_settings (key, value, updated_at)
            VALUES ('fetcher_function', %(fn)s, now()), ('region', %(region)s, now()),
                   ('enabled', %(enabled)s, now())
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
            """,
            {"fn": function_name.strip(), "region": region.strip(),
             "enabled": "true" if enabled else "false"},
        )


_INVOCATION_COLUMNS = "id, function_name, region, payload, invocation_type, called_at"


def pending_invocations(
    conn: psycopg.Connection[Any], after_id: int = 0, limit: int = 1000
) -> list[Invocation]:
    """Calls of the local stand-in with an id greater than ``after_id``, oldest first.

    The bridge uses it to catch up on calls made while it was not listening (NOTIFY is not queued
    for absent listeners), then follows the NOTIFY ids. Read-only; it ends the transaction it opens
    so that a long-lived bridge connection never sits idle in transaction.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_INVOCATION_COLUMNS} FROM aws_lambda.invocations"
            " WHERE id > %s ORDER BY id LIMIT %s",
            [after_id, limit],
        )
        return [Invocation(**row) for row in cur.fetchall()]


def fetch_invocation(conn: psycopg.Connection[Any], invocation_id: int) -> Invocation | None:
    """One call of the local stand-in by id (the NOTIFY payload), or ``None`` if there is none.

    ``None`` happens when the notifying transaction's rows were removed since, e.g. a test cleaned
    the table; the bridge logs and moves on.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_INVOCATION_COLUMNS} FROM aws_lambda.invocations WHERE id = %s",
            [invocation_id],
        )
        row = cur.fetchone()
    return Invocation(**row) if row else None
