"""Long measurements kept in git: ``bench/results/<name>.json``, each with when, where and at which commit.

The N = 1,000 load run and the nab-dev detection runs take tens of minutes, more than ``make bench``'s
ten-minute budget. They are run on their own, their figures are committed here, and ``make bench``
copies them into BENCHMARKS.md with their date and commit, so a reader can tell a fresh figure from
an old one and reproduce either.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=RESULTS.parent, capture_output=True, text=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")
    except OSError:
        return "unknown"


def provenance() -> dict[str, str]:
    """When, at which commit and on what machine: taken when a measurement starts, not when it ends."""
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def save_result(name: str, result: dict[str, Any], started: dict[str, str]) -> Path:
    """Write ``result`` with its :func:`provenance` to ``bench/results/<name>.json``; return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {**started, "result": result}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    """The saved record (``measured_at``, ``commit``, ``machine``, ``result``), or None if never run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
