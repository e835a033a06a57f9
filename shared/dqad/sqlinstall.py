"""Install the dqad Aurora trigger and talk to the tables it writes.

The SQL lives in the repository's ``sql/`` folder (plain files an Aurora DBA can read and apply with
``psql -1 -f``); this module applies the same files from Python so that tests, ``dqad listen`` and the
CLI install exactly what production gets, never a second copy of it.

It also holds the two small read/claim APIs on those tables:

* the **outbox** (``edo_dms.dqad_outbox``): invocations the trigger could not make. The sweeper claims
  rows with ``FOR UPDATE SKIP LOCKED`` plus a lease, delivers them, then marks them delivered, so each
  row is delivered once even with several sweepers running at the same time;
* the **local stand-in's calls** (``aws_lambda.invocations``): what ``aws_lambda.invoke`` would have
  sent to Lambda on Aurora, read by the local bridge after a ``NOTIFY`` carrying the call's id.

Functions take an open psycopg 3 connection and never close it: the caller owns the connection and
its lifetime. Every function that writes commits its own work (through ``conn.transaction()``) unless
the caller already has a transaction open, in which case the work joins it as a savepoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
    "OutboxRow",
    "apply_sql_file",
    "claim_outbox",
    "configure",
    "fetch_invocation",
    "install",
    "mark_delivered",
    "pending_invocations",
    "release_outbox",
    "sql_dir",
    "uninstall",
]

#: Channel on which the local stand-in of ``aws_lambda.invoke`` announces each call (payload: its id).
NOTIFY_CHANNEL = "dqad_lambda_invocations"

#: Environment variable that overrides where the ``sql/`` folder is (e.g. in a packaged install,
#: where the repository layout is not there).
SQL_DIR_ENV = "DQAD_SQL_DIR"

#: Default lease of a claimed outbox row. A sweeper that dies after claiming does not strand its rows
#: for ever: once the lease is over, another sweep claims them again.
DEFAULT_LEASE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered invocation, as claimed by a sweeper."""

    id: int
    log_id: str | None
    payload: dict[str, Any]
    error: str | None
    created_at: datetime
    attempts: int
    """How many times the row has been claimed, this claim included."""


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


def claim_outbox(
    conn: psycopg.Connection[Any], limit: int = 100, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> list[OutboxRow]:
    """Claim up to ``limit`` undelivered outbox rows, oldest first, for this sweeper alone.

    A row is claimable when it is undelivered and either never claimed or its lease
    (``lease_seconds`` after its last claim) is over. ``FOR UPDATE SKIP LOCKED`` makes concurrent
    sweepers pass over each other's rows instead of waiting or double-claiming; stamping
    ``claimed_at`` (committed before returning, unless the caller holds a transaction) keeps the rows
    out of other sweeps until the lease ends. Deliver the rows, then call :func:`mark_delivered`;
    on failure call :func:`release_outbox` so the next sweep retries at once.

    A sweeper that crashes between delivering and marking re-delivers after the lease: that is the
    at-least-once corner, made harmless downstream by the deterministic run id.
    """
    if limit <= 0:
        return []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            WITH claimable AS (
                SELECT id FROM edo_dms.dqad_outbox
                 WHERE delivered_at IS NULL
                   AND (claimed_at IS NULL
                        OR claimed_at <= clock_timestamp() - make_interval(secs => %(lease)s))
                 ORDER BY id
                 LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED
            )
            UPDATE edo_dms.dqad_outbox AS o
               SET claimed_at = clock_timestamp(), attempts = o.attempts + 1
              FROM claimable
             WHERE o.id = claimable.id
            RETURNING o.id, o.log_id, o.payload, o.error, o.created_at, o.attempts
            """,
            {"lease": float(lease_seconds), "limit": int(limit)},
        )
        rows = cur.fetchall()
    return sorted((OutboxRow(**row) for row in rows), key=lambda r: r.id)


def mark_delivered(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    """Record that these outbox rows were delivered; returns how many were newly marked.

    Rows already delivered are left alone (and not counted), so a repeated call is harmless and the
    first delivery time is kept.
    """
    if not ids:
        return 0
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE edo_dms.dqad_outbox SET delivered_at = clock_timestamp(), last_error = NULL
             WHERE id = ANY(%s) AND delivered_at IS NULL
            """,
            [list(ids)],
        )
        return cur.rowcount


def release_outbox(conn: psycopg.Connection[Any], ids: Sequence[int], error: str | None = None) -> int:
    """Give claimed rows back after a failed delivery, so the next sweep retries them at once.

    The failure is kept in ``last_error`` (the trigger's original ``error`` is never overwritten).
    Returns how many undelivered rows were released.
    """
    if not ids:
        return 0
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE edo_dms.dqad_outbox SET claimed_at = NULL, last_error = %s
             WHERE id = ANY(%s) AND delivered_at IS NULL
            """,
            [error[:2000] if error else None, list(ids)],
        )
        return cur.rowcount


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
