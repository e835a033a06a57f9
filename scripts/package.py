"""Build one service's deployable artifact, alone and reproducibly: ``make package SERVICE=<name>``.

Why this shape:
- Each stage deploys on its own (docs/architecture.md §2), so each gets its own artifact built from exactly three
  inputs: ``services/<name>/`` (its packages), ``shared/dqad`` (the one library), and
  ``services/<name>/requirements.lock`` (made from its ``requirements.txt`` by ``scripts/lock.py``:
  every distribution pinned with the sha256 of its wheel) installed with ``--require-hashes`` from
  manylinux wheels for Lambda's x86_64 Linux, so the artifact hash depends only on code and lock.
  Nothing else in the repository reaches it, so changing one service changes only its artifact hash.
- Reproducible: files are added in sorted order with a fixed timestamp and fixed permissions, and no
  bytecode or build-machine paths are packed, so the same inputs give the same SHA-256. Terraform keys
  the upload on that hash: an unchanged service is not redeployed.
- Zip or image: the unpacked size is measured against Lambda's 250 MB zip limit. A service with a
  ``services/<name>/Dockerfile`` is an image: the same staged tree becomes ``dist/<name>/image/app``
  beside the Dockerfile (the image build then needs no network and installs exactly what was measured);
  ``--docker-build`` builds it when a Docker engine is available. A zip service over the limit fails
  with what to do. Today fetcher, labeler, trainer and notifier are zips; the scorer (scikit-learn and
  scipy for the model, matplotlib for the report) is an image.
- Only what runs: each service's requirements are what its own code imports; test suites, C/Cython
  sources, headers, type stubs, pyarrow's Flight RPC and wheel bookkeeping are trimmed (``TRIM_*``).
  The manifest lists every distribution's installed size, so what makes an artifact big is visible.
- Measured, not assumed: the handler module is imported in fresh interpreters whose only path is the
  built tree, and so is every module the service's code imports (a missing requirement or an
  over-eager trim fails the build). Lambda runs 3.12; on another interpreter the same requirements are
  built for it to time the import, and the report says so.

Usage::

    python scripts/package.py fetcher              # dist/fetcher/{fetcher.zip | image/}, manifest.json
    python scripts/package.py fetcher --no-import  # skip the cold-import measurement
    python scripts/package.py fetcher --no-deps    # code only: fast, for tests and code-only diffs
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, field
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
    packages: dict[str, dict[str, int]] = field(default_factory=dict)  # per distribution, as installed
    trimmed_bytes: int = 0
    cold_import: dict[str, object] | None = None  # ColdImport, when measured


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


def install_requirements(
    requirements: Path, target: Path, python_version: str | None = PYTHON_VERSION, platform: str | None = PLATFORM
) -> None:
    """Wheels only, never an sdist compiled for the build machine.

    With the defaults, wheels for Lambda (CPython 3.12, manylinux x86_64); with ``python_version=None``
    the same requirements for the interpreter running this script, which is what the cold-import
    measurement needs (a 3.12 wheel's extension modules do not load in another interpreter).
    """
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--no-compile", "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip
    if requirements.suffix == ".lock":  # the whole closure is in it, each wheel's sha256 checked
        cmd += ["--require-hashes", "--no-deps"]
    if python_version is not None:
        cmd += ["--implementation", "cp", "--python-version", python_version]
    if platform is not None:
        cmd += ["--platform", platform]
    subprocess.run(cmd, check=True)
    # Console scripts carry the build machine's interpreter path: useless in Lambda, not reproducible.
    shutil.rmtree(target / "bin", ignore_errors=True)


# -- what a deployed function never reads ------------------------------------------------------------
# Test suites, C/Cython sources and headers (for building extensions), type stubs.
TRIM_DIRS = {"tests"}
TRIM_SUFFIXES = (".pyx", ".pxd", ".pxi", ".h", ".hpp", ".c", ".cc", ".cpp", ".pyi")
# Per package: parts no dqad code imports. pyarrow's Flight RPC (libarrow_flight, 20 MB) is loaded only
# by ``pyarrow.flight``; Substrait stays, ``pyarrow._dataset`` links it. The cold import and the smoke
# import of every module dqad uses run on the trimmed tree, so a trim that breaks an import fails the build.
TRIM_PATHS = {
    "pyarrow": ("include", "src", "flight.py", "_flight.*", "libarrow_flight.so*", "libarrow_python_flight.so*"),
    "numpy": ("_core/include", "_core/lib/pkgconfig"),
}
# Of a wheel's .dist-info, importlib.metadata needs METADATA (and entry points); licences are kept
# because the artifact redistributes the code. The install bookkeeping is dropped.
DIST_INFO_DROP = ("RECORD", "INSTALLER", "REQUESTED", "WHEEL", "direct_url.json")


def _record_sizes(tree: Path) -> dict[str, dict[str, int]]:
    """Bytes per installed distribution, from each wheel's RECORD, before and after trimming."""
    sizes: dict[str, dict[str, int]] = {}
    for record in sorted(tree.glob("*.dist-info/RECORD")):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        paths = [tree / line.split(",")[0] for line in record.read_text().splitlines() if line.strip()]
        files = [p for p in paths if p.is_file() and ".." not in p.relative_to(tree).parts]
        sizes[name] = {"bytes": sum(p.stat().st_size for p in files), "files": len(files)}
    return sizes


def trim_dependencies(tree: Path) -> int:
    """Delete what no deployed function reads (see TRIM_*); returns the bytes removed."""
    doomed: set[Path] = set()
    for path in tree.rglob("*"):
        if (path.is_dir() and path.name in TRIM_DIRS) or (path.is_file() and path.name.endswith(TRIM_SUFFIXES)):
            doomed.add(path)
    for package, patterns in TRIM_PATHS.items():
        for pattern in patterns:
            doomed.update((tree / package).glob(pattern))
    for info in tree.glob("*.dist-info"):
        doomed.update(info / name for name in DIST_INFO_DROP if (info / name).exists())
    removed = 0
    for path in sorted(doomed, key=lambda p: len(p.parts)):
        if not path.exists():
            continue  # inside a directory already removed
        if path.is_dir():
            removed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path)
        else:
            removed += path.stat().st_size
            path.unlink()
    return removed


