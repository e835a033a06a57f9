"""The fetcher and notifier handler modules import no heavy library (docs/architecture.md §9, cold start).

Why: every Lambda cold start pays for what its handler module imports. The fetcher's Aurora and
sweeper entry points only validate a payload and publish, the notifier's operator alert and feedback
page only format text, so pandas, pyarrow, numpy, scikit-learn and matplotlib must be imported where
a frame or a Parquet file is actually handled, not at module level. One stray top-level import
anywhere in the chain (``dqad.stage`` → ``dqad.storage`` / ``dqad.datasets`` …) brings back most of
a second.

This test is structural, not timed: it checks *which* modules are loaded, in a fresh interpreter
(a subprocess, since the test session itself has them all loaded). The timing itself is a
benchmark — ``python -m bench.stages import dqad_fetcher.handler``, median of 3, recorded in
BENCHMARKS.md by ``make bench`` — never a timed unit test, which would be flaky on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "pyarrow", "numpy", "sklearn", "matplotlib")

_PROBE = """
import json, sys
import {module}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def loaded_heavy_modules(module: str) -> list[str]:
    """Heavy modules in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["dqad_fetcher.handler", "dqad_notifier.handler"])
def test_handler_module_imports_no_heavy_library(module: str) -> None:
    assert loaded_heavy_modules(module) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The check is not vacuous: a module that does import pyarrow is reported."""
    assert "pyarrow" in loaded_heavy_modules("dqad_fetcher.sources")
