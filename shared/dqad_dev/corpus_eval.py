"""Detection per benign family of the scenario corpus, the worst family, and leave-one-family-out.

An average over a corpus hides the structure a detector cannot handle; the worst family does not.
:func:`evaluate_corpus` runs the same backtest path as ``dqad backtest`` (``run_backtest``, load
groups from the ``table/metric`` names, the corpus' holiday dates given) on a
:class:`~dqad_dev.scenarios.Corpus` and scores every detector's alarms with the event scoring of
nab-dev's README (one alarm inside a window detects it; runs of consecutive alarms outside every
window are false positives) separately for the series of each family.

:func:`leave_one_family_out` chooses a detector configuration among candidates without ever looking
at the family it is judged on: for each family, the candidate with the best worst-family F1 on the
*other* families is picked, and its F1 on the held-out family is what is reported. Every candidate is
backtested once on the whole corpus (series are scored independently; a pooled supervised model, if
one is promoted, does see every family's history — the choice itself never sees the held-out
family's scores).

    .venv/bin/python -m dqad_dev.corpus_eval --seed 0
    .venv/bin/python -m dqad_dev.corpus_eval --seed 1 --lofo '{"robust_threshold": 5}' '{"robust_threshold": 7}'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dqad.detect.config import DetectorConfig, LabelerConfig
from dqad_dev.backtest import run_backtest
from dqad_dev.evaluate import event_metrics
from dqad_dev.scenarios import Corpus, generate_corpus

_FRAME_COLUMNS = ("series", "timestamp", "value")


@dataclass
class CorpusReport:
    """Event metrics per family and detector, overall, and the worst family of each detector."""

    per_family: dict[str, dict[str, dict[str, float]]]  # family -> detector -> event metrics
    overall: dict[str, dict[str, float]]  # detector -> event metrics
    worst: dict[str, tuple[str, float]]  # detector -> (family, F1)
    backtest_metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_family": self.per_family,
            "overall": self.overall,
            "worst": {k: {"family": f, "f1": v} for k, (f, v) in self.worst.items()},
        }

    def table(self, detectors: Sequence[str] | None = None) -> str:
        """Event F1 per family (rows) and detector (columns), then the overall and worst rows."""
        dets = list(detectors or self.overall)
        head = f"{'family':<22}" + "".join(f"{d[:12]:>13}" for d in dets)
        lines = [head, "-" * len(head)]
        for fam, row in self.per_family.items():
            lines.append(f"{fam:<22}" + "".join(f"{row[d]['f1']:>13.3f}" for d in dets))
        lines.append("-" * len(head))
        lines.append(f"{'overall':<22}" + "".join(f"{self.overall[d]['f1']:>13.3f}" for d in dets))
        lines.append(f"{'worst family':<22}" + "".join(f"{self.worst[d][1]:>13.3f}" for d in dets))
        lines.append(f"{'(which)':<22}" + "".join(f"{self.worst[d][0][:12]:>13}" for d in dets))
        return "\n".join(lines)


def family_metrics(alarms: pd.DataFrame, windows: pd.DataFrame, family_of: dict[str, str]) -> CorpusReport:
    """Score every alarm column of ``alarms`` per family of its series (see the module docstring)."""
    detectors = [c for c in alarms.columns if c not in _FRAME_COLUMNS]
    fam = alarms["series"].astype(str).map(family_of)
    if fam.isna().any():
        missing = sorted(alarms.loc[fam.isna(), "series"].astype(str).unique())[:3]
        raise ValueError(f"series without a family: {missing} (pass the corpus' own frame)")
    wfam = windows["series"].astype(str).map(family_of)
    per_family: dict[str, dict[str, dict[str, float]]] = {}
    for f in sorted(fam.unique()):
        sub, wsub = alarms[fam == f], windows[wfam == f]
        per_family[f] = {d: event_metrics(sub.rename(columns={d: "alarm"}), wsub, "alarm") for d in detectors}
    overall = {d: event_metrics(alarms.rename(columns={d: "alarm"}), windows, "alarm") for d in detectors}
    worst = {}
    for d in detectors:
        f, row = min(per_family.items(), key=lambda kv: kv[1][d]["f1"])
        worst[d] = (f, row[d]["f1"])
    return CorpusReport(per_family=per_family, overall=overall, worst=worst)


def evaluate_corpus(
    corpus: Corpus,
    *,
    detector_overrides: dict[str, Any] | None = None,
    labeler_overrides: dict[str, Any] | None = None,
    use_labels: bool = False,
    n_chunks: int = 6,
    train_fraction: float = 0.15,
) -> CorpusReport:
    """Backtest ``corpus`` as ``dqad backtest --holidays ... --group-by-prefix`` would, scored per family.

    ``use_labels``: the corpus' windows of the history part are also given as human feedback (as
    ``--labels``); they are used to measure in every case.
    """
    hol = [d.isoformat() for d in corpus.holidays]
    lcfg = LabelerConfig.from_dict({"holidays": hol, **(labeler_overrides or {})})
    dcfg = DetectorConfig.from_dict({"holidays": hol, **(detector_overrides or {})})
    windows = corpus.windows[["series", "start", "end"]]
    res = run_backtest(
        corpus.frame, windows, train_fraction, use_labels_as_feedback=use_labels, labeler_cfg=lcfg,
        detector_cfg=dcfg, n_chunks=n_chunks, group_by_prefix=True,
    )
    report = family_metrics(res.alarms, windows, corpus.family_of())
    report.backtest_metrics = {k: v for k, v in res.metrics.items() if k != "trainings"}
    return report


def leave_one_family_out(
    corpus: Corpus, candidates: Sequence[dict[str, Any]], *, detector: str = "dqad", **kwargs: Any
) -> dict[str, Any]:
    """Per held-out family: the candidate chosen on the other families, and its held-out F1.

    The choice maximises the worst-family F1 over the other families (ties: the mean). Returns the
    held-out F1 per family, their minimum and mean, and each candidate's own per-family F1s.
    """
    if not candidates:
        raise ValueError("leave_one_family_out needs at least one candidate configuration")
    reports = [evaluate_corpus(corpus, detector_overrides=c, **kwargs) for c in candidates]
    f1 = [{f: row[detector]["f1"] for f, row in r.per_family.items()} for r in reports]
    families = sorted(f1[0])
    held_out: dict[str, dict[str, Any]] = {}
    for fam in families:
        def key(i: int, fam: str = fam) -> tuple[float, float]:
            others = [v for f, v in f1[i].items() if f != fam]
            return (min(others), sum(others) / len(others))

        best = max(range(len(candidates)), key=key)
        held_out[fam] = {"chosen": candidates[best], "f1": f1[best][fam]}
    scores = [h["f1"] for h in held_out.values()]
    return {
        "held_out": held_out,
        "worst_f1": min(scores),
        "mean_f1": sum(scores) / len(scores),
        "candidates": [{"config": c, "per_family_f1": f} for c, f in zip(candidates, f1, strict=True)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables-per-family", type=int, default=2, dest="tables_per_family")
    ap.add_argument("--days", type=int, default=270)
    ap.add_argument("--labels", action="store_true", help="give the history's windows as human feedback")
    ap.add_argument("--lofo", nargs="*", metavar="JSON",
                    help="candidate DetectorConfig overrides (JSON objects) for leave-one-family-out")
    ap.add_argument("--out", help="write the report as JSON here")
    args = ap.parse_args(argv)
    corpus = generate_corpus(seed=args.seed, tables_per_family=args.tables_per_family, days=args.days)
    if args.lofo is not None:
        try:
            cands = [json.loads(c) for c in args.lofo] or [{}]
        except json.JSONDecodeError as exc:
            ap.error(f"--lofo: each candidate must be a JSON object ({exc})")
        out: dict[str, Any] = leave_one_family_out(corpus, cands, use_labels=args.labels)
        for fam, h in out["held_out"].items():
            print(f"{fam:<22} {h['f1']:>6.3f}  chosen {json.dumps(h['chosen'])}")
        print(f"held-out worst family F1 {out['worst_f1']:.3f}, mean {out['mean_f1']:.3f}")
    else:
        report = evaluate_corpus(corpus, use_labels=args.labels)
        print(report.table())
        out = report.to_dict()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
