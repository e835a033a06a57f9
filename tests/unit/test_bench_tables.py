"""BENCHMARKS.md tables still render from records made before a peer was added to the backtest."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_run(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # the suite runs with --import-mode=importlib and bench/ is not installed: import it from the clone
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.run")


def test_a_scenario_record_without_the_newer_peers_shows_a_dash(bench_run: ModuleType) -> None:
    old = {d: {"f1": 0.5} for d in ("dqad", "zscore", "elementary", "elementary_dow", "deequ", "iforest")}
    plain = {"per_family": {"weekly": old}, "overall": old, "worst": old}
    rows = bench_run._scenario_table(plain, None)
    assert "lagdiff" in bench_run.SCENARIO_DETECTORS
    weekly = next(r for r in rows if r.startswith("| weekly |"))
    assert weekly.count("0.500") == 6
    assert weekly.count("—") == len(bench_run.SCENARIO_DETECTORS) - 6 + 1  # and no labelled run


def test_a_nab_record_without_per_detector_f1_shows_the_baselines_and_dashes(bench_run: ModuleType) -> None:
    mode = {"dqad_event": {"f1": 0.444}, "zscore_event_f1": 0.132, "iforest_event_f1": 0.128}
    line = bench_run._nab_detectors_line({"nolabels": mode, "labels": mode})[-1]
    assert "dqad 0.444 / 0.444" in line
    assert "iforest 0.128 / 0.128" in line
    assert "anomstack — / —" in line
    newer = {**mode, "event_f1": {"lagdiff": 0.29}}
    assert "anomstack 0.290 / —" in bench_run._nab_detectors_line({"nolabels": newer, "labels": mode})[-1]