@dataclass
class DependencyReport:
    packages: dict[str, dict[str, int]]  # distribution -> {"bytes": as installed, "files": n}, before trimming
    trimmed_bytes: int


def stage_tree(
    root: Path, service: str, build: Path, with_deps: bool, python_version: str | None = PYTHON_VERSION
) -> DependencyReport | None:
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    deps = None
    if with_deps:
        requirements = root / "services" / service / "requirements.txt"
        if not requirements.exists():
            raise SystemExit(f"{requirements} is missing: every service declares its runtime needs")
        if python_version == PYTHON_VERSION:  # the artifact: exactly the locked wheels
            requirements = requirements.with_suffix(".lock")
            if not requirements.exists():
                raise SystemExit(f"{requirements} is missing: run `python scripts/lock.py {service}`")
        # else the cold-import measurement on another interpreter, which the lock's 3.12 wheels do not fit
        install_requirements(requirements, build, python_version, PLATFORM if python_version else None)
        sizes = _record_sizes(build)
        deps = DependencyReport(sizes, trim_dependencies(build))
    # Our code last, so it wins over anything a wheel might ship under the same name.
    for package in service_packages(root, service):
        copy_tree(package, build / package.name)
    copy_tree(root / "shared" / "dqad", build / "dqad")
    return deps


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


# -- cold import, measured from the built tree ---------------------------------------------------------
HEAVY = ("pandas", "pyarrow", "numpy", "scipy", "sklearn", "matplotlib", "psycopg", "boto3")

_PROBE = """
import importlib, json, sys, time
sys.path[:0] = [{tree!r}]
t0 = time.perf_counter()
importlib.import_module({module!r})
seconds = time.perf_counter() - t0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
failed = {{}}
for name in {smoke!r}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps({{"seconds": seconds, "heavy": heavy, "failed": failed}}))
"""


@dataclass
class ColdImport:
    module: str
    python: str  # the interpreter measured, which may differ from Lambda's (see note)
    note: str
    runs: int
    median_s: float
    max_s: float
    heavy_modules: list[str]  # heavy libraries the handler module loads at import


# What dqad.stage and dqad.storage import where they run, on every SQS-fed stage: the batch utility, and
# boto3's managed transfer for large files.
LIBRARY_IMPORTS = ("aws_lambda_powertools.utilities.batch", "boto3.s3.transfer")
# Shipped in a Lambda's package but run elsewhere: the training job runs in the SageMaker Processing image
# (services/trainer/requirements-job.txt), so its imports are not the trainer Lambda's requirements.
RUNS_ELSEWHERE = {"dqad_trainer.job"}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(root: Path, service: str) -> list[str]:
    """Every module a service's own code imports, at module level or inside a function (not under
    TYPE_CHECKING), and every module of its packages: what must import from the trimmed tree."""
    names: set[str] = set()
    for package in service_packages(root, service):
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package.parent).with_suffix("")
            module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            names.add(module)
            if module in RUNS_ELSEWHERE:
                continue
            todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
            while todo:
                node = todo.pop()
                if _type_checking(node):
                    todo.extend(getattr(node, "orelse", []))
                    continue
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
                todo.extend(ast.iter_child_nodes(node))
    names.update(LIBRARY_IMPORTS)
    if "pyarrow" in names:
        names.update(("pyarrow.parquet", "pyarrow.dataset"))  # dqad.storage's Parquet paths, imported there
    return sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names)


