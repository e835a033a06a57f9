"""Benchmark: detection quality of dqad vs the two plain baselines (targets in BENCHMARKS.md).

    .venv/bin/python -m bench.detection                   # synthetic seeds 0,1,2 + nab-dev, both modes
    .venv/bin/python -m bench.detection --seeds 0 --skip-nab

Runs ``dqad_dev.backtest.run_backtest`` on
- the synthetic data-quality generator (``dqad_dev.synth``: 20 tables x 180 days, several seeds), with its
  holiday calendar configured and load groups taken from the series names (table/metric); its
  incident windows are used only to measure (no human feedback: the labeler's rules are the truth);
- the scenario corpus (``dqad_dev.scenarios``: 17 benign families x 2 tables x 5 metrics, 270 days),
  with and without its history's windows as labels, scored per family with the worst family shown
  (``bench/results/scenarios.json``);
- ``../shared/data/nab-dev`` without labels (windows only measure), and with the history's windows
  given as human feedback (NAB convention: the first 15% is history).
Prints one table per run and writes everything to ``bench/out/detection.json`` (not tracked). When
nab-dev runs, its figures also go to the tracked ``bench/results/nab-dev.json`` (with the date and
the commit measured), because nab-dev is too slow for ``make bench`` and a fresh clone must still
show the last measurement. The synthetic seeds run in two processes (the benchmark machine has two
cores), and so do the two nab-dev modes; each run is the same single-process backtest as before.
Targets: synthetic event-level F1 >= 0.85 and >= 3x the best baseline, no alarm on holidays or
month-end surges; nab-dev event-level F1 >= 0.45 unlabelled, higher with labels.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from bench.recorded import provenance, save_result
from dqad.detect import DetectorConfig, LabelerConfig
from dqad.detect.calendar_effects import MONTH_END, calendar_categories
from dqad.detect.vectorised import holiday_flag
from dqad_dev.backtest import DETECTORS, read_series_file, run_backtest
from dqad_dev.evaluate import in_window

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-dev"
OUT = Path(__file__).resolve().parent / "out"


def _summary(name: str, metrics: dict) -> dict:
    row = {"run": name}
    for k in ("dqad", "zscore", "iforest"):
        if k in metrics:
            row[f"{k}_event_f1"] = round(metrics[k]["event"]["f1"], 3)
            row[f"{k}_point_f1"] = round(metrics[k]["point"]["f1"], 3)
    for k, _ in DETECTORS:  # the peers' event F1 too: point F1 says little for a windowed corpus
        if k in metrics and f"{k}_event_f1" not in row:
            row[f"{k}_event_f1"] = round(metrics[k]["event"]["f1"], 3)
    row["elapsed_s"] = round(metrics["elapsed_s"], 1)
    return row


def synthetic(seed: int, tables: int, days: int) -> dict:
    from dqad_dev.synth import generate

    d = generate(tables=tables, days=days, seed=seed)
    frame = d.series_frame()
    windows = d.windows_frame()
    lcfg = LabelerConfig(holidays=d.holidays)
    dcfg = DetectorConfig(holidays=d.holidays)
    res = run_backtest(frame, windows, use_labels_as_feedback=False, labeler_cfg=lcfg, detector_cfg=dcfg,
                       group_by_prefix=True, out_dir=OUT / f"synth-{seed}")
    sc = res.scores
    t = pd.DatetimeIndex(sc["timestamp"])
    outside = in_window(sc, windows) < 0
    hol = holiday_flag(t, d.holidays)
    me = calendar_categories(t, d.holidays)[:, list(MONTH_END)].any(axis=1)  # every month-end convention
    false_alarms = {
        "holiday": int((sc["is_anomaly"].to_numpy() & hol & outside).sum()),
        "month_end": int((sc["is_anomaly"].to_numpy() & me & outside).sum()),
        "holiday_points": int(hol.sum()),
        "month_end_points": int(me.sum()),
    }
    print(f"\n== synthetic seed {seed} ({tables} tables x {days} days, {len(windows)} incident windows)")
    print(res.table)
    print(f"false alarms on holidays: {false_alarms['holiday']} / {false_alarms['holiday_points']} points; "
          f"on month ends: {false_alarms['month_end']} / {false_alarms['month_end_points']} points")
    return {"metrics": {k: v for k, v in res.metrics.items() if k != "trainings"},
            "trainings": res.trainings, "special_day_false_alarms": false_alarms}


def nab(with_labels: bool) -> dict:
    data = read_series_file(NAB / "metrics.csv.gz")
    windows = read_series_file(NAB / "windows.csv")
    res = run_backtest(data, windows, use_labels_as_feedback=with_labels,
                       out_dir=OUT / f"nab-{'labels' if with_labels else 'nolabels'}")
    print(f"\n== nab-dev, {'history windows as labels' if with_labels else 'no labels'}")
    print(res.table)
    return {"metrics": {k: v for k, v in res.metrics.items() if k != "trainings"}, "trainings": res.trainings}


def scenarios(seed: int, with_labels: bool) -> dict:
    """The scenario corpus (``dqad_dev.scenarios``), event F1 per benign family and the worst family."""
    from dqad_dev.corpus_eval import evaluate_corpus
    from dqad_dev.scenarios import generate_corpus

    report = evaluate_corpus(generate_corpus(seed=seed), use_labels=with_labels)
    print(f"\n== scenario corpus seed {seed}, {'history windows as labels' if with_labels else 'no labels'}")
    print(report.table())
    return {**report.to_dict(), "elapsed_s": report.backtest_metrics["elapsed_s"]}


def write_scenario_results(runs: dict[str, dict], started: dict[str, str]) -> Path:
    """The tracked scenario-corpus record (``bench/results/scenarios.json``): per run, per family."""
    seeds = ",".join(sorted({name.split("-", 1)[0].removeprefix("seed") for name in runs}, key=int))
    command = f".venv/bin/python -m bench.detection --scenario-seeds {seeds}"
    return save_result("scenarios", {"command": command, "runs": runs}, started)


def _captured(fn_args: tuple) -> tuple[dict, str]:
    """Run ``fn(*args)`` in a worker process, returning its result and what it printed."""
    fn, *args = fn_args
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        r = fn(*args)
    return r, buf.getvalue()


def _run_all(jobs: list[tuple], workers: int) -> list[dict]:
    """Jobs in up to ``workers`` processes; output printed in job order, as a serial run prints it."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*args) for fn, *args in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as ex:
        out = []
        for r, text in ex.map(_captured, jobs):
            print(text, end="")
            out.append(r)
    return out


