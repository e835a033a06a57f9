"""Load and fault harness: many runs over many datasets, and the check that none was lost or doubled.

The promise under test (docs/operations.md): every load ends in exactly one visible outcome, a
``NotificationSent`` or a ``StageFailed``, and never in two emails. This module holds what the
load test, the fault tests, the bad-data tests and ``bench/load.py`` share:

* :func:`seed_datasets`: ``datasets`` small synthetic datasets (``dqad_dev.synth.generate``) in one
  catalog, each with its own source file and trigger table, and the Aurora payloads of their last
  ``loads_per_dataset`` loads (one run each);
* :func:`outcomes` / :func:`emails_by_run`: what each run ended in, read from ``events/<run_id>/``
  in S3 and from the SNS messages delivered to the deployment's inbox subscription;
* :func:`copy_champion`: reuse one trained model for other datasets (the chain is under test, not
  training; the trainer reuses a fresh champion exactly as it does on AWS);
* :class:`MotoServer` + :class:`StageWorkers` + :func:`run_load`: the deployment on moto's
  ``ThreadedMotoServer`` (real HTTP, every boto3 client pointed at it with ``AWS_ENDPOINT_URL``)
  with one worker thread per stage pumping its queue into the real handler with Lambda-shaped SQS
  events, concurrently, as five Lambda functions would.

Nothing here sleeps a fixed time to wait for a result: waits poll with a deadline.
"""

from __future__ import annotations

import io
import json
import os
import socket
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dqad.datasets import long_format_dataset, render_catalog
from dqad.detect.model_format import MODEL_FILE
from dqad.signing import secret_keys, sign_model_ref
from dqad.storage import Storage
from dqad.topology import NOTIFICATION_SENT, STAGE_FAILED, STAGES, Stage
from dqad_dev.local import LocalCloud, load_entry_point, sqs_event

# A retraining policy that never fires on label-rate drift: the load test measures the chain, and the
# history of an earlier load of a dataset is shorter than a later one's, which moves the label rate.
LOAD_TRAINER = {"drift_threshold": 1000000}


@dataclass(frozen=True)
class Load:
    """One ETL load: the Aurora trigger's payload for one dataset's metrics job."""

    dataset: str
    payload: dict


def load_dataset(name: str, bucket: str, *, history_days: float, source: dict | None = None) -> dict:
    """One load-test dataset (catalog entry): its own trigger table and, unless given, its own source file."""
    return long_format_dataset(
        description=f"load-test dataset {name}",
        context=["job_name", "is_rerun", "loaded_at"],
        history_days=history_days,
        new_window_hours=20,
        trigger_tables=[f"dq.{name}"],
        source=source or {"kind": "file", "path": f"s3://{bucket}/sources/{name}/metrics.parquet"},
        trainer=LOAD_TRAINER,
    )


def load_payloads(name: str, metrics: Any, loads: int) -> list[Load]:
    """The Aurora payloads of the last ``loads`` daily loads of a dataset (one run each).

    A load's ``loaded_at`` is the start of its dataset's latest table load that day, so the 20-hour
    new-data window holds exactly that day's loads.
    """
    import pandas as pd

    by_day = metrics.groupby(metrics["load_ts"].dt.date)["load_ts"].max().sort_index()
    out = []
    for day, last in list(by_day.items())[-loads:]:
        loaded_at = pd.Timestamp(last).tz_localize("UTC")
        out.append(
            Load(
                name,
                {
                    "log_id": f"{name}-{day:%Y%m%d}",
                    "job_name": f"dq_{name}",
                    "table_name": f"dq.{name}",
                    "loaded_at": loaded_at.isoformat(),
                    "status": "SUCCESS",
                    "source": "aurora-trigger",
                },
            )
        )
    return out


