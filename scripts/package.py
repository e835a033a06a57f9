"""Build one service's deployable artifact, alone and reproducibly: ``make package SERVICE=<name>``.

Why this shape:
- Each stage deploys on its own (docs/architecture.md §2), so each gets its own artifact built from exactly three
  inputs: ``services/<name>/`` (its packages), ``shared/dqad`` (the one library), and
  ``services/<name>/requirements.txt`` installed from manylinux wheels for Lambda's x86_64 Linux.
  Nothing else in the repository reaches it, so changing one service changes only its artifact hash.
- Reproducible: files are added in sorted order with a fixed timestamp and fixed permissions, and no
  bytecode or build-machine paths are packed, so the same inputs give the same SHA-256. Terraform keys
  the upload on that hash: an unchanged service is not redeployed.
- Zip or image: the unpacked size is measured against Lambda's 250 MB zip limit. A service with a
  ``services/<name>/Dockerfile`` is an image: the same staged tree becomes ``dist/<name>/image/app``
  beside the Dockerfile (the image build then needs no network and installs exactly what was measured);
  ``--docker-build`` builds it when a Docker engine is available. A zip service over the limit fails
  with what to do.

Usage::

    python scripts/package.py fetcher            # dist/fetcher/{fetcher.zip | image/}, manifest.json
    python scripts/package.py fetcher --no-deps  # code only: fast, for tests and code-only diffs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ZIP_LIMIT_BYTES = 250 * 1024 * 1024  # Lambda: unzipped deployment package incl. layers
IMAGE_LIMIT_BYTES = 10 * 1024 * 1024 * 1024  # Lambda: uncompressed container image
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.12"  # must match the runtime in terraform/modules/service and the Dockerfiles
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass
class Manifest:
    service: str
    kind: str  # "zip" or "image"
    sha256: str  # of the zip file, or of the image context tree (see tree_digest)
    unpacked_bytes: int
    limit_bytes: int
    with_dependencies: bool
    artifact: str


def stage_names(root: Path) -> tuple[str, ...]:
    """The services that exist, from the one topology (not from directory listing)."""
    sys.path.insert(0, str(root / "shared"))
    try:
        from dqad.topology import STAGE_NAMES
    finally:
        sys.path.pop(0)
    return STAGE_NAMES


def _wanted(path: Path) -> bool:
    return not (set(path.parts) & SKIP_DIRS) and not path.name.endswith(SKIP_SUFFIXES)


def copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and _wanted(rel):
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def service_packages(root: Path, service: str) -> list[Path]:
    """Top-level Python packages of a service (``services/<name>/dqad_<name>`` and any siblings)."""
    base = root / "services" / service
    packages = sorted(p for p in base.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    if not packages:
        raise SystemExit(f"{base}: no Python package (a directory with __init__.py) to package")
    return packages


def install_requirements(requirements: Path, target: Path) -> None:
    """Wheels for Lambda's platform only: never an sdist compiled for the build machine."""
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", "--no-compile", "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    # Console scripts carry the build machine's interpreter path: useless in Lambda, not reproducible.
    shutil.rmtree(target / "bin", ignore_errors=True)


def stage_tree(root: Path, service: str, build: Path, with_deps: bool) -> None:
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    if with_deps:
        requirements = root / "services" / service / "requirements.txt"
        if not requirements.exists():
            raise SystemExit(f"{requirements} is missing: every service declares its runtime needs")
        install_requirements(requirements, build)
    # Our code last, so it wins over anything a wheel might ship under the same name.
    for package in service_packages(root, service):
        copy_tree(package, build / package.name)
    copy_tree(root / "shared" / "dqad", build / "dqad")


def files_of(tree: Path) -> list[Path]:
    return sorted((p for p in tree.rglob("*") if p.is_file() and _wanted(p.relative_to(tree))), key=_key(tree))


def _key(tree: Path):
    return lambda p: p.relative_to(tree).as_posix()


def unpacked_size(tree: Path) -> int:
    return sum(p.stat().st_size for p in files_of(tree))


