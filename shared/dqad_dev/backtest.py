"""`dqad backtest`: replay a user's own history through the detector and report its precision.

Protocol (causal, as in production):
- the first ``train_fraction`` of each series is *history*; labels given by the user are used as
  human feedback on that part only (a complete labels file: history points outside its windows are
  human-confirmed normal);
- the rest is split into ``n_chunks`` consecutive blocks (by position within each series). For each
  block the labeler labels everything seen so far (human feedback on the first history only, rules
  elsewhere, exactly what the labeler stage would do with that history), the trainer retrains with
  champion/challenger, and the scorer scores the block's loads. Inside a block every point is
  scored from strictly earlier points only, so nothing from the future leaks into a score;
- the user's labels on the scored part are used only to measure, never to train.
The same split feeds the baselines (rolling 3-sigma z-score, per-series IsolationForest) and the peers'
methods (``dqad_dev.peers``: Elementary-style z-score with and without weekday seasonality, Deequ-style
OnlineNormal, anomstack's PCA + KNN on lag/difference features with and without its alert smoothing and
snooze), all from past points only; the two that train (IsolationForest, anomstack) fit on the history.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dqad.detect.config import DetectorConfig, LabelerConfig
from dqad.detect.holiday_calendar import holiday_dates
from dqad.detect.labeling import label_history
from dqad.detect.model import train_candidates
from dqad.detect.scoring import score_new
from dqad.detect.vectorised import normalise
from dqad.ports import ProgressCallback
from dqad_dev.evaluate import (
    event_metrics,
    iforest_baseline,
    in_window,
    point_metrics,
    points_to_windows,
    zscore_baseline,
)
from dqad_dev.peers import anomstack_lagdiff, anomstack_lagdiff_smoothed, deequ_online_normal, elementary_zscore

#: detectors of the backtest's table: (metrics key, name shown)
DETECTORS: tuple[tuple[str, str], ...] = (
    ("dqad", "dqad"), ("zscore", "3-sigma"), ("iforest", "iforest"), ("elementary", "elementary"),
    ("elementary_dow", "elem.+dow"), ("deequ", "deequ-onl."), ("lagdiff", "anomstack"),
    ("lagdiff_smoothed", "anoms.+sm."),
)

#: the baselines and peer methods run after the blocks, one progress step each
PEER_STEPS = len(DETECTORS) - 1

SCORE_COLUMNS = ["series", "timestamp", "value", "score", "is_anomaly", "expected_low", "expected_high"]


@dataclass
class BacktestResult:
    scores: pd.DataFrame
    metrics: dict[str, Any]
    table: str
    trainings: list[dict[str, Any]] = field(default_factory=list)
    #: the scored part: series, timestamp, value and one boolean alarm column per detector
    alarms: pd.DataFrame = field(default_factory=pd.DataFrame)


def read_series_file(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``series,timestamp,value`` (or a labels file) from CSV, CSV.gz or Parquet.

    A missing file or column, or a time that is not one, is a :class:`dqad_dev.errors.UserError`
    naming the file, the column and the line, so ``dqad backtest`` says what to fix.
    """
    from dqad_dev.errors import UserError, did_you_mean

    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        raise UserError(f"no such file: {p} (check the path)")
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            df = pd.read_parquet(p)
        elif name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".gz"):
            df = pd.read_csv(p)
        else:
            raise UserError(f"{path}: expected .csv, .csv.gz or .parquet")
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {p}: {exc}") from None
    for col in required:
        if col not in df.columns:
            raise UserError(f"{p}: no column {col!r}{did_you_mean(col, map(str, df.columns), what='it has')}")
    for c in ("timestamp", "start", "end"):
        if c in df.columns:
            stamps = pd.to_datetime(df[c], errors="coerce")
            bad = stamps.isna()
            if bad.any():
                row = int(bad.to_numpy().argmax())
                where = f"line {row + 2}" if "csv" in name or name.endswith(".gz") else f"row {row + 1}"
                raise UserError(f"{p}: column {c!r}: not a date/time: {df[c].iloc[row]!r} at {where}")
            df[c] = stamps.astype("datetime64[ns]")
    if "value" in required and "value" in df.columns:
        values = pd.to_numeric(df["value"], errors="coerce")
        text = values.isna() & df["value"].notna()
        if text.any():
            row = int(text.to_numpy().argmax())
            raise UserError(f"{p}: column 'value': not numeric: {df['value'].iloc[row]!r} at line {row + 2}")
        df["value"] = values
    if "series" in df.columns:
        df["series"] = df["series"].astype(str)
    return df


