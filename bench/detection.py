"""Benchmark: detection quality of dqad vs the two plain baselines (issue 4 acceptance).

    .venv/bin/python bench/detection.py                   # synthetic seeds 0,1,2 + nab-dev, both modes
    .venv/bin/python bench/detection.py --seeds 0 --skip-nab

Runs ``dqad.backtest.run_backtest`` on
- the synthetic data-quality generator (``dqad.synth``: 20 tables x 180 days, several seeds), with its
  holiday calendar configured and load groups taken from the series names (table/metric); its
  incident windows are used only to measure (no human feedback: the labeler's rules are the truth);
- ``../shared/data/nab-dev`` without labels (windows only measure), and with the history's windows
  given as human feedback (NAB convention: the first 15% is history).
Prints one table per run and writes everything to ``bench/out/detection.json``.
Targets: synthetic event-level F1 >= 0.85 and >= 3x the best baseline, no alarm on holidays or
month-end surges; nab-dev event-level F1 >= 0.45 unlabelled, higher with labels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dqad.backtest import read_series_file, run_backtest
from dqad.detect import DetectorConfig, LabelerConfig
from dqad.detect._util import holiday_flag, month_end_flag
from dqad.detect.evaluate import in_window

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab-dev"
OUT = Path(__file__).resolve().parent / "out"


def _summary(name: str, metrics: dict) -> dict:
    row = {"run": name}
    for k in ("dqad", "zscore", "iforest"):
        if k in metrics:
            row[f"{k}_event_f1"] = round(metrics[k]["event"]["f1"], 3)
            row[f"{k}_point_f1"] = round(metrics[k]["point"]["f1"], 3)
    row["elapsed_s"] = round(metrics["elapsed_s"], 1)
    return row


def synthetic(seed: int, tables: int, days: int) -> dict:
    from dqad.synth import generate

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
    me = month_end_flag(t, dcfg.month_end_days, d.holidays)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tables", type=int, default=20)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--skip-nab", action="store_true")
    ap.add_argument("--skip-synth", action="store_true")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": {}}
    rows = []
    if not args.skip_synth:
        for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
            r = synthetic(seed, args.tables, args.days)
            results["runs"][f"synthetic-seed{seed}"] = r
            rows.append(_summary(f"synthetic seed {seed}", r["metrics"]))
    if not args.skip_nab:
        for lab in (False, True):
            r = nab(lab)
            results["runs"][f"nab-{'labels' if lab else 'nolabels'}"] = r
            rows.append(_summary(f"nab-dev {'with' if lab else 'no'} labels", r["metrics"]))
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
