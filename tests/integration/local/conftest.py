"""A copy of the bundled own-data example (docs/examples/own-data) per test, and a helper to run
``dqad`` through ``main([...])`` with its output and exit code."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dqad_dev.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "own-data"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example folder, copied; the working directory, as a user would `cd` into it."""
    folder = tmp_path / "own-data"
    shutil.copytree(EXAMPLE, folder)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def dqad(capsys: pytest.CaptureFixture[str], aws_env: None) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def append_day(folder: Path, day: str) -> None:
    """What the metrics job does each night: the next load's rows at the end of the file."""
    rows = (folder / f"{day}.csv").read_text().splitlines()[1:]
    with (folder / "dq_metrics.csv").open("a") as out:
        out.write("\n".join(rows) + "\n")