def labels_to_windows(labels: pd.DataFrame | None, data: pd.DataFrame) -> pd.DataFrame | None:
    """Accept labels as windows (series,start,end) or points (series,timestamp,is_anomaly)."""
    if labels is None:
        return None
    cols = set(labels.columns)
    if {"series", "start", "end"} <= cols:
        w = labels[["series", "start", "end"]].copy()
        w["series"] = w["series"].astype(str)
        return w
    if {"series", "timestamp", "is_anomaly"} <= cols:
        return points_to_windows(labels, data)
    raise ValueError("labels must have columns series,start,end (windows) or series,timestamp,is_anomaly (points)")


def _position(df: pd.DataFrame) -> np.ndarray:
    """Fractional position (0..1) of each row within its series, by time."""
    r = df.groupby("series")["timestamp"].rank(method="first").to_numpy() - 1
    n = df.groupby("series")["timestamp"].transform("size").to_numpy()
    return r / np.maximum(n, 1)


def run_backtest(
    data: pd.DataFrame,
    labels: pd.DataFrame | None,
    train_fraction: float = 0.15,
    *,
    use_labels_as_feedback: bool = True,
    labeler_cfg: LabelerConfig | None = None,
    detector_cfg: DetectorConfig | None = None,
    n_chunks: int = 6,
    group_by_prefix: bool = False,
    out_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    training_progress: ProgressCallback | None = None,
) -> BacktestResult:
    """Backtest dqad and the two baselines on one split (see module docstring).

    ``progress`` is told one step per block and one per baseline or peer method (``n_chunks`` +
    :data:`PEER_STEPS` in all); ``training_progress`` is handed to each block's ``train_candidates``.

    ``group_by_prefix``: without a ``group`` column, series "a/b/metric" belong to load group "a/b"
    (the fetcher's convention: the dataset's keys joined with "/", the metric name last), which
    enables the cross-metric features; otherwise every series is its own group.
    """
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must be in (0, 1)")
    lcfg = labeler_cfg or LabelerConfig()
    dcfg = detector_cfg or DetectorConfig()
    data = data.copy()
    if group_by_prefix and "group" not in data.columns:
        data["group"] = data["series"].astype(str).str.rsplit("/", n=1).str[0]
    df = normalise(data).reset_index(drop=True)
    windows = labels_to_windows(labels, df)
    pos = _position(df)
    hist_mask = pos < train_fraction

    feedback = None
    if windows is not None and use_labels_as_feedback:
        h = df.loc[hist_mask, ["series", "timestamp"]]
        inside = in_window(h, windows) >= 0
        feedback = h.assign(label=np.where(inside, "anomaly", "normal"))
        # series without any window are normal throughout (a complete labels file)

    edges = np.linspace(train_fraction, 1.0, n_chunks + 1)
    edges[-1] = 1.0 + 1e-9
    parts = []
    trainings: list[dict[str, Any]] = []
    champion = None
    steps = n_chunks + PEER_STEPS

    def step(done: int) -> None:
        if progress:
            progress(done, steps)

    t_start = time.perf_counter()
    for block, (lo, hi) in enumerate(itertools.pairwise(edges), 1):
        hist = df[pos < lo]
        new = df[(pos >= lo) & (pos < hi)]
        if len(new) == 0:
            step(block)
            continue
        t0 = time.perf_counter()
        labeled = label_history(hist, feedback, lcfg)
        t1 = time.perf_counter()
        res = train_candidates(labeled, dcfg, champion.metrics if champion else None, training_progress)
        if champion is None or res.promote:
            champion = res.bundle
        t2 = time.perf_counter()
        scored = score_new(champion, labeled, new)
        # the product's alarm decision with the scored rows' series and timestamps (per-series
        # thresholds, one alert per incident): the same ModelBundle.decide the scorer calls, given
        # the frame so the backtest does not depend on the scorer version passing it
        scored["is_anomaly"] = champion.decide(
            scored["score"].to_numpy(dtype=np.float64), None,
            frame=scored[["series", "timestamp", "value", "expected_low", "expected_high"]],
        )
        t3 = time.perf_counter()
        parts.append(scored)
        trainings.append({
            "chunk_start": float(lo), "rows_history": len(hist), "rows_scored": len(new),
            "kind": res.bundle.kind, "promoted": bool(res.promote), "reason": res.reason,
            "label_decision": res.label_decision,
            "champion": champion.kind, "candidates": res.candidates,
            "label_counts": labeled["label_source"].value_counts().to_dict(),
            "positives": int(labeled["label"].sum()),
            "label_s": t1 - t0, "train_s": t2 - t1, "score_s": t3 - t2,
        })
        step(block)
    elapsed = time.perf_counter() - t_start
    scores = pd.concat(parts).sort_index() if parts else df.iloc[:0].assign(score=0.0, is_anomaly=False)

    # baselines on the same split
    test = ~hist_mask
    scored_frame = df.loc[test, ["series", "timestamp", "value"]].copy()
    scored_frame["dqad"] = scores.reindex(scored_frame.index)["is_anomaly"].fillna(False).astype(bool)
    peers: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("zscore", lambda: zscore_baseline(df)),
        ("iforest", lambda: iforest_baseline(df, hist_mask)),
        ("elementary", lambda: elementary_zscore(df)),
        ("elementary_dow", lambda: elementary_zscore(df, seasonality="day_of_week")),
        ("deequ", lambda: deequ_online_normal(df)),
        ("lagdiff", lambda: anomstack_lagdiff(df, hist_mask)),
        ("lagdiff_smoothed", lambda: anomstack_lagdiff_smoothed(df, hist_mask)),
    ]
    for done, (key, alarms) in enumerate(peers, n_chunks + 1):
        scored_frame[key] = alarms()[test]
        step(done)

    metrics: dict[str, Any] = {
        "rows": len(df), "series": int(df["series"].nunique()), "history_rows": int(hist_mask.sum()),
        "scored_rows": int(test.sum()), "train_fraction": train_fraction, "n_chunks": n_chunks,
        "labels_used_as_feedback": bool(windows is not None and use_labels_as_feedback),
        "alarms": {k: int(scored_frame[k].sum()) for k, _ in DETECTORS},
        "elapsed_s": elapsed,
    }
    if windows is not None:
        truth = in_window(scored_frame, windows) >= 0
        for k, _ in DETECTORS:
            metrics[k] = {
                "point": point_metrics(truth, scored_frame[k].to_numpy()),
                "event": event_metrics(scored_frame.rename(columns={k: "alarm"}), windows, "alarm"),
            }
    table = format_table(metrics)
    result = BacktestResult(scores=scores, metrics={**metrics, "trainings": trainings}, table=table,
                            trainings=trainings, alarms=scored_frame)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sc = scores.reindex(columns=SCORE_COLUMNS).sort_values(["series", "timestamp"], kind="stable")
        sc.to_csv(out / "scores.csv", index=False)
        (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=str))
    return result