def seed_datasets(
    storage: Storage,
    *,
    datasets: int = 20,
    tables: int = 4,
    days: int = 60,
    loads_per_dataset: int = 5,
    seed: int = 0,
    prefix: str = "ds",
) -> list[Load]:
    """Write ``datasets`` sources and one catalog; return the loads, interleaved across datasets.

    Every dataset has the same generated numbers (one ``seed``) under its own name, source and
    trigger, so one trained model fits all of them (see :func:`copy_champion`).
    """
    from dqad_dev.synth import generate

    data = generate(tables=tables, days=days, seed=seed, end="2026-11-02", final_load_incidents=(("empty", 1),))
    buf = io.BytesIO()
    data.metrics.to_parquet(buf, index=False)
    blob = buf.getvalue()
    names = [f"{prefix}{i:03d}" for i in range(datasets)]
    catalog = {}
    per_dataset = []
    for name in names:
        storage.put_bytes(storage.uri(f"sources/{name}/metrics.parquet"), blob)
        catalog[name] = load_dataset(name, storage.bucket, history_days=days + 10)
        per_dataset.append(load_payloads(name, data.metrics, loads_per_dataset))
    storage.put_bytes(storage.uri("config/datasets.toml"), render_catalog(catalog).encode())
    return [load for round_ in zip(*per_dataset, strict=True) for load in round_]


def copy_champion(storage: Storage, source: str, targets: list[str], keys: list[bytes]) -> None:
    """Make ``source``'s champion (pointer, sha256, metrics) the champion of each target dataset.

    A model reference is signed for one dataset, so each copy is signed again with the deployment's
    key, as the trainer would when promoting it there (a copied signature is refused).
    """
    champion = storage.get_json(storage.uri(f"models/{source}/champion.json"))
    for name in targets:
        if name != source:
            signature = sign_model_ref(keys, name, champion["uri"], champion["sha256"], champion["version"])
            storage.put_json(storage.uri(f"models/{name}/champion.json"), {**champion, "signature": signature})


# -- outcomes --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one run left in ``events/<run_id>/``."""

    run_id: str
    events: list[str]

    @property
    def failures(self) -> list[str]:
        return [e for e in self.events if e.startswith(STAGE_FAILED)]

    @property
    def notified(self) -> bool:
        return f"{NOTIFICATION_SENT}.json" in self.events

    @property
    def kind(self) -> str:
        """``notified`` | ``failed`` (one StageFailed) | ``lost`` (neither) | ``ambiguous`` (several failures)."""
        if len(self.failures) > 1:
            return "ambiguous"
        if self.failures:
            return "failed"
        return "notified" if self.notified else "lost"


def outcomes(storage: Storage, run_ids: list[str]) -> dict[str, Outcome]:
    """Every run's stored events, by run id (listed once under ``events/``)."""
    found: dict[str, list[str]] = defaultdict(list)
    for uri in storage.list_uris(storage.uri("events/")):
        run_id, name = uri.rsplit("/", 2)[-2:]
        found[run_id].append(name)
    return {r: Outcome(r, sorted(found.get(r, []))) for r in run_ids}


def emails_by_run(messages: list[dict]) -> dict[str, Counter]:
    """SNS messages (as delivered to an SQS subscription) counted per run id and kind (alert, operator, ...)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for m in messages:
        attrs = m.get("MessageAttributes", {})
        run_id = attrs.get("run_id", {}).get("Value", "?")
        counts[run_id][attrs.get("kind", {}).get("Value", "?")] += 1
    return counts


def produced_at(storage: Storage, run_id: str, detail_type: str = NOTIFICATION_SENT) -> datetime:
    return datetime.fromisoformat(
        storage.get_json(storage.uri(f"events/{run_id}/{detail_type}.json"))["detail"]["produced_at"]
    )


# -- comparing runs --------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run must reproduce under faults: its flagged points, its scores file, its email count."""

    anomalies: set[tuple[str, str]]
    scores_sha256: str
    emails: int


def start_loads(cloud: LocalCloud, loads: list[Load]) -> list[str]:
    """Insert each load's log row (the fetcher's Aurora entry point); return the run ids in order."""
    from dqad.topology import stage

    return [r for ld in loads for r in cloud.invoke(stage("fetcher"), "aurora", ld.payload)["runs"]]


def run_result(storage: Storage, run_id: str, emails: int) -> RunResult:
    from dqad.contract import DataRef

    event = storage.get_json(storage.uri(f"events/{run_id}/AnomaliesScored.json"))["detail"]
    ref = DataRef(**event["scores"])
    scores = storage.read_parquet(ref)
    flagged = scores[scores["is_anomaly"].astype(bool)]
    pairs = {(s, str(t)) for s, t in zip(flagged["series"], flagged["timestamp"], strict=True)}
    return RunResult(pairs, ref.sha256, emails)