def _mode(path: Path) -> int:
    return 0o755 if os.access(path, os.X_OK) else 0o644


def write_zip(tree: Path, out: Path) -> None:
    """Deterministic zip: sorted entries, fixed date, fixed permissions, fixed compression level."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as zf:
        for path in files_of(tree):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), date_time=FIXED_DATE)
            info.external_attr = (0o100000 | _mode(path)) << 16
            info.create_system = 3  # Unix, so the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def tree_digest(tree: Path) -> str:
    """SHA-256 over (path, mode, content) of every file: the identity of an image build context."""
    h = hashlib.sha256()
    for path in files_of(tree):
        h.update(path.relative_to(tree).as_posix().encode() + b"\0")
        h.update(f"{_mode(path):o}".encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n < 1024**3 else f"{n / 1024**3:.2f} GB"


def package(root: Path, service: str, out_dir: Path, with_deps: bool, docker_build: bool = False) -> Manifest:
    if service not in stage_names(root):
        raise SystemExit(f"unknown service {service!r}; expected one of {', '.join(stage_names(root))}")
    dest = out_dir / service
    build = dest / "build"
    stage_tree(root, service, build, with_deps)
    size = unpacked_size(build)
    dockerfile = root / "services" / service / "Dockerfile"

    for stale in (dest / f"{service}.zip", dest / "image"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()

    if dockerfile.exists():
        context = dest / "image"
        context.mkdir(parents=True)
        build.rename(context / "app")
        shutil.copyfile(dockerfile, context / "Dockerfile")
        manifest = Manifest(service, "image", tree_digest(context), size, IMAGE_LIMIT_BYTES, with_deps, str(context))
        if size > IMAGE_LIMIT_BYTES:
            raise SystemExit(f"{service}: {human(size)} exceeds Lambda's image limit {human(IMAGE_LIMIT_BYTES)}")
    else:
        if size > ZIP_LIMIT_BYTES:
            shutil.rmtree(build)
            raise SystemExit(
                f"{service}: {human(size)} unpacked exceeds Lambda's zip limit {human(ZIP_LIMIT_BYTES)}; "
                f"add services/{service}/Dockerfile to deploy it as an image"
            )
        artifact = dest / f"{service}.zip"
        write_zip(build, artifact)
        shutil.rmtree(build)
        manifest = Manifest(service, "zip", file_digest(artifact), size, ZIP_LIMIT_BYTES, with_deps, str(artifact))

    (dest / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    report(manifest)
    if manifest.kind == "image":
        tag = f"dqad-{service}:{manifest.sha256[:12]}"
        cmd = ["docker", "build", "--platform", "linux/amd64", "-t", tag, manifest.artifact]
        if docker_build:
            subprocess.run(cmd, check=True)
        else:
            print(f"  build the image with: {' '.join(cmd)}")
    return manifest


def report(m: Manifest) -> None:
    share = 100 * m.unpacked_bytes / ZIP_LIMIT_BYTES
    verdict = (
        f"{share:.0f}% of the {human(ZIP_LIMIT_BYTES)} zip limit"
        if m.kind == "zip"
        else f"{share:.0f}% of the {human(ZIP_LIMIT_BYTES)} zip limit -> container image "
        f"(limit {human(IMAGE_LIMIT_BYTES)})"
    )
    deps = "" if m.with_dependencies else " (code only, --no-deps)"
    print(f"{m.service}: {m.kind} {human(m.unpacked_bytes)} unpacked{deps}, {verdict}")
    print(f"  artifact {m.artifact}\n  sha256   {m.sha256}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="stage to package (dqad.topology.STAGE_NAMES)")
    parser.add_argument("--no-deps", action="store_true", help="package code only (skip requirements.txt)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <root>/dist)")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    parser.add_argument("--docker-build", action="store_true", help="build the image when the service has one")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    package(root, args.service, (args.out or root / "dist").resolve(), not args.no_deps, args.docker_build)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
