"""The Docker-free layer build: caching and the offline fallback (on a temporary build dir)."""

from __future__ import annotations

import shutil

import pytest

from infra import layer


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    library = tmp_path / "src" / "retention"
    shutil.copytree(layer.LIBRARY_DIR, library, ignore=shutil.ignore_patterns("__pycache__"))
    (library / "__pycache__").mkdir(exist_ok=True)
    (library / "__pycache__" / "junk.pyc").write_bytes(b"x")
    monkeypatch.setattr(layer, "LIBRARY_DIR", library)
    monkeypatch.setattr(layer, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(layer, "LAYER_DIR", tmp_path / "build" / "layer")
    monkeypatch.setattr(layer, "DEPS_DIR", tmp_path / "build" / "layer-deps")
    monkeypatch.setattr(layer, "LOCK_FILE", tmp_path / "build" / "layer.lock")
    monkeypatch.delenv("RETENTION_LAYER_SKIP_PIP", raising=False)
    monkeypatch.delenv("RETENTION_LAYER_RETRY", raising=False)
    return library


def test_requirements_exclude_what_lambda_provides():
    names = {layer._dist_name(r) for r in layer.requirements()}
    assert {"pydantic", "aws-lambda-powertools", "jinja2", "pyyaml"} <= names
    assert "boto3" not in names and "botocore" not in names


def test_pip_arguments_target_lambda_arm64():
    args = layer._pip_args(layer.LAYER_DIR / "python", ["pydantic"])
    joined = " ".join(args)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--only-binary=:all:" in args
    assert f"--python-version {layer.PYTHON_VERSION}" in joined
    assert "--implementation cp" in joined and "--no-compile" in args


def test_cached_build_library_change_and_runtime_packages_dropped(build_dir, monkeypatch):
    calls = []

    real_run = layer.subprocess.run

    def fake_pip(args, **kwargs):
        if "pip" not in args:  # the byte-compilation (and its interpreter probe) run for real
            return real_run(args, **kwargs)
        target = layer.Path(args[args.index("--target") + 1])
        for name in ("pydantic", "pydantic-2.0.dist-info", "botocore", "botocore-1.0.dist-info"):
            (target / name).mkdir()
        (target / "six.py").write_text("")
        calls.append(args)
        return layer.subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(layer.subprocess, "run", fake_pip)
    first = layer.build_layer()
    python = first.path / "python"
    assert first.complete and len(calls) == 1
    assert (python / "retention" / "__init__.py").is_file()
    assert (python / "pydantic").is_dir()
    assert not (python / "botocore").exists() and not (python / "six.py").exists()
    assert not list(python.rglob("junk.pyc"))  # the developer's bytecode is never shipped

    second = layer.build_layer()  # nothing changed: no pip, same directory and hash
    assert len(calls) == 1 and second == first

    (build_dir / "new_module.py").write_text("X = 1\n")  # library edited: new asset, no pip
    third = layer.build_layer()
    assert len(calls) == 1 and third.asset_hash != first.asset_hash and third.path != first.path
    assert (third.path / "python" / "retention" / "new_module.py").is_file()
    assert (third.path / "python" / "pydantic").is_dir()
    assert first.path.is_dir()  # the previous asset stays for a synth that may still copy it


def test_pip_failure_gives_library_only_layer_and_never_raises(build_dir, monkeypatch):
    def failing_pip(args, **kwargs):
        return layer.subprocess.CompletedProcess(args, 1, "", "Could not find a version (offline)")

    monkeypatch.setattr(layer.subprocess, "run", failing_pip)
    monkeypatch.setattr(layer, "target_python", lambda: None)  # no byte-compilation here: pip is the subject
    with pytest.warns(UserWarning, match="only the retention library"):
        result = layer.build_layer()
    assert not result.complete
    assert sorted(p.name for p in (result.path / "python").iterdir()) == ["retention"]

    calls = []
    monkeypatch.setattr(layer.subprocess, "run", lambda args, **kw: calls.append(args))
    assert layer.build_layer() == result  # no retry within the hour
    assert calls == []


def test_the_lock_pins_every_layer_dependency_with_a_hash():
    """Issue 15 item 17: the layer installs exact, hash-checked versions; jinja2 at 3.1.6 or later (older
    3.1.x have sandbox escapes)."""
    lines = [x for x in layer.LOCK_FILE.read_text().splitlines() if x and not x.startswith("#")]
    pinned = {}
    for line in lines:
        spec, _, digest = line.partition(" --hash=sha256:")
        name, _, version = spec.partition("==")
        assert version and len(digest) == 64, line
        pinned[name] = version
    assert {layer._dist_name(r) for r in layer.requirements()} <= set(pinned)
    assert tuple(int(x) for x in pinned["jinja2"].split(".")[:3]) >= (3, 1, 6)
    assert layer._install_args(layer.requirements())[:3] == ["--require-hashes", "-r", str(layer.LOCK_FILE)]
    assert layer._install_args(["pydantic"]) == ["pydantic"]


def test_the_layer_ships_the_library_s_non_python_files(build_dir, monkeypatch):
    """The survey and preference pages are Jinja2 templates next to the code: the layer must carry them."""
    monkeypatch.setenv("RETENTION_LAYER_SKIP_PIP", "1")
    templates = sorted(p.relative_to(build_dir).as_posix() for p in build_dir.rglob("*.html"))
    assert "surveys/templates/nps_form.html" in templates
    shipped = layer.build_layer().path / "python" / "retention"
    assert [t for t in templates if not (shipped / t).is_file()] == []
    assert (shipped / "surveys" / "templates" / "preferences.html").read_text() == (
        build_dir / "surveys" / "templates" / "preferences.html").read_text()


@pytest.mark.skipif(layer.target_python() is None, reason=f"no python{layer.PYTHON_VERSION} on this machine")
def test_the_layer_ships_unchecked_hash_bytecode_for_the_runtime(build_dir, monkeypatch):
    monkeypatch.setenv("RETENTION_LAYER_SKIP_PIP", "1")
    python = layer.build_layer().path / "python"
    tag = "cpython-" + layer.PYTHON_VERSION.replace(".", "")
    sources = sorted(python.rglob("*.py"))
    compiled = {p.name.split(".")[0] for p in python.rglob(f"*.{tag}.pyc")}
    assert sources and {p.stem for p in sources} <= compiled
    header = next(python.rglob(f"ingestor.{tag}.pyc")).read_bytes()[4:8]
    # PEP 552 flags: bit 0 hash-based, bit 1 check_source; unchecked-hash = 0b01 (the zip's mtimes do not matter)
    assert int.from_bytes(header, "little") == 0b01
