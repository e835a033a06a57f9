"""The fetcher's outbox sweep: invocations the Aurora trigger could not make (``edo_dms.dqad_outbox``).

The sweeper claims rows with ``FOR UPDATE SKIP LOCKED`` plus a lease, delivers them, then marks them
delivered, so each row is delivered once even with several sweepers running at the same time.

Functions take an open psycopg 3 connection and never close it: the caller owns the connection and
its lifetime. Every function that writes commits its own work (through ``conn.transaction()``) unless
the caller already has a transaction open, in which case the work joins it as a savepoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

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
