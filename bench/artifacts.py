"""Every service's artifact, measured: ``python -m bench.artifacts`` → ``bench/results/artifacts.json``.

Each service is built exactly as ``make package SERVICE=<name>`` builds it (``scripts/package.py``:
Lambda's CPython 3.12 manylinux wheels, trimmed), so the sizes are the deployed ones. The cold import
is measured from a build of the same requirements for the local interpreter when it is not 3.12 (the
3.12 wheels' extension modules do not load in another interpreter); each record says which.

Building downloads every service's wheels twice (Lambda's and the local interpreter's): a few minutes,
so the figures are kept in ``bench/results/`` with their date and commit, and ``make bench`` prints
them with :func:`table_rows` rather than rebuilding.

    .venv/bin/python -m bench.artifacts                    # all five services
    .venv/bin/python -m bench.artifacts --only notifier    # one (merged into the saved record)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.recorded import load_result, provenance, save_result

ROOT = Path(__file__).resolve().parents[1]
NAME = "artifacts"
MB = 1024 * 1024


def _package_script() -> ModuleType:
    """scripts/package.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location("dqad_scripts_package", ROOT / "scripts" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def measure(services: list[str]) -> dict[str, dict[str, Any]]:
    """The manifest of each service's artifact, built with dependencies into a scratch directory."""
    pkg = _package_script()
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="dqad-artifacts-") as tmp:
        for service in services:
            manifest = pkg.package(ROOT, service, Path(tmp), with_deps=True)
            record = asdict(manifest)
            record.pop("artifact")  # a scratch path
            record["zip_limit_bytes"] = pkg.ZIP_LIMIT_BYTES
            out[service] = record
    return out


def table_rows(record: dict[str, Any] | None = None) -> list[str]:
    """BENCHMARKS.md rows, one per artifact, from the saved record (``bench/run.py`` calls this)."""
    record = record if record is not None else load_result(NAME)
    if record is None:
        return ["No artifact measurement recorded: run `.venv/bin/python -m bench.artifacts`."]
    rows = [
        "| service | kind | unpacked (MB) | % of zip limit | largest dependencies (MB, as installed) | "
        "cold import, median / worst (s) | heavy modules at import |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    notes: set[str] = set()
    for service, m in record["result"].items():
        largest = sorted(m["packages"].items(), key=lambda kv: -kv[1]["bytes"])[:4]
        deps = ", ".join(f"{name} {info['bytes'] / MB:.0f}" for name, info in largest)
        cold = m.get("cold_import") or {}
        timing = f"{cold['median_s']:.2f} / {cold['max_s']:.2f}" if cold else "not measured"
        heavy = ", ".join(cold.get("heavy_modules", [])) or "none"
        if cold:
            notes.add(cold["note"])
        share = 100 * m["unpacked_bytes"] / m["zip_limit_bytes"]
        rows.append(
            f"| {service} | {m['kind']} | {m['unpacked_bytes'] / MB:.1f} | {share:.0f}% | {deps} | {timing} | {heavy} |"
        )
    rows.append("")
    rows.append(
        f"Measured {record['measured_at']} at {record['commit']} ({record['machine']}) by "
        "`python -m bench.artifacts`; sizes are of the Lambda (CPython 3.12, manylinux x86_64) build. "
        + " ".join(sorted(f"Cold import {n}." for n in notes))
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="measure this service only (repeatable)")
    args = parser.parse_args(argv)
    pkg = _package_script()
    services = args.only or list(pkg.stage_names(ROOT))
    started = provenance()
    result = measure(services)
    previous = load_result(NAME)
    if args.only and previous:
        result = {**previous["result"], **result}
    path = save_result(NAME, result, started)
    print("\n".join(table_rows(load_result(NAME))))
    print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
