"""Labels never hurt: the backtest with the history's windows as human labels scores at least as well
as without, on a small scenario corpus (docs/architecture.md §6)."""

from __future__ import annotations

from dqad_dev.corpus_eval import evaluate_corpus
from dqad_dev.scenarios import generate_corpus


def test_labels_never_lower_event_f1_on_the_scenario_corpus() -> None:
    corpus = generate_corpus(
        seed=11, tables_per_family=1, days=150,
        families=("daily_trend", "weekly", "month_end_calendar", "holidays_us", "bounded_pct", "level_shift", "hourly"),
        incidents_per_table=(3, 5),
    )
    without = evaluate_corpus(corpus, use_labels=False, n_chunks=3)
    with_labels = evaluate_corpus(corpus, use_labels=True, n_chunks=3)
    assert with_labels.backtest_metrics["labels_used_as_feedback"]
    assert with_labels.overall["dqad"]["f1"] >= without.overall["dqad"]["f1"]
    assert with_labels.overall["dqad"]["windows"] == without.overall["dqad"]["windows"] > 0
    for family, row in without.per_family.items():  # nor in any family
        assert with_labels.per_family[family]["dqad"]["f1"] >= row["dqad"]["f1"], family
