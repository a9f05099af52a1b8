"""Lambda layers: the third-party dependencies, built without Docker, and the `warden` library.

The dependency layer is installed with `pip --platform` from binary wheels only, so the result is
the Lambda platform's (Linux, arm64, CPython 3.12) whatever machine builds it. It is built once
per content of requirements.txt and architecture into `.build/layers/deps-<hash>/` and reused
while nothing changed; `python -m infra.layers` builds it ahead of synthesis.
"""

from __future__ import annotations

import compileall
import dataclasses
import hashlib
import py_compile
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

# aws_cdk is imported where layers are made, not here: `python -m infra.layers` builds the
# dependency layer without starting the jsii/Node runtime.
if TYPE_CHECKING:
    from aws_cdk import aws_lambda as lambda_
    from constructs import Construct

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements.txt"
BUILD_DIR = REPO / ".build" / "layers"
WARDEN_LAYER_DIR = REPO / "layers" / "warden"

PYTHON_VERSION = "3.12"
# The python3.12 runtime runs on Amazon Linux 2023 (glibc 2.34): every manylinux wheel up to glibc
# 2.34 runs there. pip matches --platform tags exactly, so list them all (psycopg-binary 3.3 only
# publishes manylinux_2_28 wheels, for one).
_GLIBC_MINORS = range(17, 35)
_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
# Written last: a directory without it is an interrupted build and is never used.
_MARKER = ".complete"
# Bump to rebuild every layer when the way it is built changes.
_RECIPE = "3"


class LayerBuildError(RuntimeError):
    """The dependency layer could not be built (no network, a missing wheel, ...)."""


def lambda_platforms(arch: str = "arm64") -> list[str]:
    """The pip platform tags whose wheels run on the Lambda python3.12 runtime for `arch`."""
    _check_arch(arch)
    machine = _MACHINES[arch]
    return [f"manylinux2014_{machine}", *(f"manylinux_2_{minor}_{machine}" for minor in _GLIBC_MINORS)]


def _check_arch(arch: str) -> None:
    if arch not in _MACHINES:
        raise ValueError(f"unknown Lambda architecture {arch!r}; expected one of {sorted(_MACHINES)}")


def dependency_layer_hash(requirements: Path = REQUIREMENTS, arch: str = "arm64") -> str:
    """The content hash that names a dependency layer build."""
    _check_arch(arch)
    digest = hashlib.sha256()
    # Whether this host can precompile changes the content, so it is part of the name (and asset hash).
    compiled = b"pyc" if _can_precompile() else b"py"
    for part in (requirements.read_bytes(), arch.encode(), PYTHON_VERSION.encode(), _RECIPE.encode(), compiled):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def build_dependency_layer(requirements: Path = REQUIREMENTS, arch: str = "arm64") -> Path:
    """Install `requirements` for Lambda (Linux, `arch`, CPython 3.12) into a layer directory.

    Returns the layer directory (it holds `python/...`, the layer layout). Nothing runs when the
    directory for this content already exists and is complete, so calling it on every synth is
    cheap. Needs network (or a wheel cache) only when it really builds.
    """
    layer_dir = BUILD_DIR / f"deps-{dependency_layer_hash(requirements, arch)}"
    if (layer_dir / _MARKER).is_file():
        return layer_dir

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{layer_dir.name}.", dir=BUILD_DIR))
    try:
        _pip_install(requirements, arch, staging / "python")
        _precompile(staging / "python")
        (staging / _MARKER).write_text(requirements.read_text())
        if (layer_dir / _MARKER).is_file():  # another process finished the same build first
            shutil.rmtree(staging)
            return layer_dir
        shutil.rmtree(layer_dir, ignore_errors=True)  # an interrupted build's leftovers
        staging.rename(layer_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return layer_dir


def _pip_install(requirements: Path, arch: str, target: Path) -> None:
    platforms = [arg for platform in lambda_platforms(arch) for arg in ("--platform", platform)]
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check", "--no-compile",
        *platforms,
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        "--target", str(target),
        "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LayerBuildError(
            f"pip could not install {requirements} for Lambda ({arch}, CPython {PYTHON_VERSION}):\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def _precompile(target: Path) -> None:
    """Ship bytecode: /opt is read-only in Lambda, so without it every cold start compiles.

    Unchecked-hash pycs are deterministic (no timestamps) and are never revalidated at import.
    Only a CPython 3.12 host can write 3.12 bytecode; other hosts ship sources only.
    """
    if not _can_precompile():
        return
    compileall.compile_dir(
        str(target),
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def _can_precompile() -> bool:
    return f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION


def directory_size(path: Path) -> int:
    """Total bytes of the regular files under `path` (the unzipped size of a layer)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@dataclasses.dataclass(frozen=True)
class SharedLayers:
    """The two layers every Warden function uses: third-party dependencies and `warden` itself.

    Make them with `SharedLayers.build(scope, "Layers")`; functions take the runtime and the
    architecture from here too, so the layers and the functions can never disagree.
    """

    scope: Construct
    dependencies: lambda_.LayerVersion
    warden: lambda_.LayerVersion
    runtime: lambda_.Runtime
    architecture: lambda_.Architecture
    arch: str
    dependency_layer_dir: Path

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        """The layers in the order a function lists them."""
        return [self.dependencies, self.warden]

    @classmethod
    def build(
        cls,
        scope: Construct,
        id: str = "Layers",
        *,
        arch: str = "arm64",
        dependency_layer_dir: Path | None = None,
    ) -> SharedLayers:
        """Make both LayerVersions under a new construct `id` in `scope`.

        `dependency_layer_dir` defaults to `build_dependency_layer(arch=arch)`, a no-op when the
        layer for the current requirements.txt is already built.
        """
        from aws_cdk import AssetHashType, IgnoreMode
        from aws_cdk import aws_lambda as lambda_
        from constructs import Construct

        _check_arch(arch)
        layer_dir = dependency_layer_dir or build_dependency_layer(arch=arch)
        if not (layer_dir / "python").is_dir():
            raise LayerBuildError(f"{layer_dir} is not a built layer (no python/ inside)")
        architecture = lambda_.Architecture.ARM_64 if arch == "arm64" else lambda_.Architecture.X86_64
        runtime = lambda_.Runtime.PYTHON_3_12
        container = Construct(scope, id)
        dependencies = lambda_.LayerVersion(
            container,
            "Dependencies",
            # The directory name already hashes what went in: no need to hash ~100 MB per synth.
            code=lambda_.Code.from_asset(
                str(layer_dir),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=layer_dir.name,
                exclude=[_MARKER],
            ),
            compatible_runtimes=[runtime],
            compatible_architectures=[architecture],
            description="Warden third-party dependencies (requirements.txt)",
        )
        warden = lambda_.LayerVersion(
            container,
            "Warden",
            code=lambda_.Code.from_asset(
                str(WARDEN_LAYER_DIR),
                exclude=["**/__pycache__", "**/*.pyc"],
                ignore_mode=IgnoreMode.GLOB,
            ),
            compatible_runtimes=[runtime],
            compatible_architectures=[architecture],
            description="Warden domain library (layers/warden)",
        )
        return cls(
            scope=container,
            dependencies=dependencies,
            warden=warden,
            runtime=runtime,
            architecture=architecture,
            arch=arch,
            dependency_layer_dir=layer_dir,
        )


def main() -> None:
    layer_dir = build_dependency_layer()
    size_mb = directory_size(layer_dir) / 1e6
    print(f"dependency layer: {layer_dir.relative_to(REPO)} ({size_mb:.1f} MB unzipped)")


if __name__ == "__main__":
    main()
