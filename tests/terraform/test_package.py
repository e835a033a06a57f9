"""`make package SERVICE=<name>`: one service's artifact, reproducible, changed only by its own code.

Why: each stage deploys on its own, and Terraform redeploys a stage exactly when its artifact hash
changes. Builds here use --no-deps (code only) so they are fast and offline; the dependency install is
the same pip command for every service and does not affect what is tested.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pkg():
    spec = importlib.util.spec_from_file_location("dqad_scripts_package", REPO / "scripts" / "package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of what packaging reads, so the test can edit one service's code."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "services", root / "services", ignore=ignore)
    shutil.copytree(REPO / "shared", root / "shared", ignore=ignore)
    return root


def build(pkg, root: Path, service: str, out: Path):
    return pkg.package(root, service, out, with_deps=False)


def test_one_service_change_changes_only_its_hash(pkg, repo_copy: Path, tmp_path: Path) -> None:
    before = {s: build(pkg, repo_copy, s, tmp_path / "a").sha256 for s in ("scorer", "labeler")}
    again = {s: build(pkg, repo_copy, s, tmp_path / "b").sha256 for s in ("scorer", "labeler")}
    assert again == before, "the same inputs must give the same artifact"

    handler = repo_copy / "services" / "scorer" / "dqad_scorer" / "handler.py"
    handler.write_text(handler.read_text() + "\n# touched\n")
    after = {s: build(pkg, repo_copy, s, tmp_path / "c").sha256 for s in ("scorer", "labeler")}
    assert after["scorer"] != before["scorer"]
    assert after["labeler"] == before["labeler"]


def test_shared_library_change_changes_every_service(pkg, repo_copy: Path, tmp_path: Path) -> None:
    before = build(pkg, repo_copy, "notifier", tmp_path / "a").sha256
    (repo_copy / "shared" / "dqad" / "topology.py").write_text(
        (repo_copy / "shared" / "dqad" / "topology.py").read_text() + "\n# touched\n"
    )
    assert build(pkg, repo_copy, "notifier", tmp_path / "b").sha256 != before


def test_zip_is_deterministic_and_holds_service_and_library(pkg, repo_copy: Path, tmp_path: Path) -> None:
    # Without a Dockerfile the service is a zip (the path for services under the 250 MB limit).
    (repo_copy / "services" / "labeler" / "Dockerfile").unlink(missing_ok=True)
    m = build(pkg, repo_copy, "labeler", tmp_path / "out")
    assert m.kind == "zip"
    with zipfile.ZipFile(m.artifact) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {pkg.FIXED_DATE}
    assert "dqad_labeler/handler.py" in names and "dqad/topology.py" in names
    assert not [n for n in names if n.startswith(("dqad_scorer", "dqad_fetcher")) or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("dqad_dev")], "the development package is never shipped"
    manifest = json.loads((tmp_path / "out" / "labeler" / "manifest.json").read_text())
    assert manifest["sha256"] == pkg.file_digest(Path(m.artifact))
    assert manifest["limit_bytes"] == pkg.ZIP_LIMIT_BYTES


def test_image_context_holds_app_and_dockerfile(pkg, repo_copy: Path, tmp_path: Path) -> None:
    m = build(pkg, repo_copy, "scorer", tmp_path / "out")
    assert m.kind == "image"
    context = Path(m.artifact)
    assert (context / "Dockerfile").exists()
    assert (context / "app" / "dqad_scorer" / "handler.py").exists()
    assert (context / "app" / "dqad" / "stage.py").exists()


def test_unknown_service_is_refused(pkg, repo_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown service"):
        build(pkg, repo_copy, "nope", tmp_path)


def test_zip_over_the_limit_is_refused(pkg, repo_copy: Path, tmp_path: Path, monkeypatch) -> None:
    (repo_copy / "services" / "scorer" / "Dockerfile").unlink(missing_ok=True)
    monkeypatch.setattr(pkg, "ZIP_LIMIT_BYTES", 10)
    with pytest.raises(SystemExit, match="add services/scorer/Dockerfile"):
        build(pkg, repo_copy, "scorer", tmp_path)


# -- what each artifact carries ----------------------------------------------------------------------
HEAVY = {"pandas", "scikit-learn", "matplotlib", "scipy"}


def requirement_names(service: str) -> set[str]:
    text = (REPO / "services" / service / "requirements.txt").read_text()
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return {re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower() for line in lines if line}


def code_imports(service: str, module: str) -> bool:
    """Whether the service's own code imports ``module`` anywhere (module level or in a function)."""
    pattern = re.compile(rf"^\s*(import|from) {module}\b", re.M)
    return any(pattern.search(p.read_text()) for p in (REPO / "services" / service).rglob("*.py"))