def format_table(metrics: dict[str, Any]) -> str:
    """Side-by-side point- and event-level P/R/F1 of dqad and the baselines."""
    head = f"{'detector':<10} {'alarms':>7} | {'point P':>7} {'R':>6} {'F1':>6} | {'event P':>7} {'R':>6} {'F1':>6}"
    lines = [head, "-" * len(head)]
    for k, name in DETECTORS:
        alarms = metrics.get("alarms", {}).get(k, 0)
        if k in metrics:
            p, e = metrics[k]["point"], metrics[k]["event"]
            lines.append(f"{name:<10} {alarms:>7} | {p['precision']:>7.3f} {p['recall']:>6.3f} {p['f1']:>6.3f} | "
                         f"{e['precision']:>7.3f} {e['recall']:>6.3f} {e['f1']:>6.3f}")
        else:
            lines.append(f"{name:<10} {alarms:>7} | (no labels: precision/recall not measurable)")
    return "\n".join(lines)


def holidays_from_args(args: argparse.Namespace, data: pd.DataFrame) -> list[str]:
    """``--holidays`` dates plus the ``--holidays-country`` (``--holidays-subdivision``) calendar of the
    ``holidays`` package over the years the data covers (dqad.detect.holiday_calendar)."""
    hol = [h.strip() for h in (args.holidays or "").split(",") if h.strip()]
    country = getattr(args, "holidays_country", None)
    if getattr(args, "holidays_subdivision", None) and not country:
        raise ValueError("--holidays-subdivision needs --holidays-country (e.g. --holidays-country US)")
    if country and len(data):
        ts = pd.to_datetime(data["timestamp"])
        days = holiday_dates(country, ts.min().date(), ts.max().date(),
                             subdivision=getattr(args, "holidays_subdivision", None), extra=hol)
        hol = [d.isoformat() for d in days]
    return hol


