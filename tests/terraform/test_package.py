"""`make package SERVICE=<name>`: one service's artifact, reproducible, changed only by its own code.

Why: each stage deploys on its own, and Terraform redeploys a stage exactly when its artifact hash
changes. Builds here use --no-deps (code only) so they are fast and offline; the dependency install is
the same pip command for every service and does not affect what is tested.
"""

from __future__ import annotations

import importlib.util
import json
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
    m = build(pkg, repo_copy, "fetcher", tmp_path / "out")
    assert m.kind == "image"
    context = Path(m.artifact)
    assert (context / "Dockerfile").exists()
    assert (context / "app" / "dqad_fetcher" / "handler.py").exists()
    assert (context / "app" / "dqad" / "stage.py").exists()


def test_unknown_service_is_refused(pkg, repo_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown service"):
        build(pkg, repo_copy, "nope", tmp_path)


def test_zip_over_the_limit_is_refused(pkg, repo_copy: Path, tmp_path: Path, monkeypatch) -> None:
    (repo_copy / "services" / "scorer" / "Dockerfile").unlink(missing_ok=True)
    monkeypatch.setattr(pkg, "ZIP_LIMIT_BYTES", 10)
    with pytest.raises(SystemExit, match="add services/scorer/Dockerfile"):
        build(pkg, repo_copy, "scorer", tmp_path)
