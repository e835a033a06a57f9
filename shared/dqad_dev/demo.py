"""``dqad demo``: an ETL load becomes an anomaly email, on moto, with no AWS account.

The sample is the benchmark generator's: 20 tables × 5 metrics × 180 daily loads with weekly
cycles, month-end surges and holidays, past incidents in the history, and three incidents forced
on the latest load (an empty load, a duplicated load, a null spike). The chain starts where it
starts on AWS: the Aurora trigger's payload handed to the fetcher's entry point. A fourth table's
last two loads never came: the demo's ETL log (a CSV with the log's columns, written from the loads
of the data) lacks them, and the scheduled freshness check, run once at the end, reports it missing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dqad import incidents as inc
from dqad.datasets import long_format_dataset, render_catalog
from dqad.storage import Storage
from dqad.topology import stage
from dqad_dev.local import LocalCloud, PumpReport
from dqad_dev.run import (
    DEMO_PREFIX,
    StateDir,
    drive_chain,
    print_anomalies,
    print_incidents,
    print_stage_times,
    progress_printer,
)
from dqad_dev.synth import SynthData

DATASET = "demo_dq"
FINAL_INCIDENTS = (("empty", 3), ("duplicated", 7), ("null_spike", 11))
MISSING_LOADS = 2  # of the earliest-loading table without an injected incident: reported as a missing load
LOAD_LOG_KEY = f"sources/{DATASET}/load_log.csv"
FRESHNESS_CHECK_AFTER = dt.timedelta(hours=1)  # the demo's check runs this long after the last load
#: What the scorer should call each injected incident. Only the check uses it: the scorer never sees
#: the injection, it names what it finds from the values (dqad.incidents).
EXPECTED_KIND = {"empty": inc.Kind.EMPTY, "duplicated": inc.Kind.DUPLICATED, "null_spike": inc.Kind.NULL_SPIKE}


def demo_catalog(
    bucket: str,
    holidays: tuple,
    new_window_hours: float = 20,
    channels: list[dict] | None = None,
    shards: dict | None = None,
) -> str:
    """The demo dataset's catalog; ``channels`` (Slack / Teams / webhook, docs/alerts.md): none by default;
    ``shards``: its ``[shards]`` section (e.g. ``{"max_rows": 1000}`` shards the demo's run)."""
    return render_catalog(
        {
            DATASET: long_format_dataset(
                description="Daily data-quality metrics of the demo warehouse (20 tables)",
                context=["job_name", "is_rerun", "loaded_at"],
                history_days=200,
                new_window_hours=new_window_hours,
                trigger_tables=["dq.metrics_daily"],
                source={"kind": "file", "path": f"s3://{bucket}/sources/{DATASET}/metrics.parquet"},
                labeler={"holidays": [d.isoformat() for d in holidays]},
                freshness={"tables": ["*"]},  # every table in the demo's ETL log
                channels=channels,
                shards=shards,
            )
        }
    )


@dataclass
class DemoResult:
    run_id: str
    anomalies: pd.DataFrame
    injected: pd.DataFrame  # the forced incidents of the last load, with a `found` column
    pump: PumpReport
    wall_s: float
    outputs: dict[str, Path] = field(default_factory=dict)
    notification: dict | None = None
    freshness: dict = field(default_factory=dict)  # what the scheduled check returned
    freshness_notification: dict | None = None
    incidents: list[inc.Incident] = field(default_factory=list)  # as the scorer named them


@dataclass
class DemoSeed:
    """The demo dataset as seeded into a bucket: the generated data and the log row of its last load."""

    data: SynthData
    loaded_at: pd.Timestamp  # tz-aware UTC: timestamp of the latest load (what its log row reports)
    payload: dict  # what sql/install.sql's trigger sends for the metrics job's log row
    new_window_hours: float
    missing_table: str = ""  # the table whose last loads never came


def seed_demo_dataset(
    storage: Storage,
    *,
    seed: int = 7,
    tables: int = 20,
    days: int = 180,
    end: dt.date | str = "2026-11-02",
    new_window_hours: float = 20,
) -> DemoSeed:
    """Write the demo's metrics (``sources/demo_dq/metrics.parquet``) and catalog into ``storage``'s bucket.

    Used by ``dqad demo`` and by ``dqad listen``, which seeds data ending today so that a log row
    inserted now finds its load.
    """
    from dqad_dev.synth import generate

    data = generate(tables=tables, days=days, seed=seed, end=end, final_load_incidents=FINAL_INCIDENTS)
    data, missing_table = _drop_last_loads(data)
    storage.put_bytes(storage.uri(LOAD_LOG_KEY), demo_load_log(data.metrics).encode())
    buf = io.BytesIO()
    data.metrics.to_parquet(buf, index=False)
    storage.put_bytes(storage.uri(f"sources/{DATASET}/metrics.parquet"), buf.getvalue())
    catalog = demo_catalog(storage.bucket, data.holidays, new_window_hours)
    storage.put_bytes(storage.uri("config/datasets.toml"), catalog.encode())
    loaded_at = pd.Timestamp(data.metrics["load_ts"].max()).tz_localize("UTC")
    payload = {
        "log_id": f"demo-{loaded_at:%Y%m%d}",
        "job_name": "dq_metrics_daily",
        "table_name": "dq.metrics_daily",
        "loaded_at": loaded_at.isoformat(),
        "status": "SUCCESS",
        "source": "aurora-trigger",
    }
    return DemoSeed(data, loaded_at, payload, new_window_hours, missing_table)


def _drop_last_loads(data: SynthData) -> tuple[SynthData, str]:
    """Remove the last :data:`MISSING_LOADS` loads of the earliest-loading table that carries no
    injected incident (so the check, an hour after the last load, has seen both due times pass)."""
    metrics = data.metrics
    last = metrics.groupby("table_name")["load_ts"].transform("max") == metrics["load_ts"]
    forced = set(data.incidents.merge(metrics[last][["table_name", "load_ts"]].drop_duplicates())["table_name"])
    minute = metrics["load_ts"].dt.hour * 60 + metrics["load_ts"].dt.minute
    typical = minute.groupby(metrics["table_name"]).median().drop(sorted(forced), errors="ignore")
    table = str(typical.idxmin())
    loads = sorted(metrics.loc[metrics["table_name"] == table, "load_ts"].unique())[-MISSING_LOADS:]
    kept = metrics[~((metrics["table_name"] == table) & metrics["load_ts"].isin(loads))].reset_index(drop=True)
    return dataclasses.replace(data, metrics=kept), table


def demo_load_log(metrics: pd.DataFrame) -> str:
    """The demo's ETL log: one successful row per load of each table (its job, log time, row count)."""
    loads = metrics.drop_duplicates(["table_name", "load_ts"]).sort_values("loaded_at")
    counts = metrics[metrics["metric_name"] == "row_count"].set_index(["table_name", "load_ts"])["metric_value"]
    lines = ["table_name,job_name,status,loaded_at,row_count"]
    logged = pd.to_datetime(loads["loaded_at"]).dt.tz_localize("UTC")
    for table, job, load_ts, at in zip(loads["table_name"], loads["job_name"], loads["load_ts"], logged, strict=True):
        count = counts.get((table, load_ts))
        rows = "" if count is None or pd.isna(count) else str(int(count))
        lines.append(f"{table},{job},SUCCESS,{at.isoformat()},{rows}")
    return "\n".join(lines) + "\n"


def seed_demo_dataset_until(storage: Storage, now: dt.datetime, *, seed: int = 7) -> DemoSeed:
    """Seed the demo dataset so that its latest load ended shortly before ``now`` (UTC).

    The generator's loads happen at fixed times of day, so the data ends today if today's loads are
    already over at ``now``, else yesterday; the new-data window is widened to reach back to the
    earliest of those last loads (plus two hours of slack for the time between seeding and the
    INSERT), never as far as the loads of the day before.
    """
    now_utc = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    seeded = None
    for back in (0, 1):
        end = (now_utc - pd.Timedelta(days=back)).date()
        candidate = seed_demo_dataset(storage, seed=seed, end=end)
        if candidate.loaded_at <= now_utc:
            seeded = candidate
            break
    assert seeded is not None
    metrics = seeded.data.metrics
    last_loads = metrics.groupby("table_name")["load_ts"].max()
    earliest = pd.Timestamp(last_loads.min()).tz_localize("UTC")
    hours = float(np.ceil((now_utc - earliest) / pd.Timedelta(hours=1))) + 2
    return seed_demo_dataset(storage, seed=seed, end=seeded.loaded_at.date(), new_window_hours=hours)


def run_demo(out_dir: Path, seed: int = 7, tables: int = 20, days: int = 180) -> DemoResult:
    with LocalCloud(DEMO_PREFIX) as cloud:
        dep = cloud.dep
        storage = Storage(cloud.client("s3"), dep.bucket)
        demo = seed_demo_dataset(storage, seed=seed, tables=tables, days=days)
        data, metrics, payload = demo.data, demo.data.metrics, demo.payload
        started = time.perf_counter()
        runs = cloud.invoke(stage("fetcher"), "aurora", payload)["runs"]
        report = drive_chain(cloud, progress_printer(), deadline_s=300)
        wall = time.perf_counter() - started
        if len(runs) != 1:
            raise RuntimeError(f"expected the demo log row to start one run, got {runs}")
        run_id = runs[0]
        notification = next(iter(cloud.inbox()), None)
        check, freshness_mail = run_freshness_check(cloud, storage, demo.loaded_at + FRESHNESS_CHECK_AFTER)
        late_or_missing = freshness_incidents(storage, check)
        prefix = f"runs/{DATASET}/{run_id}"
        scores = storage.read_parquet(storage.uri(f"{prefix}/scores.parquet"))
        incidents_json = storage.get_bytes(storage.uri(f"{prefix}/incidents.json"))
        failed = [u for u in storage.list_uris(storage.uri(f"events/{run_id}/")) if "StageFailed" in u]
        if failed:
            raise RuntimeError(f"the demo run failed: {storage.get_json(failed[0])['detail']}")

        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        outputs = {
            "scores": out_dir / "scores.csv",
            "incidents": out_dir / "incidents.json",
            "report": out_dir / "report.html",
            "email": out_dir / "sns-message.json",
            "loadlog": out_dir / "loadlog-message.json",
            "events": out_dir / "state" / "events" / run_id,
            "state": out_dir / "state",
        }
        scores.to_csv(outputs["scores"], index=False)
        outputs["incidents"].write_bytes(incidents_json)
        outputs["report"].write_bytes(storage.get_bytes(storage.uri(f"{prefix}/report.html")))
        outputs["email"].write_text(json.dumps(notification, indent=2) if notification else "null")
        outputs["loadlog"].write_text(json.dumps(freshness_mail, indent=2) if freshness_mail else "null")
        cloud.export_bucket(outputs["state"])
        StateDir(outputs["state"]).remember_prefix(DEMO_PREFIX)

    anomalies = scores[scores["is_anomaly"]].sort_values("score", ascending=False)
    last = metrics["load_ts"].groupby(metrics["table_name"]).transform("max") == metrics["load_ts"]
    forced = data.incidents.merge(
        metrics[last][["table_name", "load_ts"]].drop_duplicates(), on=["table_name", "load_ts"]
    )
    forced = forced.assign(series=forced["table_name"] + "/" + forced["metric_name"])
    flagged_tables = set(anomalies["group"])
    forced["found"] = forced["table_name"].isin(flagged_tables)
    incidents = inc.loads(incidents_json)
    named = {(t, i.kind) for i in incidents for t in i.tables}
    incidents += late_or_missing
    forced["named"] = [
        (t, EXPECTED_KIND.get(k)) in named for t, k in zip(forced["table_name"], forced["kind"], strict=True)
    ]
    return DemoResult(
        run_id, anomalies, forced, report, wall, outputs, notification, check, freshness_mail, incidents
    )


def run_freshness_check(cloud: LocalCloud, storage: Storage, at: pd.Timestamp) -> tuple[dict, dict | None]:
    """The fetcher's scheduled freshness check, once, on the demo's ETL log; and the email it caused."""
    import os

    previous = os.environ.get("DQAD_LOAD_LOG_URI")
    os.environ["DQAD_LOAD_LOG_URI"] = storage.uri(LOAD_LOG_KEY)
    try:
        check = cloud.invoke(stage("fetcher"), "freshness", {"checked_at": at.isoformat()})
        drive_chain(cloud, None, deadline_s=60)
    finally:
        if previous is None:
            os.environ.pop("DQAD_LOAD_LOG_URI", None)
        else:
            os.environ["DQAD_LOAD_LOG_URI"] = previous
    return check, next(iter(cloud.inbox()), None)


def freshness_incidents(storage: Storage, check: dict) -> list[inc.Incident]:
    """The incidents the freshness check published (its LoadLogChecked events), as named incidents."""
    from dqad.freshness import LoadIncident, as_incident
    from dqad_notifier.freshness import line

    checked_at = pd.Timestamp(check["checked_at"]).to_pydatetime()
    found = []
    for run in check.get("runs", []):
        for uri in storage.list_uris(storage.uri(f"events/{run}/")):
            if "LoadLogChecked" in uri:
                detail = storage.get_json(uri)["detail"]
                for doc in detail["incidents"]:
                    record = LoadIncident.from_json(doc)
                    found.append(as_incident(record, line(record, checked_at), detail["dataset"]))
    return found


def print_result(res: DemoResult) -> None:
    print(f"\nRun {res.run_id}: {len(res.anomalies)} anomalies in {DATASET}\n")
    print_incidents(res.incidents)
    print("")
    print_anomalies(res.anomalies)
    print("\nInjected incidents on the latest load:")
    for kind, rows in res.injected.groupby("kind", sort=False):
        table = rows["table_name"].iloc[0]
        status = "FOUND" if rows["found"].all() else "MISSED"
        name = f"reported as {EXPECTED_KIND[str(kind)].words}" if rows["named"].all() else "not named as such"
        print(f"  {status:<6} {kind:<12} {table} ({', '.join(rows['metric_name'])}) - {name}")
    check = res.freshness
    if check:
        at = pd.Timestamp(check["checked_at"])
        print(f"\nScheduled freshness check at {at:%Y-%m-%d %H:%M} UTC ({check['tables']} tables in the ETL log):")
        body = (res.freshness_notification or {}).get("Message", "")
        lines = [ln.strip() for ln in body.splitlines() if ln.startswith("  ")]
        print("\n".join(f"  {ln}" for ln in lines) if lines else "  every table's last load came on time")
    print("")
    print_stage_times(res.pump)
    print(f"  chain wall time from the simulated Aurora insert: {res.wall_s:.2f} s")
    print("\nOutputs:")
    for name, path in res.outputs.items():
        print(f"  {name:<7} {path}")
    print(f"\nReplay one stage: dqad replay --run-id {res.run_id} --stage scorer")