def run_results(cloud: LocalCloud, storage: Storage, run_ids: list[str]) -> dict[str, RunResult]:
    """Each run's result; the alert emails are counted from (and drained out of) the inbox."""
    mail = emails_by_run(cloud.inbox())
    return {r: run_result(storage, r, mail.get(r, Counter())["alert"]) for r in run_ids}


# -- moto over HTTP --------------------------------------------------------------------------------
#: Credentials that can only ever reach the local server (requests must be signed with something).
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server(*, own_process: bool = False) -> Iterator[str]:
    """moto's threaded HTTP server on a free local port; every boto3 client in this process uses it.

    ``AWS_ENDPOINT_URL`` (honoured by boto3 >= 1.28 for every service) is set for the duration, and
    the stage runtimes cached per settings are dropped on both ends so no client outlives its server.
    By default the server is a ``ThreadedMotoServer`` in this process. ``own_process=True`` runs the
    same threaded server (``python -m moto.server``) in a child process, as AWS would be: the stage
    workers and the "cloud" then stop sharing one interpreter lock, which otherwise caps a long
    load benchmark at one core and measures the lock rather than the chain.
    """
    import logging

    from moto.server import ThreadedMotoServer

    from dqad import stage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server: Any = (
        _MotoProcess(port) if own_process else ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    )
    server.start()
    env = {"AWS_ENDPOINT_URL": endpoint, **FAKE_CREDENTIALS}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stage._runtime_for.cache_clear()
    try:
        yield endpoint
    finally:
        stage._runtime_for.cache_clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


