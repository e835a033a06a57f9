"""The training job: the script a SageMaker Processing job runs (and the local runner, as a subprocess).

It speaks only the Processing directory contract, no AWS API, so the same file runs on SageMaker,
on a laptop, and in tests:

    <input>/data/labeled.parquet      the labeled history (a sharded run: data/part-*.parquet, one per shard)
    <input>/config/config.json        {"detector": {...}, "version": "...", "dataset": "..."}
    <input>/champion/metrics.json     the current champion's metrics (optional)
    <output>/model.dqad               the chosen model bundle (dqad.detect.model_format: no pickle)
    <output>/metrics.json             metrics, candidates, promote decision, sha256 of model.dqad

    python -m dqad_trainer.job [--input DIR] [--output DIR]   (defaults: /opt/ml/processing/...)

Progress: when ``DQAD_JOB_PROGRESS_FD`` names an open file descriptor (the local runner passes the
write end of a pipe, dqad_trainer.runners), the job writes one ``<done> <total>`` line to it per
candidate and validation fold it fits; the CLI draws its training bar from them. SageMaker sets no
such variable, and the job writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dqad.ports import ProgressCallback

PROCESSING_ROOT = Path("/opt/ml/processing")
#: native thread pools (OpenMP, BLAS) of the job; override with DQAD_TRAIN_THREADS
DEFAULT_THREADS = 1
#: the file descriptor the job writes its progress lines to (see the module docstring)
PROGRESS_FD_ENV = "DQAD_JOB_PROGRESS_FD"


def native_threads() -> int:
    """Threads for BLAS/OpenMP while training, 1 unless ``DQAD_TRAIN_THREADS`` says otherwise.

    Why 1: the trainer fits on at most ``max_train_rows`` (50k) rows, where extra threads gain
    little, but HistGradientBoosting and LBFGS enter thousands of tiny parallel regions whose
    spin-waiting barriers collapse when a core is busy with anything else (a shared laptop, the
    local chain's other stages): on the demo dataset, on a loaded 2-core machine, 2 threads took
    78 s and 1 thread 9 s for the same fits.
    """
    raw = os.environ.get("DQAD_TRAIN_THREADS", "")
    return max(1, int(raw)) if raw.strip().isdigit() else DEFAULT_THREADS


@contextlib.contextmanager
def progress_channel() -> Iterator[ProgressCallback | None]:
    """A callback writing ``<done> <total>`` lines to ``$DQAD_JOB_PROGRESS_FD``; None when it is unset.

    The descriptor is closed when the block ends, so a reader sees the end of the training at once.
    Training never fails for its progress: a reader that went away just stops receiving lines.
    """
    raw = os.environ.get(PROGRESS_FD_ENV, "").strip()
    if not raw.isdigit():
        yield None
        return
    fd = int(raw)
    open_ = [True]

    def tell(done: int, total: int | None) -> None:
        if open_[0]:
            try:
                os.write(fd, f"{int(done)} {'' if total is None else int(total)}\n".encode())
            except OSError:  # the reader closed its end (BrokenPipe) or the descriptor is gone
                open_[0] = False

    tell(0, None)  # the job has started: the bar shows before the first fit ends
    try:
        yield tell
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def relay_progress(lines: Iterable[str], progress: ProgressCallback) -> None:
    """Call ``progress`` for each ``<done> <total>`` line a job wrote (:func:`progress_channel`); skip others."""
    for line in lines:
        parts = line.split()
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            progress(int(parts[0]), int(parts[1]) if len(parts) == 2 else None)


def run(input_dir: Path, output_dir: Path) -> dict:
    from threadpoolctl import threadpool_limits

    from dqad.detect import model_format
    from dqad.detect.config import DetectorConfig
    from dqad.detect.model import train_candidates
    from dqad.storage import sha256_file
    from dqad_trainer.sample import read_training_data, sample_rows

    started = time.perf_counter()
    config = json.loads((input_dir / "config" / "config.json").read_text())
    champion_file = input_dir / "champion" / "metrics.json"
    champion = json.loads(champion_file.read_text()).get("metrics") if champion_file.exists() else None
    labeled, sample = read_training_data(input_dir / "data", sample_rows())
    with threadpool_limits(limits=native_threads()), progress_channel() as progress:
        cfg = DetectorConfig.from_dict(config.get("detector", {}))
        result = train_candidates(labeled, cfg, champion, progress=progress)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / model_format.MODEL_FILE
    model_format.write(result.bundle, model_path)
    report = {
        "version": config["version"],
        "dataset": config.get("dataset", ""),
        "trained_at": datetime.now(UTC).isoformat(),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "candidates": {n: {k: float(v) for k, v in m.items()} for n, m in result.candidates.items()},
        "promote": bool(result.promote),
        "reason": result.reason,
        "model_sha256": sha256_file(model_path),
        "kind": getattr(result.bundle, "kind", ""),
        "train_seconds": round(time.perf_counter() - started, 3),
        "label_rate": float(labeled["label"].mean()) if len(labeled) else 0.0,
        # whether labels let a supervised model replace the robust detector: events, margin, decision, reason
        "label_decision": result.label_decision,
        "sample": sample,  # what it trained on: every labelled series, a stratified sample of the rest
    }
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def first_host(config: Path = Path("/opt/ml/config/resourceconfig.json")) -> bool:
    """True on the job's first instance (and off SageMaker). A dataset may give its job several
    instances ([trainer] instance_count); the sampled data fits one, which alone writes the output,
    so two instances never upload a model and a metrics.json of different fits under one version."""
    if not config.is_file():
        return True
    hosts = json.loads(config.read_text())
    return hosts.get("current_host") == sorted(hosts.get("hosts") or [hosts.get("current_host")])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=PROCESSING_ROOT / "input")
    parser.add_argument("--output", type=Path, default=PROCESSING_ROOT / "output")
    args = parser.parse_args(argv)
    if not first_host():
        print(json.dumps({"skipped": "not the first instance of the job: it trains on the first one"}))
        return 0
    report = run(args.input, args.output)
    print(json.dumps({k: report[k] for k in ("version", "promote", "reason", "metrics")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