def write_nab_results(runs: dict, started: dict[str, str]) -> Path:
    """The tracked nab-dev record (``bench/results/nab-dev.json``): per mode, dqad's and the baselines' metrics,
    and every detector's event F1 (``event_f1``; records made before it have only dqad's and the baselines')."""
    modes = {}
    for mode in ("nolabels", "labels"):
        r = runs.get(f"nab-{mode}")
        if r is None:
            continue
        m = r["metrics"]
        modes[mode] = {
            "dqad_event": m["dqad"]["event"],
            "dqad_point_f1": m["dqad"]["point"]["f1"],
            "zscore_event_f1": m["zscore"]["event"]["f1"],
            "iforest_event_f1": m["iforest"]["event"]["f1"],
            "event_f1": {k: m[k]["event"]["f1"] for k, _ in DETECTORS if k in m},
            "alarms": m["alarms"],
            "elapsed_s": m["elapsed_s"],
        }
    result = {
        "command": ".venv/bin/python -m bench.detection",
        "targets": {"nolabels_event_f1_min": 0.45, "labels": "event F1 higher than nolabels"},
        "modes": modes,
    }
    return save_result("nab-dev", result, started)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tables", type=int, default=20)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--skip-nab", action="store_true")
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--scenario-seeds", default="0", dest="scenario_seeds",
                    help="seeds of the scenario corpus (per-family F1, with and without labels); '' skips it")
    ap.add_argument("--workers", type=int, default=2, help="processes for the seeds / nab-dev modes")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": {}}
    rows = []
    if not args.skip_synth:
        t0 = time.perf_counter()
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        done = _run_all([(synthetic, seed, args.tables, args.days) for seed in seeds], args.workers)
        for seed, r in zip(seeds, done, strict=True):
            results["runs"][f"synthetic-seed{seed}"] = r
            rows.append(_summary(f"synthetic seed {seed}", r["metrics"]))
        results["synthetic_wall_s"] = time.perf_counter() - t0
        print(f"\nsynthetic seeds took {results['synthetic_wall_s']:.0f} s (wall, {args.workers} processes)")
    scenario_seeds = [int(x) for x in args.scenario_seeds.split(",") if x.strip()]
    if scenario_seeds:
        started = provenance()
        jobs = [(scenarios, sd, lab) for sd in scenario_seeds for lab in (False, True)]
        done = _run_all(jobs, args.workers)
        runs = {f"seed{sd}-{'labels' if lab else 'nolabels'}": r for (_, sd, lab), r in zip(jobs, done, strict=True)}
        results["runs"].update({f"scenarios-{k}": v for k, v in runs.items()})
        for k, r in runs.items():
            rows.append({"run": f"scenarios {k}", "dqad_event_f1": round(r["overall"]["dqad"]["f1"], 3),
                         "zscore_event_f1": round(r["overall"]["zscore"]["f1"], 3),
                         "iforest_event_f1": round(r["overall"]["iforest"]["f1"], 3),
                         "dqad_worst_family_f1": round(r["worst"]["dqad"]["f1"], 3),
                         "elapsed_s": round(r["elapsed_s"], 1)})
        print(f"written {write_scenario_results(runs, started)}")
    if not args.skip_nab:
        started = provenance()
        done = _run_all([(nab, lab) for lab in (False, True)], args.workers)
        for lab, r in zip((False, True), done, strict=True):
            results["runs"][f"nab-{'labels' if lab else 'nolabels'}"] = r
            rows.append(_summary(f"nab-dev {'with' if lab else 'no'} labels", r["metrics"]))
        print(f"written {write_nab_results(results['runs'], started)}")
    summary = pd.DataFrame(rows)
    synth = summary[summary["run"].str.startswith("synthetic")]
    if len(synth):
        best_base = synth[["zscore_event_f1", "iforest_event_f1"]].max(axis=1)
        results["synthetic_mean_event_f1"] = float(synth["dqad_event_f1"].mean())
        results["synthetic_ratio_vs_best_baseline"] = float(
            (synth["dqad_event_f1"] / best_base.replace(0, np.nan)).min())
    results["summary"] = rows
    print("\n== summary (event-level and point-level F1)")
    print(summary.to_string(index=False))
    (OUT / "detection.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {OUT / 'detection.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
