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


def test_the_scale_table_shows_the_scorers_first_call_and_a_dash_for_older_records(
    bench_run: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = {"seconds": 1.0, "peak_rss_mb": 100.0}
    size = {"series": 10, "rows": 20, "history_rows": 10, "shards": 1, "parallel": 2, "wall_s": 3.0,
            "peak_rss_mb": 100.0, "notified": True, "dlq_messages": 0,
            "stages": {s: stage for s in ("fetcher", "labeler", "trainer", "scorer", "notifier")}}
    shape = {"series": 10, "history_rows": 10, "seconds": 0.3, "floor_seconds": 0.1, "ratio_to_floor": 3.0}
    record = {"measured_at": "then", "commit": "abc", "machine": "m",
              "result": {"command": "python -m bench.scale", "sizes": [size],
                         "shape": {"scorer": [shape, {**shape, "series": 20, "first_call_seconds": 0.9}]}}}
    monkeypatch.setattr(bench_run, "load_result", lambda name: record)
    rows = bench_run.section_scale(1)
    assert "| 10 | 10 | 0.30 | — | 0.10 | 3.0 | pass |" in "\n".join(rows)
    assert "| 20 | 10 | 0.30 | 0.90 | 0.10 | 3.0 | pass |" in "\n".join(rows)
