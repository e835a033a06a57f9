"""A real run's shape at scale: N series × 180 days of daily history, one new point each, the whole chain.

    .venv/bin/python -m bench.scale 10000 100000      # prints one JSON line per size, writes bench/out/scale.json
    .venv/bin/python -m bench.scale 100000 --record   # also bench/results/scale.json (what make bench shows)

The chain runs on the embedded runtime's deployment (bus rules, queues, DLQs, tables) on a moto server
in its own process, as AWS would be. Every stage invocation is its own Python process, one SQS
message each (the deployed batch size of the sharded stages), as a Lambda's container would be:
its peak RSS (VmHWM) is that invocation's alone, and the training job's (a subprocess of the
trainer's job-state invocation, ``RUSAGE_CHILDREN``) is reported apart. Up to ``--parallel`` invocations of one stage
run at once, as Lambda runs a queue's messages. Item 3 of the targets: no invocation above 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
METRICS = ("row_count", "null_pct", "distinct_count", "sum_amount", "duration_s")
DAYS = 180
DATASET = "scale_dq"
PEAK_TARGET_MB = 3 * 1024
END = datetime(2026, 11, 2, 2, 0)


def generate(series: int, days: int = DAYS, seed: int = 5) -> Any:
    """``series`` daily series (tables of five metrics), ``days`` of history and one new load each.

    Weekly rhythm, a trend, noise; a few hundred tables get an incident on the new load (an empty
    load, a null spike), so the chain has something to say.
    """
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    tables = max(1, series // len(METRICS))
    n_days = days + 1
    day = np.arange(n_days)
    weekday = (END.weekday() - (n_days - 1 - day)) % 7
    base = rng.lognormal(8, 1.5, size=(tables, len(METRICS)))
    weekly = np.where(weekday >= 5, 0.6, 1.0)  # weekend loads are smaller
    trend = 1 + 0.0005 * day
    noise = rng.normal(0, 0.03, size=(tables, len(METRICS), n_days))
    values = base[:, :, None] * weekly[None, None, :] * trend[None, None, :] * (1 + noise)
    values[:, 1, :] = np.clip(rng.normal(2, 0.3, size=(tables, n_days)), 0, 100)  # null_pct
    hit = rng.choice(tables, size=max(1, tables // 200), replace=False)
    values[hit[::2], 0, -1] = 0.0  # empty loads
    values[hit[1::2], 1, -1] = 60.0  # null spikes
    times = np.array([END - timedelta(days=int(n_days - 1 - d)) for d in day], dtype="datetime64[us]")
    table_names = np.array([f"dw.table_{i:06d}" for i in range(tables)])
    t_idx = np.repeat(np.arange(tables), len(METRICS) * n_days)
    m_idx = np.tile(np.repeat(np.arange(len(METRICS)), n_days), tables)
    d_idx = np.tile(day, tables * len(METRICS))
    return pa.table(
        {
            "table_name": pa.DictionaryArray.from_arrays(pa.array(t_idx, pa.int32()), pa.array(table_names)),
            "metric_name": pa.DictionaryArray.from_arrays(pa.array(m_idx, pa.int32()), pa.array(METRICS)),
            "load_ts": pa.array(times[d_idx]),
            "metric_value": pa.array(values.reshape(-1)),
        }
    )


def catalog(bucket: str, max_rows: int | None) -> str:
    from dqad.datasets import long_format_dataset, render_catalog

    return render_catalog(
        {
            DATASET: long_format_dataset(
                description="benchmark: N series x 180 days, one new point each",
                history_days=DAYS + 5,
                new_window_hours=20,
                trigger_tables=["dw.metrics_daily"],
                source={"kind": "file", "path": f"s3://{bucket}/sources/{DATASET}/metrics.parquet"},
                shards={"max_rows": max_rows} if max_rows else None,
            )
        }
    )


# -- one invocation, in its own process ---------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak RSS since it started: VmHWM, which exec resets (ru_maxrss keeps the peak of
    the process that forked it, here the harness, so small invocations would read the harness's size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def invoke(stage_name: str) -> dict:
    """Run the stage's handler on the SQS event read from stdin; print time and peak RSS."""
    from dqad.topology import stage
    from dqad_dev.local import load_entry_point

    event = json.loads(sys.stdin.read())
    handler = load_entry_point(stage(stage_name).handler)
    started = time.perf_counter()
    result = handler(event, None) or {}
    return {
        "stage": stage_name,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "failed": len(result.get("batchItemFailures", [])),
    }


