"""Benchmark: the model file, joblib (a pickle) against ``model.dqad`` (dqad.detect.model_format).

    .venv/bin/python -m bench.model_format           # writes bench/out/model_format.json
    .venv/bin/python -m bench.run --only model_format

Two bundles as the trainer makes them, from the benchmark generator's 10,000 series (2,000 tables ×
5 metrics, 120 daily loads, labelled by the labeler): the **robust** bundle (the default model; its
per-series calibration holds a threshold for each of the 10,000 series) and a **random forest**
(``make_estimator``'s forest, 50 trees, fitted on 50,000 of those rows as the trainer subsamples
them, with the same calibration).

Per bundle and format (the two formats measured in turns, so that a shared machine's load falls
on both alike):

* size of the file, and the time to write it;
* load: from the file's bytes in memory, median of 21 loads in this process (the
  scorer reads the bytes once per message, after the sha256 check);
* cold load: the first load in a fresh interpreter that has already imported ``dqad.detect.model``
  (which the scorer needs whatever the format), so what the format's own imports cost is counted
  (median of 3, with bytecode compiled as in the scorer's image);
* scoring: ``predict_score`` + ``decide`` (the per-series thresholds) on the last 10 loads of every
  series, 100,000 rows, median of 15, in rows/s;
* whether the scores are identical to the bundle's before it was written. The forest's votes are
  summed by threads in any order (``n_jobs=-1``), so it is compared with one thread, and the largest
  difference with all threads is shown too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "model_format.json"
TABLES, DAYS, SCORED_LOADS, FOREST_ROWS = 2000, 120, 10, 50_000
LOADS, SCORINGS = 21, 15


def _dump(fmt: str, bundle: Any) -> bytes:
    if fmt == "joblib":
        import joblib

        buf = io.BytesIO()
        joblib.dump(bundle, buf)
        return buf.getvalue()
    from dqad.detect import model_format

    return model_format.dumps(bundle)


def _load(fmt: str, data: bytes) -> Any:
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    from dqad.detect import model_format

    return model_format.loads(data)


def cold_load(fmt: str, path: str) -> float:
    """Seconds of the first load in a fresh interpreter (``dqad.detect.model`` imported before)."""
    code = (
        "import time, sys; import dqad.detect.model; from pathlib import Path; from bench.model_format import _load; "
        f"data = Path({path!r}).read_bytes(); t = time.perf_counter(); _load({fmt!r}, data); "
        "print(time.perf_counter() - t)"
    )
    # with bytecode, as the scorer's image has it (its Dockerfile compiles at build time): the first,
    # unmeasured run writes what PYTHONDONTWRITEBYTECODE would otherwise have each run compile again
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs = []
    for _ in range(4):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env
        )
        runs.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(runs[1:])


def bundles() -> tuple[dict[str, Any], Any, Any]:
    """The robust and the forest bundle, and the scored rows' features and frame."""
    import dataclasses

    import numpy as np

    from bench.stages import canonical
    from dqad.detect.config import DetectorConfig, LabelerConfig
    from dqad.detect.features import build_features
    from dqad.detect.labeling import label_history
    from dqad.detect.model import _fit, make_estimator, train_candidates

    frame, holidays = canonical(TABLES * 5 * DAYS, days=DAYS)
    labeled = label_history(frame, None, LabelerConfig(holidays=holidays))
    cfg = DetectorConfig(holidays=holidays)
    robust = train_candidates(labeled, dataclasses.replace(cfg, candidates=())).bundle
    X = build_features(labeled, cfg)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(X), min(FOREST_ROWS, len(X)), replace=False))
    y = labeled["label"].to_numpy().astype(int)
    forest = make_estimator("random_forest", cfg, len(rows))
    _fit(forest, "random_forest", X.iloc[rows], y[rows], np.ones(len(rows)))
    rf = dataclasses.replace(robust, estimator=forest, feature_names=list(X.columns), kind="random_forest")
    last = labeled.groupby("series", observed=True).cumcount(ascending=False) < SCORED_LOADS
    scored = last.to_numpy()
    return {"robust": robust, "random_forest": rf}, X[scored], labeled.loc[scored, ["series", "timestamp"]]


def _interleaved(fns: dict[str, Any], rounds: int) -> dict[str, float]:
    """Median seconds of each function, run in turns (a shared machine's load drifts; turns share it)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def measure() -> dict[str, Any]:
    import numpy as np

    made, X, frame = bundles()
    formats = ("joblib", "dqad")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dqad-model-format-") as tmp:
        for kind, bundle in made.items():
            results[kind] = {"calibrated_series": len(bundle.calibration.thresholds), "scored_rows": len(X)}
            reference = bundle.predict_score(X)
            data = {f: _dump(f, bundle) for f in formats}
            write_s = _interleaved({f: lambda f=f, b=bundle: _dump(f, b) for f in formats}, 3)
            load_s = _interleaved({f: lambda f=f, d=data[f]: _load(f, d) for f in formats}, LOADS)
            loaded = {f: _load(f, data[f]) for f in formats}
            steps = {f: lambda b=loaded[f]: b.decide(b.predict_score(X), X, frame) for f in formats}
            score_s = _interleaved(steps, SCORINGS)
            for fmt in formats:
                path = Path(tmp) / f"{kind}.{fmt}"
                path.write_bytes(data[fmt])
                b = loaded[fmt]
                threads = b.predict_score(X)
                if kind == "random_forest":
                    bundle.estimator.n_jobs = b.estimator.n_jobs = 1
                identical = bool(np.array_equal(b.predict_score(X), bundle.predict_score(X)))
                if kind == "random_forest":
                    bundle.estimator.n_jobs = b.estimator.n_jobs = -1
                results[kind][fmt] = r = {
                    "bytes": len(data[fmt]),
                    "write_ms": write_s[fmt] * 1000,
                    "load_ms": load_s[fmt] * 1000,
                    "cold_load_ms": cold_load(fmt, str(path)) * 1000,
                    "score_rows_per_s": len(X) / score_s[fmt],
                    "identical": identical,
                    "max_abs_diff_threads": float(np.max(np.abs(threads - reference))),
                }
                print(
                    f"{kind:>13} {fmt:>6}: {r['bytes'] / 1024:8.0f} KiB, write {r['write_ms']:6.1f} ms, "
                    f"load {r['load_ms']:6.1f} ms (cold {r['cold_load_ms']:6.1f} ms), "
                    f"{r['score_rows_per_s']:>11,.0f} rows/s, identical {identical}",
                    flush=True,
                )
    return {"machine": f"{platform.machine()}, Python {platform.python_version()}", "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    report = measure()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
