"""Progress of long work: the callbacks the runtime's loops tell (training, the backtest's blocks),
and the CLI's tqdm bar, which draws on a terminal only: captured or piped output gets nothing."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, label_history, train_candidates
from dqad_dev import progress as progress_module
from dqad_dev.backtest import PEER_STEPS, add_parser, run_backtest
from dqad_dev.progress import progress_bar
from tests.unit.detect.conftest import make_loads

FAST = DetectorConfig(n_estimators=10, cv_folds=2, min_positive=5)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def with_incidents(days: int = 120) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = make_loads(days=days, tables=3)
    rng = np.random.default_rng(1)
    idx = rng.choice(df.index[df["timestamp"] > pd.Timestamp("2024-01-20")], 30, replace=False)
    df.loc[idx, "value"] *= rng.choice([0.1, 3.0], 30)
    return df, df.loc[idx, ["series", "timestamp"]].assign(label="anomaly")


def test_training_tells_one_step_per_candidate_and_fold() -> None:
    df, feedback = with_incidents()
    told = Recorder()
    res = train_candidates(label_history(df, feedback, LabelerConfig()), FAST, progress=told)
    total = told.calls[-1][0]
    assert told.calls == [(i, total) for i in range(1, total + 1)]
    assert total == len(res.candidates) * FAST.cv_folds  # every candidate on each of the two folds


def test_training_without_folds_tells_one_step_for_the_robust_detector() -> None:
    df = make_loads(days=60)
    told = Recorder()
    res = train_candidates(df.assign(label=np.int8(0), label_source="none"), FAST, progress=told)
    assert res.bundle.kind == "robust" and told.calls == [(1, 1)]


def test_backtest_tells_each_block_and_peer_and_each_blocks_training() -> None:
    df, _ = with_incidents(days=100)
    blocks, fits = Recorder(), Recorder()
    run_backtest(df[["series", "timestamp", "value"]], None, n_chunks=2, detector_cfg=FAST,
                 progress=blocks, training_progress=fits)
    steps = 2 + PEER_STEPS
    assert blocks.calls == [(i, steps) for i in range(1, steps + 1)]
    # each block's training counts up from 1 to its total; the next block starts over
    runs = [i for i, (done, _) in enumerate(fits.calls) if done == 1]
    assert len(runs) == 2
    for start, end in zip(runs, [*runs[1:], len(fits.calls)], strict=True):
        run = fits.calls[start:end]
        assert [d for d, _ in run] == list(range(1, len(run) + 1)) and all(t == len(run) for _, t in run)


def test_bar_is_silent_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("backtest", "step") as tell:
        for i in range(1, 4):
            tell(i, 3)
    assert capsys.readouterr() == ("", "")


def test_bar_draws_on_a_terminal_and_starts_over_on_a_lower_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "DELAY_S", 0)
    monkeypatch.setattr(progress_module, "MIN_INTERVAL_S", 0)
    tty = Tty()
    with progress_bar("fetching", "rows", stream=tty) as tell:
        tell(0, None)
        tell(1_000, None)
        tell(0, None)  # the next dataset's fetch
        tell(500, None)
        drawn = tty.getvalue()
    assert "fetching" in drawn and "1000rows" in drawn.replace(" ", "") and "500rows" in drawn.replace(" ", "")


def test_backtest_command_prints_no_bar_when_captured(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    df, _ = with_incidents(days=100)
    data = tmp_path / "data.csv"
    df[["series", "timestamp", "value"]].to_csv(data, index=False)
    parser = argparse.ArgumentParser(prog="dqad")
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["backtest", "--data", str(data), "--out", str(tmp_path / "out"), "--chunks", "2",
                              "--detector-config", '{"n_estimators": 10, "cv_folds": 2}'])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("detector") and err == ""


def test_the_chain_hands_the_fetcher_a_progress_callback_while_it_runs_only() -> None:
    from dqad_dev.local import PumpReport
    from dqad_dev.run import drive_chain
    from dqad_fetcher import domain

    seen: dict[tuple[str, ...] | None, object] = {}

    class Cloud:
        def pump(self, deadline_s: float = 0, only: tuple[str, ...] | None = None) -> PumpReport:
            seen[only] = domain.FETCH_PROGRESS
            return PumpReport()

    drive_chain(Cloud(), progress=lambda line: None)  # type: ignore[arg-type]
    assert callable(seen.pop(("fetcher",)))
    assert set(seen.values()) == {None} and domain.FETCH_PROGRESS is None
    drive_chain(Cloud())  # type: ignore[arg-type]  # no progress wanted: no bar either
    assert seen[("fetcher",)] is None


def test_the_chain_hands_the_training_job_runner_a_progress_callback_while_it_runs_only() -> None:
    from dqad_dev.local import PumpReport
    from dqad_dev.run import drive_chain
    from dqad_trainer import runners

    seen: dict[tuple[str, ...] | None, object] = {}

    class Cloud:
        def pump(self, deadline_s: float = 0, only: tuple[str, ...] | None = None) -> PumpReport:
            seen[only] = runners.JOB_PROGRESS
            return PumpReport()

    drive_chain(Cloud(), progress=lambda line: None)  # type: ignore[arg-type]
    assert callable(seen.pop(("trainer",)))
    assert set(seen.values()) == {None} and runners.JOB_PROGRESS is None
    drive_chain(Cloud())  # type: ignore[arg-type]  # no progress wanted: no bar either
    assert seen[("trainer",)] is None


def test_training_in_the_chain_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `dqad run` / `dqad demo` show while the trainer's job runs: the job's steps as a bar."""
    from dqad_dev.local import PumpReport
    from dqad_dev.run import drive_chain
    from dqad_trainer import runners

    monkeypatch.setattr(progress_module, "DELAY_S", 0)
    monkeypatch.setattr(progress_module, "MIN_INTERVAL_S", 0)
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)

    class Cloud:
        def pump(self, deadline_s: float = 0, only: tuple[str, ...] | None = None) -> PumpReport:
            if only == ("trainer",):  # what the local runner relays from the job's progress lines
                assert runners.JOB_PROGRESS is not None
                for step in [(0, None), *((i, 4) for i in range(1, 5))]:
                    runners.JOB_PROGRESS(*step)
            return PumpReport()

    drive_chain(Cloud(), progress=lambda line: None)  # type: ignore[arg-type]
    drawn = tty.getvalue().replace(" ", "")
    assert "training:" in drawn and "0fits" in drawn and "4/4" in drawn
    assert runners.JOB_PROGRESS is None


def test_a_local_training_job_in_a_terminal_draws_its_bar(tmp_path) -> None:
    """A real pseudo-terminal: a job subprocess writes its progress lines, the runner relays them to
    the bar the chain draws on stderr (the steps of train_candidates, here a stand-in job)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    job = "; ".join([
        "import time", "from dqad_trainer.job import progress_channel",
        "ch = progress_channel()", "tell = ch.__enter__()",
        "[(tell(i, 5), time.sleep(0.15)) for i in range(1, 6)]", "ch.__exit__(None, None, None)",
    ])  # fmt: skip
    parent = "\n".join([
        "import os, sys",
        "from dqad_dev import progress",
        "from dqad_dev.run import stage_bar",
        "from dqad_trainer import runners",
        "progress.DELAY_S = 0.2",
        "with stage_bar('trainer', True):",
        f"    code, err = runners.run_job([sys.executable, '-c', {job!r}], dict(os.environ), runners.JOB_PROGRESS)",
        "print('exit', code, repr(err), flush=True)",
    ])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", parent], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, cwd=tmp_path, text=True)  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the parent exited
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "exit 0 ''"
    drawn = seen.decode(errors="replace").replace(" ", "")
    assert "training:" in drawn and "5/5" in drawn and "fits" in drawn
