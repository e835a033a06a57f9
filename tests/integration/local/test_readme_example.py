"""README, "Run it on your own data": the commands of its worked example run as written, in order,
on a copy of docs/examples/own-data, and the output it shows is what they print."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import EXAMPLE, ROOT

pytestmark = pytest.mark.slow


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Run it on your own data")
    return text[start : text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    parts = section().split("```")
    return [p.split("\n", 1)[1] for p in parts[1::2] if p.split("\n", 1)[0] == kind]


def test_the_worked_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dqad) -> None:  # type: ignore[no-untyped-def]
    commands = [line.split("  #", 1)[0].strip() for line in blocks("sh")[0].splitlines() if line.strip()]
    assert commands[0] == "cp -r docs/examples/own-data my-dq && cd my-dq"
    shutil.copytree(EXAMPLE, tmp_path / "my-dq")
    monkeypatch.chdir(tmp_path / "my-dq")
    outputs = []
    for command in commands[1:]:
        if command == "dqad serve":
            continue  # blocks until stopped: the browser test drives it (test_serve_browser.py)
        if command.startswith("dqad "):
            done = dqad(*shlex.split(command)[1:])
            assert done.code == 0, (command, done.err)
            outputs.append(done.out)
        else:
            subprocess.run(command, shell=True, check=True)
    shown = blocks("")
    assert outputs[0] == shown[0]  # dqad validate, exactly
    first_run = outputs[1].splitlines()
    for line in shown[1].splitlines():
        if line.startswith(("  fetcher", "  labeler", "  trainer", "  scorer", "  notifier", "  chain wall")):
            continue  # timings vary
        assert line in first_run, line
    assert "Model: reused the champion" in outputs[2] and "Message: none sent (1 already alerted" in outputs[2]
    assert "Model: reused the champion" in outputs[3]
    assert "Model: trained a new model" in outputs[5]
    assert "replayed scorer for run 20261130T0301-70a07d46938c" in outputs[6]
    assert "1 anomaly in the run's scores" in outputs[6] and "report.html" in outputs[6]