class _MotoProcess:
    """``python -m moto.server`` in a child process, with ThreadedMotoServer's start/stop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: Any = None

    def start(self, deadline_s: float = 60.0) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + deadline_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.stop()
                    raise RuntimeError(f"moto server on port {self.port} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a stuck server must not hang the harness
                self.proc.kill()


class StageWorkers:
    """One thread per stage: receive up to 10 messages, call the real handler, delete what succeeded.

    Exactly what Lambda's SQS event source mapping does with ``ReportBatchItemFailures``; records
    reported as failed stay in the queue and come back after the visibility timeout (then, after
    ``maxReceiveCount``, SQS moves them to the DLQ).
    """

    def __init__(self, cloud: LocalCloud, stages: tuple[Stage, ...] = STAGES, wait_s: int = 1) -> None:
        self.cloud = cloud
        self.stages = stages
        self.wait_s = wait_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.batches: Counter = Counter()
        self.failed_records: Counter = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.handlers = {st.name: load_entry_point(st.handler) for st in stages}  # import in one thread

    def _work(self, st: Stage) -> None:
        sqs = self.cloud.client("sqs")
        url = self.cloud.dep.queue_urls[st.name]
        arn = self.cloud._queue_arn(url)
        handler = self.handlers[st.name]
        while not self._stop.is_set():
            try:
                msgs = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_s, AttributeNames=["All"]
                ).get("Messages", [])
                if not msgs:
                    continue
                t0 = time.perf_counter()
                result = handler(sqs_event(msgs, arn), None) or {}
                self.seconds[st.name] += time.perf_counter() - t0
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                self.batches[st.name] += 1
                self.failed_records[st.name] += len(failed)
                done = [m for m in msgs if m["MessageId"] not in failed]
                if done:
                    sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                    )
            except BaseException as exc:  # a worker must not die silently: the test reads .errors
                self.errors.append(exc)
                if self._stop.wait(0.2):
                    return

    def __enter__(self) -> StageWorkers:
        for st in self.stages:
            t = threading.Thread(target=self._work, args=(st,), name=f"dqad-worker-{st.name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def wait_for(predicate: Any, deadline_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll ``predicate()`` until it is true; TimeoutError naming ``what`` after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not done after {deadline_s:.0f}s")
        time.sleep(interval_s)


@dataclass
class LoadReport:
    runs: int
    datasets: int
    wall_s: float
    throughput_runs_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    notified: int
    failed: int
    lost: int
    ambiguous: int
    duplicate_emails: int
    emails: int
    operator_emails: int
    trained_models: int
    dlq_messages: dict[str, int]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    worker_errors: list[str] = field(default_factory=list)
    lost_runs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def run_load(
    runs: int = 100,
    *,
    datasets: int = 20,
    tables: int = 4,
    days: int = 60,
    deadline_s: float = 600.0,
    prefix: str = "dqad-load",
    server_process: bool = False,
) -> LoadReport:
    """Push ``runs`` LoadCompleted (via the Aurora entry point) through the chain on ThreadedMotoServer.

    The first load of the first dataset trains the model (a real local training job); its champion
    is then given to every other dataset, and the remaining ``runs - 1`` loads are inserted with
    the five stage workers running. Latency is from each load's Aurora entry call to its
    ``NotificationSent.produced_at``. ``server_process`` runs moto in its own process (see
    :func:`moto_server`).
    """
    from datetime import UTC

    from dqad.topology import stage

    loads_per_dataset = -(-runs // datasets)
    with moto_server(own_process=server_process), LocalCloud(prefix, start_moto=False) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        loads = seed_datasets(storage, datasets=datasets, tables=tables, days=days, loads_per_dataset=loads_per_dataset)
        loads = loads[:runs]
        fetcher = stage("fetcher")
        started: dict[str, float] = {}
        run_ids: list[str] = []
        with StageWorkers(cloud) as workers:
            first = loads[0]
            (run0,) = cloud.invoke(fetcher, "aurora", first.payload)["runs"]
            run_ids.append(run0)
            wait_for(lambda: outcomes(storage, [run0])[run0].kind != "lost", deadline_s, "the training run")
            keys = secret_keys(cloud.client("secretsmanager"), cloud.dep.model_signing_secret_arn)
            copy_champion(storage, first.dataset, sorted({ld.dataset for ld in loads}), keys)
            t0 = time.time()
            for load in loads[1:]:
                now = time.time()
                for r in cloud.invoke(fetcher, "aurora", load.payload)["runs"]:
                    started[r] = now
                    run_ids.append(r)

            def finished() -> bool:
                # queue depths first: five cheap calls, while listing every run's events is O(runs) on
                # the same moto server the workers are using, so it only runs once the queues drain
                return all(cloud.depth(st.name) == 0 for st in STAGES) and all(
                    o.kind != "lost" for o in outcomes(storage, run_ids).values()
                )

            wait_for(finished, deadline_s, f"{len(run_ids)} runs", interval_s=max(0.5, len(run_ids) / 500))
            wall = time.time() - t0
        final = outcomes(storage, run_ids)
        kinds = Counter(o.kind for o in final.values())
        latencies = [
            produced_at(storage, r).astimezone(UTC).timestamp() - started[r]
            for r in started
            if final[r].kind == "notified"
        ]
        mail = emails_by_run(cloud.inbox())
        dlq = {st.name: len(cloud.dead_letters(st.name)) for st in STAGES}
        trained = sum(1 for u in storage.list_uris(storage.uri("models/")) if u.endswith(f"/{MODEL_FILE}"))
        return LoadReport(
            runs=len(run_ids),
            datasets=len({ld.dataset for ld in loads}),
            wall_s=round(wall, 2),
            throughput_runs_per_s=round(len(started) / wall, 2) if wall else float("nan"),
            latency_p50_s=round(_percentile(latencies, 0.50), 2),
            latency_p95_s=round(_percentile(latencies, 0.95), 2),
            latency_max_s=round(max(latencies, default=float("nan")), 2),
            notified=kinds["notified"],
            failed=kinds["failed"],
            lost=kinds["lost"],
            ambiguous=kinds["ambiguous"],
            duplicate_emails=sum(max(0, c["alert"] - 1) + max(0, c["operator"] - 1) for c in mail.values()),
            emails=sum(c["alert"] for c in mail.values()),
            operator_emails=sum(c["operator"] for c in mail.values()),
            trained_models=trained,
            dlq_messages=dlq,
            stage_seconds={k: round(v, 2) for k, v in workers.seconds.items()},
            worker_errors=[f"{type(e).__name__}: {e}" for e in workers.errors][:20],
            lost_runs=[r for r, o in final.items() if o.kind == "lost"],
        )


def main() -> None:  # pragma: no cover - convenience: python -m dqad_dev.loadtest [runs]
    import sys

    print(json.dumps(run_load(int(sys.argv[1]) if len(sys.argv) > 1 else 100).as_dict(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
