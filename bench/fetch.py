"""Benchmark: the fetcher's ``sql`` source, PostgreSQL → Parquet on S3 (moto's ThreadedMotoServer).

    .venv/bin/python bench/fetch.py                    # 250k and 1M rows, writes bench/out/fetch.json
    .venv/bin/python bench/fetch.py --rows 1000000     # one size
    .venv/bin/python bench/fetch.py --fetch-method cursor   # the path Redshift takes, on PostgreSQL

For each size a metrics table is loaded with COPY (generated data: 1000 series × hourly points),
then a *fresh child process* runs ``dqad_fetcher.domain.fetch`` for one LoadCompleted: the ``sql``
source as configured (``fetch_method``, default ``auto``: COPY … TO STDOUT on PostgreSQL, a
server-side cursor on Redshift) → chunks → canonical form → history/new Parquet → S3 over real
HTTP. The child reports its
wall time, rows/s and peak RSS (``ru_maxrss``) before and after the fetch; the S3 server runs in the
parent, so its memory (moto keeps objects in RAM) is not counted. The child's CPU time is reported too
(rows per CPU-second): on a shared machine wall-clock rows/s mostly measures the neighbours.
Peak RSS that does not grow from 250k to 1M rows is the evidence that the fetch streams.
Target: ≥ 200,000 rows/s, peak RSS < 1 GiB.

Environment: PostgreSQL at ``$DQAD_PG_ADMIN_DSN`` (default 127.0.0.1:5432, user postgres); a scratch
database ``dqad_bench_fetch`` is created and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ADMIN_DSN = os.environ.get("DQAD_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
DB = "dqad_bench_fetch"
SERIES = 1000
LOADED_AT = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
OUT = Path(__file__).resolve().parent / "out" / "fetch.json"
PREFIX = "dqad-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_table(dsn: str, table: str, rows: int) -> None:
    """COPY ``rows`` generated metric rows: SERIES series × (rows / SERIES) hourly points ending at LOADED_AT."""
    import numpy as np
    import psycopg
    from psycopg import sql

    points = rows // SERIES
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}"
                " (table_name text, metric_name text, load_ts timestamptz, metric_value double precision)"
            ).format(sql.Identifier(table))
        )
        end = LOADED_AT.replace(tzinfo=None)
        stamps = [(end - timedelta(hours=points - 1 - h)).strftime("%Y-%m-%d %H:%M:%S+00") for h in range(points)]
        copy_sql = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
        with conn.cursor().copy(copy_sql) as copy:
            for s in range(SERIES):
                values = (np.arange(points) * 7 + s * 13) % 1000 + 0.25
                prefix = f"t{s // 10:03d}\tm{s % 10}\t"
                copy.write("".join(f"{prefix}{t}\t{v}\n" for t, v in zip(stamps, values, strict=True)))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def catalog(tables: dict[str, str], history_days: int, fetch_method: str = "auto") -> str:
    from dqad.datasets import long_format_dataset, render_catalog

    return render_catalog(
        {
            dataset: long_format_dataset(
                history_days=history_days,
                new_window_hours=24,
                trigger_tables=[table],
                source={
                    "kind": "sql",
                    "dsn_env": "DQAD_BENCH_DSN",
                    "fetch_method": fetch_method,
                    "query": f"SELECT * FROM {table} WHERE load_ts >= %(history_start)s AND load_ts < %(new_end)s",
                },
            )
            for dataset, table in tables.items()
        }
    )


def child(dataset: str) -> None:
    """Run one fetch in this (fresh) process and print a JSON line with its figures."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from dqad.contract import LoadCompleted, make_run_id
    from dqad.stage import runtime
    from dqad_fetcher import domain

    rt = runtime("fetcher")
    detail = LoadCompleted(
        run_id=make_run_id(dataset, "bench", LOADED_AT),
        dataset=dataset,
        log_id="bench",
        table_name="bench",
        loaded_at=LOADED_AT,
        status="SUCCESS",
    )
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    baseline = usage0.ru_maxrss
    started = time.perf_counter()
    event = domain.fetch(rt, detail)
    seconds = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    assert event is not None
    rows = event.history.rows + event.new.rows
    print(
        json.dumps(
            {
                "dataset": dataset,
                "rows": rows,
                "history_rows": event.history.rows,
                "new_rows": event.new.rows,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds),
                "cpu_s": round(cpu, 3),  # this process only (PostgreSQL and the S3 server excluded)
                "rows_per_cpu_s": round(rows / cpu),
                "rss_at_start_mib": round(before / 1024, 1),
                "rss_before_fetch_mib": round(baseline / 1024, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="row count(s) (default: 250000 and 1000000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--fetch-method", default="auto", choices=["auto", "copy", "cursor"], help="the sql source's fetch_method"
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    import boto3
    import psycopg
    from moto.server import ThreadedMotoServer
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from dqad_dev.local import provision

    sizes = args.rows or [250_000, 1_000_000]
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "POWERTOOLS"))})
    results = []
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    dsn = make_conninfo(ADMIN_DSN, dbname=DB)
    try:
        session = boto3.session.Session(region_name="us-east-1")
        dep = provision(session, PREFIX)
        tables = {f"bench_{n}": f"bench_metrics_{n}" for n in sizes}
        history_days = max(sizes) // SERIES // 24 + 2
        session.client("s3").put_object(
            Bucket=dep.bucket,
            Key="config/datasets.toml",
            Body=catalog(tables, history_days, args.fetch_method).encode(),
        )
        env.update(dep.settings().to_env())
        env["DQAD_BENCH_DSN"] = dsn
        for n in sizes:
            started = time.perf_counter()
            load_table(dsn, tables[f"bench_{n}"], n)
            print(f"loaded {n:,} rows with COPY in {time.perf_counter() - started:.1f} s", flush=True)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", f"bench_{n}"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{result['rows']:>9,} rows  {result['seconds']:6.2f} s  {result['rows_per_s']:>9,} rows/s  "
                f"({result['rows_per_cpu_s']:,} rows/CPU-s)  "
                f"peak RSS {result['peak_rss_mib']:7.1f} MiB (before fetch {result['rss_before_fetch_mib']:.1f})",
                flush=True,
            )
    finally:
        server.stop()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    report = {
        "benchmark": "fetch sql source: PostgreSQL -> canonical Parquet on S3 (ThreadedMotoServer)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "fetch_method": args.fetch_method,
        "target": {"rows_per_s": 200_000, "peak_rss_mib": 1024},
        "results": results,
    }
    if len(results) >= 2:
        report["peak_rss_growth_mib"] = round(results[-1]["peak_rss_mib"] - results[0]["peak_rss_mib"], 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