def test_fetcher_and_notifier_are_zips_without_the_heavy_libraries() -> None:
    for service in ("fetcher", "notifier"):
        assert not (REPO / "services" / service / "Dockerfile").exists(), f"{service} must deploy as a zip"
    assert not requirement_names("notifier") & (HEAVY | {"numpy"}), "the notifier reads scores with pyarrow alone"
    assert not requirement_names("fetcher") & {"scikit-learn", "matplotlib", "scipy"}
    # pandas only while the fetcher's own code imports it (canonical.py's fallback for inputs Arrow cannot
    # convert exactly): once it does not, the requirement must go too.
    assert ("pandas" in requirement_names("fetcher")) == code_imports("fetcher", "pandas")


def test_no_service_requires_a_library_its_code_never_names() -> None:
    """matplotlib only where the report is rendered, scikit-learn only where a model is loaded."""
    for service in ("fetcher", "labeler", "trainer", "scorer", "notifier"):
        names = requirement_names(service)
        assert "matplotlib" not in names or service == "scorer", service
        assert "scikit-learn" not in names or code_imports(service, r"dqad\.detect\.model_format"), service


def test_trim_drops_tests_sources_and_bookkeeping_but_keeps_licences(pkg, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for rel in (
        "lib/__init__.py", "lib/tests/test_x.py", "lib/_speed.pyx", "lib/_speed.h", "lib/stub.pyi",
        "lib-1.0.dist-info/METADATA", "lib-1.0.dist-info/RECORD", "lib-1.0.dist-info/INSTALLER",
        "lib-1.0.dist-info/licenses/LICENSE", "pyarrow/__init__.py", "pyarrow/flight.py",
        "pyarrow/libarrow_flight.so.2000", "pyarrow/libarrow_substrait.so.2000", "pyarrow/include/arrow/api.h",
    ):  # fmt: skip
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x" * 10)
    removed = pkg.trim_dependencies(tree)
    left = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert left == [
        "lib-1.0.dist-info/METADATA",
        "lib-1.0.dist-info/licenses/LICENSE",
        "lib/__init__.py",
        "pyarrow/__init__.py",
        "pyarrow/libarrow_substrait.so.2000",  # pyarrow._dataset links it: kept
    ]
    assert removed == 10 * 9


def test_smoke_imports_are_what_the_code_imports(pkg) -> None:
    notifier = pkg.imported_names(REPO, "notifier")
    assert "dqad_notifier.scores" in notifier and "pyarrow.parquet" in notifier
    assert "pandas" not in notifier, "imports under TYPE_CHECKING are not runtime needs"
    trainer = pkg.imported_names(REPO, "trainer")
    assert "dqad_trainer.job" in trainer and "sklearn" not in trainer, "the training job runs in its own image"


# -- hash-locked requirements (scripts/lock.py) -------------------------------------------------------
@pytest.fixture(scope="module")
def lockmod(pkg):
    spec = importlib.util.spec_from_file_location("dqad_scripts_lock", REPO / "scripts" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


REQUIREMENT_FILES = sorted((REPO / "services").glob("*/requirements*.txt"))


@pytest.mark.parametrize("requirements", REQUIREMENT_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_requirements_file_has_a_current_hash_locked_lock(lockmod, requirements: Path) -> None:
    lock = requirements.with_suffix(".lock")
    assert lock.is_file(), f"run `python scripts/lock.py {requirements.parent.name}`"
    source, digest, pins = lockmod.parse_lock(lock)  # every line name==version --hash=sha256:...
    assert source == requirements.name
    assert digest == lockmod.sha256_file(requirements), (
        f"{requirements} changed since it was locked: run `python scripts/lock.py {requirements.parent.name}`"
    )
    text = requirements.read_text()
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    wanted = {lockmod.normalise(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]) for line in lines if line}
    assert wanted <= set(pins), f"not in the lock: {wanted - set(pins)}"


def test_the_artifact_installs_the_lock_with_hashes_checked(pkg, repo_copy: Path, tmp_path: Path, monkeypatch) -> None:
    """make package installs requirements.lock with --require-hashes; without a lock it stops."""
    calls: list[list[str]] = []
    monkeypatch.setattr(pkg.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    pkg.stage_tree(repo_copy, "notifier", tmp_path / "build", with_deps=True)
    [cmd] = calls
    assert cmd[cmd.index("-r") + 1].endswith("services/notifier/requirements.lock")
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(cmd)
    assert cmd[cmd.index("--python-version") + 1] == pkg.PYTHON_VERSION
    (repo_copy / "services" / "notifier" / "requirements.lock").unlink()
    with pytest.raises(SystemExit, match=r"scripts/lock\.py notifier"):
        pkg.stage_tree(repo_copy, "notifier", tmp_path / "build2", with_deps=True)
