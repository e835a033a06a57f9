"""A replay never overwrites a model: feedback, then replay of the labeler with --follow.

Before model versions were write-once, the trainer retrained the run under the champion's own
version, rewrote its model file, and the scorer then refused it (sha256 mismatch) while the replay
summary said "0 failed record(s)".
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from dqad_dev.cli import main as dqad_main
from dqad_dev.demo import run_demo

pytestmark = pytest.mark.slow


def test_feedback_then_labeler_replay_keeps_the_champion_bytes(tmp_path, capsys) -> None:
    result = run_demo(tmp_path, seed=3, tables=12, days=120)
    state = tmp_path / "state"
    [champion_file] = state.glob("models/*/champion.json")
    champion = json.loads(champion_file.read_text())
    model_file = state / champion["uri"].split("/", 3)[-1]
    before = hashlib.sha256(model_file.read_bytes()).hexdigest()
    top = result.anomalies.iloc[0]
    assert dqad_main([
        "feedback", "--dataset", "demo_dq", "--series", str(top["series"]),
        "--timestamp", pd.Timestamp(top["timestamp"]).isoformat(), "--label", "normal", "--state", str(state),
    ]) == 0  # fmt: skip
    capsys.readouterr()

    code = dqad_main(["replay", "--run-id", result.run_id, "--stage", "labeler", "--follow", "--state", str(state)])
    printed = capsys.readouterr().out

    assert code == 0, printed
    assert "dead-lettered)" in printed and "DLQ" not in printed, printed
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == before == champion["sha256"]
    assert (state / "runs" / "demo_dq" / result.run_id / "scores.parquet").is_file()
    notified = json.loads((state / "events" / result.run_id / "NotificationSent.json").read_text())
    assert notified["detail"]["run_id"] == result.run_id
    # the retrain went to a new version, never over the champion's
    versions = sorted(p.name for p in champion_file.parent.iterdir() if p.is_dir())
    assert champion["version"] in versions and len(versions) >= 2, versions
