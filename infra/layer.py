"""Build the common Lambda layer without Docker.

`build_layer()` returns a directory `build/layer/` whose `python/` folder holds:
- the third-party runtime dependencies, installed by pip as manylinux2014 aarch64 wheels for
  CPython 3.12 (the Lambda runtime), straight from PyPI with `--only-binary`, so no compiler and
  no Docker are needed;
- the domain library `layers/common/python/retention`, copied in.

The build is cached: pip runs again only when the requirement list (or the pip target) changes;
the library is re-copied only when one of its source files changes.  A lock file keeps parallel
synths (tests, the local runtime) from building at the same time.

If pip fails (offline, PyPI down) the layer gets only the library and a warning is printed:
synthesis never fails for that reason.  Such a "library-only" layer is retried at most once an
hour (or at every synth with RETENTION_LAYER_RETRY=1); RETENTION_LAYER_SKIP_PIP=1 never calls pip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DIR = REPO_ROOT / "layers" / "common" / "python" / "retention"
BUILD_DIR = REPO_ROOT / "build"
LAYER_DIR = BUILD_DIR / "layer"
STAMP_FILE = BUILD_DIR / "layer.stamp.json"
LOCK_FILE = BUILD_DIR / "layer.lock"

# The Lambda runtime the layer is built for; infra/constructs/functions.py uses the same value.
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_aarch64"

# Already in the Lambda Python runtime (boto3 and its dependencies): a second copy in the layer
# would shadow the runtime's and could mismatch its boto3, and it is 20+ MB.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "python_dateutil", "six",
                    "urllib3")
# Runtime dependencies of the library, without boto3 (see pyproject.toml [project].dependencies).
FALLBACK_REQUIREMENTS = (
    "aws-lambda-powertools[tracer]>=3.20,<4",
    "pydantic>=2.7,<3",
    "jinja2>=3.1,<4",
    "pyyaml>=6,<7",
)
RETRY_AFTER_SECONDS = 3600
BUILD_RECIPE = 2  # bump when the way the layer is assembled changes, to invalidate old builds
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache")


@dataclass(frozen=True)
class LayerBuild:
    path: Path  # the asset directory (contains python/)
    asset_hash: str  # stable content hash, used as the CDK asset hash (no fingerprinting of 15 MB)
    complete: bool  # False when only the library is in it (pip failed or was skipped)


def requirements() -> list[str]:
    """The layer's third-party requirements: pyproject's dependencies minus what Lambda provides."""
    try:
        project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
        deps = list(project["dependencies"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        deps = list(FALLBACK_REQUIREMENTS)
    return sorted(d for d in deps if _dist_name(d) not in {"boto3", "botocore"})


def _dist_name(requirement: str) -> str:
    name = requirement
    for sep in "[<>=!~; ":
        name = name.split(sep, 1)[0]
    return name.strip().lower()


def _pip_args(target: Path, reqs: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-input", "--retries", "1", "--timeout", "20",
        "--platform", PLATFORM, "--only-binary=:all:", "--python-version", PYTHON_VERSION,
        "--implementation", "cp", "--no-compile", "--target", str(target), *reqs,
    ]


def deps_hash(reqs: list[str]) -> str:
    key = json.dumps({"recipe": BUILD_RECIPE, "reqs": reqs, "args": _pip_args(Path("T"), [])[3:], "drop": RUNTIME_PROVIDED})
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def library_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(_library_files()):
        digest.update(str(path.relative_to(LIBRARY_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _library_files() -> Iterator[Path]:
    for path in LIBRARY_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            yield path


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_stamp() -> dict:
    try:
        return json.loads(STAMP_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _install_deps(target: Path, reqs: list[str]) -> bool:
    try:
        proc = subprocess.run(_pip_args(target, reqs), capture_output=True, text=True, timeout=600,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _warn(f"pip could not run ({exc})")
        return False
    if proc.returncode != 0:
        _warn(f"pip failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        return False
    for entry in list(target.iterdir()):
        if _top_level_name(entry) in RUNTIME_PROVIDED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)
    return True


def _top_level_name(entry: Path) -> str:
    """`botocore-1.x.dist-info` -> botocore, `six.py` -> six, `dateutil` -> dateutil."""
    name = entry.name
    if name.endswith((".dist-info", ".egg-info")):
        return name.split("-", 1)[0].lower()
    return name.removesuffix(".py").lower()


def _warn(message: str) -> None:
    text = f"[infra.layer] {message}; the common layer will contain only the retention library."
    warnings.warn(text, stacklevel=3)
    print(text, file=sys.stderr)


def _copy_library(python_dir: Path) -> None:
    dest = python_dir / "retention"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(LIBRARY_DIR, dest, ignore=_IGNORED)


def build_layer(force: bool = False) -> LayerBuild:
    """Build (or reuse) build/layer/ and return it; never raises for a pip failure."""
    reqs = requirements()
    want_deps, want_lib = deps_hash(reqs), library_hash()
    with _locked():
        stamp = _read_stamp()
        python_dir = LAYER_DIR / "python"
        have_dir = python_dir.is_dir()
        complete = stamp.get("complete", False)
        skip_pip = os.environ.get("RETENTION_LAYER_SKIP_PIP") == "1"
        retry_due = (os.environ.get("RETENTION_LAYER_RETRY") == "1"
                     or time.time() - stamp.get("attempted_at", 0) > RETRY_AFTER_SECONDS)
        deps_ok = have_dir and stamp.get("deps") == want_deps and (complete or skip_pip or not retry_due)
        if force or not deps_ok:
            tmp = BUILD_DIR / f"layer.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "python").mkdir(parents=True)
            complete = False if skip_pip else _install_deps(tmp / "python", reqs)
            if skip_pip:
                print("[infra.layer] RETENTION_LAYER_SKIP_PIP=1: library-only layer", file=sys.stderr)
            _copy_library(tmp / "python")
            shutil.rmtree(LAYER_DIR, ignore_errors=True)
            tmp.rename(LAYER_DIR)
            stamp = {"deps": want_deps, "lib": want_lib, "complete": complete, "attempted_at": time.time(),
                     "installed": sorted(p.name for p in (LAYER_DIR / "python").glob("*.dist-info"))}
            STAMP_FILE.write_text(json.dumps(stamp, indent=1))
        elif stamp.get("lib") != want_lib or not (python_dir / "retention").is_dir():
            _copy_library(python_dir)
            stamp["lib"] = want_lib
            STAMP_FILE.write_text(json.dumps(stamp, indent=1))
        # The resolved versions (dist-info names) are part of the hash: a rebuild that picks up a
        # newer pydantic must produce a new asset, or `cdk deploy` would keep the old zip.
        key = json.dumps([stamp["deps"], stamp["lib"], stamp["complete"], stamp.get("installed", [])])
        asset_hash = hashlib.sha256(key.encode()).hexdigest()
        return LayerBuild(path=LAYER_DIR, asset_hash=asset_hash, complete=bool(stamp["complete"]))


if __name__ == "__main__":
    started = time.monotonic()
    result = build_layer(force="--force" in sys.argv)
    print(f"{result.path} complete={result.complete} hash={result.asset_hash[:12]} "
          f"({time.monotonic() - started:.1f} s)")
