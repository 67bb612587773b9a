"""Build the common Lambda layer without Docker.

`build_layer()` returns a directory `build/layer/<hash>/` whose `python/` folder holds:
- the third-party runtime dependencies, installed by pip as manylinux2014 aarch64 wheels for
  CPython 3.12 (the Lambda runtime), straight from PyPI with `--only-binary`, so no compiler and
  no Docker are needed (boto3 and its dependencies are left out: the runtime has them);
- the domain library `layers/common/python/retention`, copied in.

Cached: pip runs only when the requirement list (pyproject.toml) or the pip options change
(`build/layer-deps/<deps hash>/`); a changed library file only makes a new asset directory
(hard links to the dependencies + a fresh copy of the library). Asset directories are immutable
and named by their content hash, which is also the CDK asset hash (no fingerprinting of 18 MB
at every synth), so a synth running in parallel never sees a half-updated layer. A lock file
serializes builds (tests, the local runtime, `cdk synth`).

If pip fails (offline, PyPI down) the layer gets only the library and a warning is printed:
synthesis never fails for that reason. pip is retried at most once an hour after a failure
(at every synth with RETENTION_LAYER_RETRY=1); RETENTION_LAYER_SKIP_PIP=1 never calls pip.
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
LAYER_DIR = BUILD_DIR / "layer"  # one immutable sub-directory per asset hash
DEPS_DIR = BUILD_DIR / "layer-deps"  # pip targets, one per requirements hash (+ <hash>.json)
BUILD_LOCK_FILE = BUILD_DIR / "layer.lock"  # a mutex for parallel synths, not the requirements lock
KEEP_ASSET_DIRS = 3

# The Lambda runtime the layer is built for; infra/constructs/functions.py uses the same value.
PYTHON_VERSION = "3.12"
LOCK_FILE = REPO_ROOT / "layers" / "common" / "requirements.lock"
PLATFORM = "manylinux2014_aarch64"

# Already in the Lambda Python runtime (boto3 and its dependencies): a second copy in the layer
# would shadow the runtime's and could mismatch its boto3, and it is 20+ MB.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "python_dateutil", "six", "urllib3")
# Runtime dependencies of the library, without boto3 (see pyproject.toml [project].dependencies).
FALLBACK_REQUIREMENTS = (
    "aws-lambda-powertools[tracer]>=3.20,<4",
    "pydantic>=2.7,<3",
    "jinja2>=3.1.6,<4",
    "pyyaml>=6,<7",
)
RETRY_AFTER_SECONDS = 3600
BUILD_RECIPE = 4  # bump when the way the layer is assembled changes, to invalidate old builds
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
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "1",
        "--timeout",
        "20",
        "--platform",
        PLATFORM,
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--no-compile",
        "--target",
        str(target),
        *reqs,
    ]


def deps_hash(reqs: list[str]) -> str:
    lock = LOCK_FILE.read_text() if LOCK_FILE.is_file() else ""
    key = json.dumps(
        {"recipe": BUILD_RECIPE, "reqs": reqs, "args": _pip_args(Path("T"), [])[3:], "drop": RUNTIME_PROVIDED,
         "lock": hashlib.sha256(lock.encode()).hexdigest()}
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_args(reqs: list[str]) -> list[str]:
    """pyproject's requirements, installed from the hash-pinned lock when it is there and still covers them
    (a changed pyproject without a regenerated lock falls back to the ranges, with a warning)."""
    if LOCK_FILE.is_file() and reqs == requirements():
        locked = {_dist_name(line) for line in LOCK_FILE.read_text().splitlines() if line and line[0] != "#"}
        if {_dist_name(r) for r in reqs} <= locked:
            return ["--require-hashes", "-r", str(LOCK_FILE)]
        _warn(f"{LOCK_FILE.name} does not cover pyproject's dependencies: installing unpinned ranges")
    return reqs


def _install_deps(target: Path, reqs: list[str]) -> bool:
    try:
        # argv is fixed (this interpreter's pip, the lock file or the requirement list from pyproject.toml)
        proc = subprocess.run(  # noqa: S603
            _pip_args(target, _install_args(reqs)), capture_output=True, text=True, timeout=600, check=False
        )
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


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # dependency files are never modified in place: sharing them is safe
    except OSError:
        shutil.copy2(src, dst)


def _ensure_deps(reqs: list[str], force: bool) -> tuple[Path, dict]:
    """build/layer-deps/<hash>/ with the third-party packages (empty after a pip failure)."""
    key = deps_hash(reqs)
    target, info_file = DEPS_DIR / key, DEPS_DIR / f"{key}.json"
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        info = {}
    skip_pip = os.environ.get("RETENTION_LAYER_SKIP_PIP") == "1"
    retry_due = (
        os.environ.get("RETENTION_LAYER_RETRY") == "1"
        or time.time() - info.get("attempted_at", 0) > RETRY_AFTER_SECONDS
    )
    if target.is_dir() and info and not force and (info["complete"] or skip_pip or not retry_due):
        return target, info

    tmp = DEPS_DIR / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if skip_pip:
        print("[infra.layer] RETENTION_LAYER_SKIP_PIP=1: library-only layer", file=sys.stderr)
        complete = False
    else:
        complete = _install_deps(tmp, reqs)
    if not complete:  # never ship a half-installed dependency set
        shutil.rmtree(tmp)
        tmp.mkdir()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    info = {
        "requirements": reqs,
        "complete": complete,
        "attempted_at": time.time(),
        "installed": sorted(p.name for p in target.glob("*.dist-info")),
    }
    info_file.write_text(json.dumps(info, indent=1))
    for stale in DEPS_DIR.iterdir():  # other requirement sets
        if not stale.name.startswith(key):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return target, info


def build_layer(force: bool = False) -> LayerBuild:
    """Build (or reuse) the layer asset directory and return it; never raises for a pip failure."""
    reqs = requirements()
    with _locked():
        deps_dir, info = _ensure_deps(reqs, force)
        tmp = BUILD_DIR / f"layer.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        # Hash what is copied (not the source tree), so the hash always describes the content.
        shutil.copytree(LIBRARY_DIR, tmp / "retention", ignore=_IGNORED)
        key = json.dumps(
            [BUILD_RECIPE, deps_hash(reqs), info["complete"], info["installed"], _tree_hash(tmp / "retention"),
             target_python() is not None]
        )
        asset_hash = hashlib.sha256(key.encode()).hexdigest()
        final = LAYER_DIR / asset_hash[:24]
        if not (final / "python" / "retention").is_dir():
            staging = tmp / "asset"
            shutil.copytree(deps_dir, staging / "python", copy_function=_link_or_copy)
            (tmp / "retention").rename(staging / "python" / "retention")
            _compile(staging / "python")
            shutil.rmtree(final, ignore_errors=True)
            LAYER_DIR.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
        os.utime(final)  # most recently used, for pruning
        shutil.rmtree(tmp, ignore_errors=True)
        _prune(keep=final)
        return LayerBuild(path=final, asset_hash=asset_hash, complete=bool(info["complete"]))


def target_python() -> str | None:
    """An interpreter of the Lambda runtime's version (its .pyc magic number must match): on PATH, in
    pyenv, or RETENTION_LAYER_PYTHON."""
    explicit = os.environ.get("RETENTION_LAYER_PYTHON")
    if explicit:
        return explicit
    if sys.version_info[:2] == tuple(int(x) for x in PYTHON_VERSION.split(".")):
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob(f"{PYTHON_VERSION}.*/bin/python{PYTHON_VERSION}"), reverse=True)]
    found = shutil.which(f"python{PYTHON_VERSION}")
    for candidate in [*candidates, *([found] if found else [])]:
        try:  # a pyenv shim on PATH may name a version that is not selected: ask it
            ok = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],  # noqa: S603
                                capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0 and ok.stdout.strip() == str(tuple(int(x) for x in PYTHON_VERSION.split("."))):
            return candidate
    return None


def _compile(root: Path) -> bool:
    """Byte-compile the layer for the runtime: a layer is read-only under /opt, so without these files
    every module is compiled from source at every cold start. `unchecked-hash` .pyc are used without
    looking at the source's mtime (zip timestamps do not matter) and never go stale: the asset is
    immutable."""
    python = target_python()
    if python is None:
        _warn_only(f"no python{PYTHON_VERSION} found (set RETENTION_LAYER_PYTHON): the layer ships sources only")
        return False
    try:
        proc = subprocess.run(  # noqa: S603 (fixed argv: an interpreter path and compileall options)
            [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
             "-s", str(root), "-p", "/opt/python", str(root)],
            capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _warn_only(f"compileall could not run ({exc}): the layer ships sources only")
        return False
    if proc.returncode != 0:  # a file that does not compile for 3.12 (vendored py2 tests, …) is skipped
        print(f"[infra.layer] compileall: {(proc.stdout + proc.stderr).strip()[-400:]}", file=sys.stderr)
    return True


def _warn_only(message: str) -> None:
    warnings.warn(f"[infra.layer] {message}", stacklevel=3)
    print(f"[infra.layer] {message}", file=sys.stderr)


def _prune(keep: Path) -> None:
    """Keep the few most recently used asset directories (a parallel synth may still copy one)."""
    entries = sorted(LAYER_DIR.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    kept = 0
    for entry in entries:
        if entry == keep or (entry.is_dir() and len(entry.name) == 24 and kept < KEEP_ASSET_DIRS - 1):
            kept += entry != keep
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


if __name__ == "__main__":
    started = time.monotonic()
    result = build_layer(force="--force" in sys.argv)
    print(
        f"{result.path} complete={result.complete} hash={result.asset_hash[:12]} ({time.monotonic() - started:.1f} s)"
    )