class Pump:
    """Drain each stage's queue in chain order, one message per invocation process."""

    def __init__(self, cloud: Any, parallel: int) -> None:
        self.cloud = cloud
        self.parallel = parallel
        self.invocations: list[dict] = []
        self.lock = threading.Lock()

    def _one(self, st: Any) -> bool:
        from dqad_dev.local import sqs_event

        sqs = self.cloud.client("sqs")
        url = self.cloud.dep.queue_urls[st.name]
        msgs = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0, AttributeNames=["All"], VisibilityTimeout=900
        ).get("Messages", [])
        if not msgs:
            return False
        event = sqs_event(msgs, self.cloud._queue_arn(url))
        proc = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--invoke", st.name],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{st.name} invocation failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        body = json.loads(msgs[0]["Body"])
        shard = (body.get("detail") or {}).get("shard")
        out["shard"] = shard["index"] if isinstance(shard, dict) else None
        out["detail_type"] = body.get("detail-type")
        if out["failed"]:
            raise RuntimeError(f"{st.name} reported a failed record: {proc.stderr[-3000:]}")
        sqs.delete_message(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"])
        with self.lock:
            self.invocations.append(out)
        return True

    def drain(self, st: Any) -> None:
        def worker() -> None:
            while self._one(st):
                pass

        while True:
            with ThreadPoolExecutor(self.parallel) as pool:
                for f in [pool.submit(worker) for _ in range(self.parallel)]:
                    f.result()
            if self.cloud.depth(st.name) == 0:
                return
            time.sleep(0.2)

    def run(self) -> None:
        from dqad.topology import STAGES

        for _ in range(3):  # the trainer's job-state event comes back to the trainer's own queue
            for st in STAGES:
                self.drain(st)
            if all(self.cloud.depth(st.name) == 0 for st in STAGES):
                return


def measure(series: int, max_rows: int | None, parallel: int) -> dict:
    import pyarrow.parquet as pq

    from dqad.storage import Storage
    from dqad.topology import stage
    from dqad_dev.loadtest import moto_server
    from dqad_dev.local import LocalCloud

    t0 = time.perf_counter()
    table = generate(series)
    rows = table.num_rows
    with moto_server(own_process=True), LocalCloud(f"scale{series}", start_moto=False) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        path = OUT / f"scale-{series}.parquet"
        OUT.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        del table
        storage.put_file(storage.uri(f"sources/{DATASET}/metrics.parquet"), path)
        path.unlink()
        storage.put_bytes(storage.uri("config/datasets.toml"), catalog(cloud.dep.bucket, max_rows).encode())
        generated_s = time.perf_counter() - t0
        payload = {
            "log_id": f"scale-{series}",
            "job_name": "dq_metrics_daily",
            "table_name": "dw.metrics_daily",
            "loaded_at": END.replace(tzinfo=UTC).isoformat(),
            "status": "SUCCESS",
        }
        [run_id] = cloud.invoke(stage("fetcher"), "aurora", payload)["runs"]
        pump = Pump(cloud, parallel)
        started = time.perf_counter()
        pump.run()
        wall = time.perf_counter() - started
        events = sorted(u.rsplit("/", 1)[-1] for u in storage.list_uris(storage.uri(f"events/{run_id}/")))
        scored = storage.get_json(storage.uri(f"events/{run_id}/AnomaliesScored.json"))["detail"]
        dlq = sum(len(cloud.dead_letters(s)) for s in cloud.dep.dlq_urls)
    per_stage: dict[str, dict] = {}
    for inv in pump.invocations:
        s = per_stage.setdefault(
            inv["stage"], {"invocations": 0, "seconds": 0.0, "max_seconds": 0.0, "peak_rss_mb": 0.0}
        )
        s["invocations"] += 1
        s["seconds"] += inv["seconds"]
        s["max_seconds"] = max(s["max_seconds"], inv["seconds"])
        s["peak_rss_mb"] = max(s["peak_rss_mb"], inv["peak_rss_mb"])
        if inv["stage"] == "trainer" and inv["children_peak_rss_mb"] > 0:
            s["job_peak_rss_mb"] = max(s.get("job_peak_rss_mb", 0.0), inv["children_peak_rss_mb"])
    shards = sum(1 for e in events if e.startswith("DatasetFetched-shard")) or 1
    peak = max(
        [inv["peak_rss_mb"] for inv in pump.invocations] + [per_stage.get("trainer", {}).get("job_peak_rss_mb", 0)]
    )
    return {
        "series": series,
        "rows": rows,
        "history_rows": rows - series,
        "max_rows": max_rows,
        "shards": shards,
        "parallel": parallel,
        "wall_s": wall,
        "generate_s": generated_s,
        "stages": per_stage,
        "invocations": pump.invocations,
        "peak_rss_mb": peak,
        "peak_ok": peak <= PEAK_TARGET_MB,
        "scored_rows": scored["scored_rows"],
        "anomaly_count": scored["anomaly_count"],
        "notified": "NotificationSent.json" in events,
        "dlq_messages": dlq,
    }


def shape_measurements(series: list[int]) -> dict[str, list[dict]]:
    """One labeler and one scorer invocation's own work on the real shape (``bench.stages``), each
    in a fresh interpreter: the scorer against its pyarrow floor, the labeler's rows per second."""
    from bench.run import measure as stage_measure

    return {
        "scorer": [stage_measure("scorer_shape", str(n)) for n in series],
        "labeler": [stage_measure("labeler_shape", str(n)) for n in series],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--max-rows", type=int, default=None, help="the dataset's [shards] max_rows (default: default)")
    parser.add_argument("--parallel", type=int, default=2, help="invocations of one stage at once")
    parser.add_argument("--record", action="store_true", help="write bench/results/scale.json")
    parser.add_argument(
        "--shape", type=int, nargs="*", default=None, metavar="SERIES",
        help="also measure one labeler / scorer invocation's own work at these series counts (bench.stages)",
    )  # fmt: skip
    parser.add_argument("--invoke", metavar="STAGE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.invoke:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        print(json.dumps(invoke(args.invoke)))
        return 0
    from bench.recorded import provenance, save_result

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    started = provenance()
    results = []
    for n in args.series:
        r = measure(n, args.max_rows, args.parallel)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "invocations"}), flush=True)
    shape = shape_measurements(args.shape) if args.shape else {}
    command = "python -m bench.scale " + " ".join(str(n) for n in args.series)
    if args.shape:
        command += " --shape " + " ".join(str(n) for n in args.shape)
    doc = {"command": command, "sizes": results, "shape": shape}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({**started, "result": doc}, indent=1))
    if args.record:
        save_result("scale", doc, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
