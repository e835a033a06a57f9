"""N = 1,000 loads across 20 datasets through the chain on moto's threaded HTTP server.

Prints throughput and p50/p95 latency from the Aurora entry call (the INSERT's trigger) to each run's
NotificationSent, and the counts that must be zero: lost runs and duplicate emails (SNS messages per
run, read from an SQS subscription on the topics). All loads are inserted at once (a burst: the
latency includes queueing behind the other loads). moto runs in its own process, as AWS would, so
the five stage workers (threads of this process) do not share an interpreter lock with it.

It takes tens of minutes, so ``make bench`` does not run it: the result is written, with the date
and commit, to ``bench/results/load.json`` (tracked), and ``make bench`` shows that file in
BENCHMARKS.md. Usage: ``python -m bench.load [runs] [datasets]``.
"""

from __future__ import annotations

import json
import sys

from bench.recorded import provenance, save_result
from dqad_dev.loadtest import run_load


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    datasets = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    started = provenance()
    report = run_load(
        runs, datasets=datasets, tables=2, days=max(40, runs // datasets + 20), deadline_s=3600, server_process=True
    )
    path = save_result("load", report.as_dict(), started)
    print(
        f"{report.runs} runs / {report.datasets} datasets in {report.wall_s:.0f} s: "
        f"{report.throughput_runs_per_s:.2f} runs/s, latency p50 {report.latency_p50_s:.1f} s, "
        f"p95 {report.latency_p95_s:.1f} s; lost {report.lost}, duplicate emails {report.duplicate_emails}, "
        f"failed {report.failed}; written to {path}"
    )
    print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    main()
