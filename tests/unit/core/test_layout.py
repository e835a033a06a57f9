"""Architecture rules (docs/architecture.md, "Layout"): services depend only on the runtime library
``dqad``, never on each other nor on the development package ``dqad_dev``, which no Lambda ships."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dqad.topology import STAGE_NAMES, STAGES

ROOT = Path(__file__).resolve().parents[3]
SERVICE_PACKAGES = {f"dqad_{name}" for name in STAGE_NAMES}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


DEV_PACKAGE = "dqad_dev"


def test_shared_library_imports_no_service() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & SERVICE_PACKAGES)
        for p in (ROOT / "shared" / "dqad").rglob("*.py")
        if imported_roots(p) & SERVICE_PACKAGES
    }
    assert offenders == {}


def test_runtime_library_never_imports_the_development_package() -> None:
    offenders = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "shared" / "dqad").rglob("*.py") if DEV_PACKAGE in imported_roots(p)
    )
    assert offenders == []


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_service_never_imports_the_development_package(name: str) -> None:
    offenders = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "services" / name).rglob("*.py") if DEV_PACKAGE in imported_roots(p)
    )
    assert offenders == []


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_service_imports_only_itself_and_the_shared_library(name: str) -> None:
    own = f"dqad_{name}"
    for path in (ROOT / "services" / name).rglob("*.py"):
        others = imported_roots(path) & (SERVICE_PACKAGES - {own})
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_each_service_can_be_packaged_alone(name: str) -> None:
    service = ROOT / "services" / name
    requirements = (service / "requirements.txt").read_text().split()
    assert any(r.startswith("aws-lambda-powertools") for r in requirements)
    assert (service / f"dqad_{name}" / "handler.py").is_file()


def test_topology_entry_points_exist() -> None:
    from dqad_dev.local import load_entry_point

    for st in STAGES:
        assert callable(load_entry_point(st.handler))
        for spec in st.extra_entry_points.values():
            assert callable(load_entry_point(spec)), spec


def test_code_cites_only_documents_in_the_repository() -> None:
    """Docstrings and comments point to docs/architecture.md, never to a design note or tracker outside it."""
    import re

    outside = re.compile(r"DESIGN §|\bDESIGN\.md\b|\b[Ii]ssue #?\d+\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("shared", "services", "tests", "bench", "scripts", "terraform", "sql")
        for path in (ROOT / top).rglob("*")
        if path.suffix in {".py", ".tf", ".sql"} and "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line) and path.name != "test_layout.py"
    ]
    assert offenders == []


def test_tests_are_a_package_with_unit_tests_per_stage() -> None:
    """``tests/`` is a package (its helpers import as ``tests.fakes``) with ``tests/unit/<stage>/`` per stage."""
    tests = ROOT / "tests"
    missing = sorted(
        str(d.relative_to(ROOT))
        for d in [tests, *tests.rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()
    )
    assert not missing, f"test folders without __init__.py: {', '.join(missing)}"
    for name in STAGE_NAMES:
        assert list((tests / "unit" / name).glob("test_*.py")), f"tests/unit/{name}/ has no tests"
