"""A new user's session on their own CSV, through the CLI only: validate, run day 1, run again,
append day 2 and run (the model is reused), say a flagged point was expected, append day 3 and
run (the label reaches the labeler and the trainer), and a catalog with a typo."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from .conftest import append_day

pytestmark = pytest.mark.slow
SPIKE = ("crm.customers/null_pct", "2026-11-30T03:01:30")


def run_id(out: str) -> str:
    return out.split("Run ", 1)[1].split(":", 1)[0]


def test_a_new_users_session_end_to_end(example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    state = example / "dqad-state"
    assert dqad("validate", "datasets.toml").code == 0

    day1 = dqad("run", "--datasets", "datasets.toml")
    assert day1.code == 0, day1.err
    assert "1 anomaly in shop_dq" in day1.out
    assert "crm.customers          null_pct" in day1.out and "9.6" in day1.out
    assert "Model: trained a new model" in day1.out
    first = run_id(day1.out)
    report = state / "runs" / "shop_dq" / first / "report.html"
    message = json.loads((state / "runs" / "shop_dq" / first / "sns-message.json").read_text())
    assert report.is_file() and str(report.relative_to(example)) in day1.out
    # the email's feedback links point at `dqad serve`, and the run prints the page instead of a command
    assert "http://127.0.0.1:8765/feedback?" in message["Message"]
    assert "dqad feedback --dataset" not in message["Message"]
    assert f"http://127.0.0.1:8765/runs/shop_dq/{first}" in day1.out

    again = dqad("run", "--datasets", "datasets.toml")  # the same load: the same run, nothing mailed twice
    assert run_id(again.out) == first
    assert "Model: reused the champion" in again.out
    assert "Message: none sent (1 already alerted" in again.out

    append_day(example, "day2")
    day2 = dqad("run", "--datasets", "datasets.toml")
    assert day2.code == 0 and run_id(day2.out) != first
    assert "0 anomalies in shop_dq" in day2.out
    assert "Model: reused the champion" in day2.out

    typo = dqad("feedback", "--dataset", "shop_dq", "--series", "crm.customer/null_pct", "--timestamp", SPIKE[1],
                "--label", "normal")
    assert typo.code == 2 and "did you mean 'crm.customers/null_pct'" in typo.err
    marked = dqad("feedback", "--dataset", "shop_dq", "--series", SPIKE[0], "--timestamp", "2026-11-30T03:01",
                  "--label", "normal", "--note", "planned migration")
    assert marked.code == 0, marked.err
    assert f"at {SPIKE[1]} as normal" in marked.out

    append_day(example, "day3")
    day3 = dqad("run", "--datasets", "datasets.toml")
    assert day3.code == 0
    assert "Model: trained a new model" in day3.out  # new human labels: the champion is not reused
    labeled = pd.read_parquet(next((state / "runs" / "shop_dq" / run_id(day3.out)).glob("labeled.parquet")))
    point = labeled[(labeled["series"] == SPIKE[0]) & (labeled["timestamp"] == pd.Timestamp(SPIKE[1]))]
    assert point[["label", "label_source"]].to_dict("records") == [{"label": 0, "label_source": "human"}]


def test_the_twin_of_a_point_marked_expected_is_not_flagged(example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    assert dqad("run", "--datasets", "datasets.toml").code == 0
    assert dqad("feedback", "--dataset", "shop_dq", "--series", SPIKE[0], "--timestamp", SPIKE[1],
                "--label", "normal").code == 0
    append_day(example, "day2")
    append_day(example, "day3")
    twin = dqad("run", "--datasets", "datasets.toml")
    assert "0 anomalies in shop_dq" in twin.out, twin.out


def test_a_catalog_with_a_typo_is_one_line_with_the_suggestion(example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    bad = example / "typo.toml"
    bad.write_text((example / "datasets.toml").read_text().replace("timestamp =", "timestmp ="))
    checked = dqad("validate", "typo.toml")
    assert checked.code == 2
    assert checked.out == "shop_dq: timestmp: unknown key (did you mean 'timestamp'?)\n"
    ran = dqad("run", "--datasets", "typo.toml")
    assert ran.code == 2 and ran.out == ""
    assert ran.err == (
        "dqad run: typo.toml: dataset 'shop_dq': timestmp: unknown key (did you mean 'timestamp'?) "
        "(run `dqad validate typo.toml`)\n"
    )
