"""The layers that ship: the dependency layer really is Lambda's (Linux aarch64, CPython 3.12)."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import Synthesized, logical_id

from infra.layers import build_dependency_layer, dependency_layer_hash, lambda_platforms

pytestmark = pytest.mark.infra

REQUIRED_PACKAGES = ("neo4j", "psycopg", "psycopg_binary", "aws_lambda_powertools", "pydantic_core", "pydantic", "yaml")


def asset_dir(synthesized: Synthesized, template: dict[str, Any], layer_id: str) -> Path:
    """The staged directory in cdk.out that a LayerVersion's code is zipped from."""
    s3_key = template["Resources"][layer_id]["Properties"]["Content"]["S3Key"]
    path = synthesized.outdir / f"asset.{s3_key.removesuffix('.zip')}"
    assert path.is_dir(), path
    return path


@pytest.fixture(scope="module")
def dependency_asset(synthesized: Synthesized, dev: dict[str, Any]) -> Path:
    stack = synthesized.stacks["dev"]
    return asset_dir(synthesized, dev, logical_id(stack, stack.layers.dependencies))


@pytest.fixture(scope="module")
def warden_asset(synthesized: Synthesized, dev: dict[str, Any]) -> Path:
    stack = synthesized.stacks["dev"]
    return asset_dir(synthesized, dev, logical_id(stack, stack.layers.warden))


def test_dependency_layer_asset_holds_the_runtime_packages_in_the_layer_layout(dependency_asset: Path) -> None:
    for package in REQUIRED_PACKAGES:
        assert (dependency_asset / "python" / package / "__init__.py").is_file(), package


def test_dependency_layer_native_code_is_built_for_aarch64_cpython312(dependency_asset: Path) -> None:
    for package in ("pydantic_core", "psycopg_binary"):
        shared_objects = [p.name for p in (dependency_asset / "python" / package).glob("*.so")]
        assert shared_objects, package
        assert all("cpython-312-aarch64-linux-gnu" in name for name in shared_objects), shared_objects
    everything = [p.name for p in (dependency_asset / "python").rglob("*.so*")]
    assert not [name for name in everything if "x86_64" in name]


def test_warden_layer_ships_the_library_without_bytecode_caches(warden_asset: Path) -> None:
    assert (warden_asset / "python" / "warden" / "models.py").is_file()
    assert not list(warden_asset.rglob("__pycache__"))


def test_warden_layer_zip_ships_the_library_and_no_cli_or_local_runtime(warden_asset: Path, tmp_path: Path) -> None:
    # Given the layer's asset zipped as CDK uploads it
    archive = shutil.make_archive(str(tmp_path / "warden-layer"), "zip", warden_asset)
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    # Then it holds the library under python/, and nothing of the CLI or the local runtime
    assert "python/warden/backup.py" in names and "python/warden/observability.py" in names
    assert all(n.startswith("python/warden/") for n in names), sorted({n.split("/")[1] for n in names})
    developer_side = [n for n in names if n.split("/")[1] in ("warden_cli", "local")
                      or n in ("python/warden/cli.py", "python/warden/stage.py")]
    assert developer_side == []


def test_building_the_dependency_layer_again_is_a_no_op(dependency_layer_dir: Path) -> None:
    started = time.perf_counter()
    again = build_dependency_layer()
    assert again == dependency_layer_dir
    assert time.perf_counter() - started < 1.0


def test_the_layer_build_is_named_by_requirements_and_architecture(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.14.3\n")
    arm = dependency_layer_hash(requirements, "arm64")
    assert arm != dependency_layer_hash(requirements, "x86_64")
    requirements.write_text("pydantic==2.14.2\n")
    assert arm != dependency_layer_hash(requirements, "arm64")
    with pytest.raises(ValueError, match="unknown Lambda architecture"):
        dependency_layer_hash(requirements, "sparc")


def test_pip_may_choose_any_wheel_that_runs_on_the_lambda_glibc() -> None:
    platforms = lambda_platforms("arm64")
    assert "manylinux2014_aarch64" in platforms
    assert "manylinux_2_28_aarch64" in platforms  # psycopg-binary 3.3
    assert "manylinux_2_34_aarch64" in platforms  # Amazon Linux 2023
    assert "manylinux_2_35_aarch64" not in platforms