def measure_cold_import(root: Path, service: str, tree: Path, runs: int = 3) -> ColdImport:
    """Import the handler module in fresh interpreters whose only path besides the standard library is
    ``tree`` (no site-packages: ``-I -S``), then import every module the service names; any that fails
    (a missing requirement, an over-eager trim) fails the build."""
    module = f"dqad_{service}.handler"
    smoke = imported_names(root, service)
    results = []
    for _ in range(runs):
        probe = _PROBE.format(tree=str(tree), module=module, heavy=HEAVY, smoke=smoke)
        done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{service}: importing {module} from the built tree failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    failed = results[0]["failed"]
    if failed:
        lines = "\n".join(f"  {name}: {why}" for name, why in sorted(failed.items()))
        raise SystemExit(f"{service}: modules its code imports do not import from the built tree:\n{lines}")
    seconds = sorted(r["seconds"] for r in results)
    local = f"{sys.version_info.major}.{sys.version_info.minor}"
    note = (
        "measured on the Lambda interpreter"
        if local == PYTHON_VERSION
        else f"measured from a build of the same requirements for local CPython {local} (no {PYTHON_VERSION} here): "
        f"the deployed {PYTHON_VERSION} wheels cannot load in this interpreter"
    )
    return ColdImport(
        module, platform.python_version(), note, runs, statistics.median(seconds), seconds[-1], results[0]["heavy"]
    )


def package(
    root: Path,
    service: str,
    out_dir: Path,
    with_deps: bool,
    docker_build: bool = False,
    measure_import: bool | None = None,
) -> Manifest:
    """Build ``service``'s artifact in ``out_dir/<service>``; with dependencies, also measure its handler's
    cold import (``measure_import`` defaults to ``with_deps``)."""
    if service not in stage_names(root):
        raise SystemExit(f"unknown service {service!r}; expected one of {', '.join(stage_names(root))}")
    dest = out_dir / service
    build = dest / "build"
    deps = stage_tree(root, service, build, with_deps)
    size = unpacked_size(build)
    dockerfile = root / "services" / service / "Dockerfile"

    cold = None
    if measure_import if measure_import is not None else with_deps:
        local = dest / "import-probe"
        same = f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION
        if same:
            cold = measure_cold_import(root, service, build)
        else:
            stage_tree(root, service, local, with_deps, python_version=None)
            cold = measure_cold_import(root, service, local)
            shutil.rmtree(local)

    for stale in (dest / f"{service}.zip", dest / "image"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()

    extras = {
        "packages": deps.packages if deps else {},
        "trimmed_bytes": deps.trimmed_bytes if deps else 0,
        "cold_import": asdict(cold) if cold else None,
    }
    if dockerfile.exists():
        context = dest / "image"
        context.mkdir(parents=True)
        build.rename(context / "app")
        shutil.copyfile(dockerfile, context / "Dockerfile")
        manifest = Manifest(
            service, "image", tree_digest(context), size, IMAGE_LIMIT_BYTES, with_deps, str(context), **extras
        )
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
        manifest = Manifest(
            service, "zip", file_digest(artifact), size, ZIP_LIMIT_BYTES, with_deps, str(artifact), **extras
        )

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
    if m.packages:
        print(f"  trimmed {human(m.trimmed_bytes)} (tests, headers, sources, unused parts); as installed:")
        for name, info in sorted(m.packages.items(), key=lambda kv: -kv[1]["bytes"])[:12]:
            print(f"    {name:<28} {human(info['bytes']):>10}")
    if m.cold_import:
        c = m.cold_import
        print(
            f"  cold import of {c['module']}: median {c['median_s']:.3f} s, worst {c['max_s']:.3f} s "
            f"of {c['runs']} fresh interpreters; loads {', '.join(c['heavy_modules']) or 'no heavy library'}"
        )
        print(f"    ({c['note']})")
    print(f"  artifact {m.artifact}\n  sha256   {m.sha256}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="stage to package (dqad.topology.STAGE_NAMES)")
    parser.add_argument("--no-deps", action="store_true", help="package code only (skip requirements.txt)")
    parser.add_argument("--no-import", action="store_true", help="skip the cold-import measurement")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <root>/dist)")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    parser.add_argument("--docker-build", action="store_true", help="build the image when the service has one")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = (args.out or root / "dist").resolve()
    measure = False if args.no_import else None  # None: measured whenever dependencies are installed
    package(root, args.service, out, not args.no_deps, args.docker_build, measure_import=measure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