def _cmd(args: argparse.Namespace) -> int:
    from dqad_dev.errors import UserError
    from dqad_dev.progress import progress_bar
    from dqad_dev.run import progress_printer

    data = read_series_file(args.data, required=("series", "timestamp", "value"))
    labels = read_series_file(args.labels, required=("series",)) if args.labels else None
    try:
        lraw = json.loads(args.labeler_config) if args.labeler_config else {}
        draw = json.loads(args.detector_config) if args.detector_config else {}
    except json.JSONDecodeError as exc:
        raise UserError(f"--labeler-config / --detector-config must be a JSON object: {exc}") from None
    try:
        hol = holidays_from_args(args, data)
    except ValueError as exc:  # an unknown country or subdivision, or a subdivision alone
        raise UserError(str(exc)) from None
    if hol:
        lraw.setdefault("holidays", hol)
        draw.setdefault("holidays", hol)
    try:
        lcfg = LabelerConfig.from_dict(lraw)
        dcfg = DetectorConfig.from_dict(draw)
        if labels is not None:
            labels_to_windows(labels, data)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{args.labels if 'labels' in str(exc) else 'configuration'}: {exc}") from None
    progress = progress_printer()
    if progress:
        progress(f"  backtesting {len(data):,} rows in {args.chunks} blocks (retrain and score each)…")
    with progress_bar("backtest", "step") as blocks, progress_bar("training", "fit", position=1) as fits:
        res = run_backtest(
            data, labels, args.train_fraction, use_labels_as_feedback=not args.no_feedback,
            labeler_cfg=lcfg, detector_cfg=dcfg, n_chunks=args.chunks, out_dir=args.out,
            group_by_prefix=args.group_by_prefix, progress=blocks, training_progress=fits,
        )
    print(res.table)
    print(f"scores: {Path(args.out) / 'scores.csv'}  metrics: {Path(args.out) / 'metrics.json'}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dqad backtest`` on the CLI's subparsers."""
    p = subparsers.add_parser("backtest", help="backtest dqad and baselines on your own labelled history")
    p.add_argument("--data", required=True, help="series,timestamp,value as CSV, CSV.gz or Parquet")
    p.add_argument("--labels", help="windows (series,start,end) or points (series,timestamp,is_anomaly)")
    p.add_argument("--train-fraction", type=float, default=0.15, dest="train_fraction")
    p.add_argument("--out", required=True, help="output directory for scores.csv and metrics.json")
    p.add_argument("--no-feedback", action="store_true", dest="no_feedback",
                   help="use --labels only to measure, not as human feedback on the history")
    p.add_argument("--group-by-prefix", action="store_true", dest="group_by_prefix",
                   help='series "a/b/metric" form load group "a/b" (cross-metric features)')
    p.add_argument("--holidays", help="comma-separated ISO dates of the holiday calendar")
    p.add_argument("--holidays-country", dest="holidays_country",
                   help="ISO 3166 country whose holidays (the holidays package) join --holidays, e.g. US")
    p.add_argument("--holidays-subdivision", dest="holidays_subdivision",
                   help="subdivision of --holidays-country, e.g. NY")
    p.add_argument("--chunks", type=int, default=6, help="retrain/score blocks after the history")
    p.add_argument("--labeler-config", dest="labeler_config", help="JSON object overriding LabelerConfig")
    p.add_argument("--detector-config", dest="detector_config", help="JSON object overriding DetectorConfig")
    p.set_defaults(func=_cmd)
