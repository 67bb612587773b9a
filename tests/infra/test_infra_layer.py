"""The Docker-free layer build: caching and the offline fallback (on a temporary build dir)."""

from __future__ import annotations

import pytest

from infra import layer


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(layer, "LAYER_DIR", tmp_path / "layer")
    monkeypatch.setattr(layer, "STAMP_FILE", tmp_path / "layer.stamp.json")
    monkeypatch.setattr(layer, "LOCK_FILE", tmp_path / "layer.lock")
    monkeypatch.delenv("RETENTION_LAYER_SKIP_PIP", raising=False)
    monkeypatch.delenv("RETENTION_LAYER_RETRY", raising=False)
    return tmp_path


def test_requirements_exclude_what_lambda_provides():
    reqs = layer.requirements()
    names = {layer._dist_name(r) for r in reqs}
    assert {"pydantic", "aws-lambda-powertools", "jinja2", "pyyaml"} <= names
    assert "boto3" not in names and "botocore" not in names


def test_pip_arguments_target_lambda_arm64():
    args = layer._pip_args(layer.LAYER_DIR / "python", ["pydantic"])
    joined = " ".join(args)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--only-binary=:all:" in args
    assert f"--python-version {layer.PYTHON_VERSION}" in joined
    assert "--implementation cp" in joined and "--no-compile" in args


def test_cached_build_and_offline_fallback(build_dir, monkeypatch):
    calls = []

    def fake_install(target, reqs):
        calls.append(reqs)
        (target / "pydantic").mkdir()
        (target / "pydantic-2.0.dist-info").mkdir()
        return True

    monkeypatch.setattr(layer, "_install_deps", fake_install)
    first = layer.build_layer()
    assert first.complete and len(calls) == 1
    assert (first.path / "python" / "retention" / "__init__.py").is_file()
    assert (first.path / "python" / "pydantic").is_dir()
    assert not list((first.path / "python").rglob("__pycache__"))

    second = layer.build_layer()  # nothing changed: no pip, same hash
    assert len(calls) == 1 and second.asset_hash == first.asset_hash

    monkeypatch.setattr(layer, "library_hash", lambda: "changed")  # library edited: re-copy only
    third = layer.build_layer()
    assert len(calls) == 1 and third.asset_hash != first.asset_hash


def test_pip_failure_gives_library_only_layer(build_dir, monkeypatch):
    def failing_install(target, reqs):
        layer._warn("pip failed (simulated)")
        return False

    monkeypatch.setattr(layer, "_install_deps", failing_install)
    with pytest.warns(UserWarning, match="only the retention library"):
        result = layer.build_layer()
    assert not result.complete
    assert (result.path / "python" / "retention" / "__init__.py").is_file()
    assert sorted(p.name for p in (result.path / "python").iterdir()) == ["retention"]
