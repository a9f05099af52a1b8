"""The pgtools layer: pg_dump / pg_restore of every PostgreSQL major, built for Lambda (Linux aarch64,
Amazon Linux 2023), and only on the functions that run them (docs/postgres-tools.md)."""

from __future__ import annotations

import re
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import Synthesized, logical_id, resources

from infra.layers import (
    PG_TOOLS_VERSIONS,
    RUNTIME_LIBS,
    LayerBuildError,
    build_pgtools_layer,
    check_pgtools_layer,
    directory_size,
    read_elf,
)

pytestmark = pytest.mark.infra

EM_AARCH64 = 183
# What the python3.12 runtime (AL2023) provides; anything else must be in the layer.
ALLOWED = {
    "libc.so.6", "libm.so.6", "libz.so.1", "libssl.so.3", "libcrypto.so.3", "libgssapi_krb5.so.2",
    "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-aarch64.so.1",
}  # fmt: skip
BUNDLED = ("libzstd.so.1", "liblz4.so.1")
AL2023_GLIBC_MINOR = 34
PG_JOBS = {"backup", "recovery"}


@pytest.fixture(scope="module")
def pgtools_dir() -> Path:
    return build_pgtools_layer()


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return struct.unpack_from("<H", header, 18)[0]


def elf_files(layer: Path) -> list[Path]:
    return sorted(p for p in layer.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF")


def test_every_major_has_executable_aarch64_tools_and_libpq(pgtools_dir: Path) -> None:
    assert sorted(p.name for p in (pgtools_dir / "pgtools").iterdir()) == sorted(PG_TOOLS_VERSIONS)
    for major in PG_TOOLS_VERSIONS:
        tree = pgtools_dir / "pgtools" / major
        assert sorted(p.name for p in (tree / "bin").iterdir()) == ["pg_dump", "pg_restore"]
        for tool in ("pg_dump", "pg_restore"):
            path = tree / "bin" / tool
            assert path.is_file() and not path.is_symlink(), path
            assert path.stat().st_mode & 0o111, f"{path} is not executable"
            assert elf_machine(path) == EM_AARCH64, path
            info = read_elf(path)
            assert info.runpath == "$ORIGIN/../lib", path
            assert "libpq.so.5" in info.needed
        libpq = tree / "lib" / "libpq.so.5"
        assert libpq.resolve().is_file(), libpq
        assert elf_machine(libpq) == EM_AARCH64
        assert read_elf(libpq).soname == "libpq.so.5"


def test_every_needed_library_is_bundled_or_in_the_runtime(pgtools_dir: Path) -> None:
    assert RUNTIME_LIBS - {"ld-linux-x86-64.so.2"} <= ALLOWED
    shipped = elf_files(pgtools_dir)
    assert len(shipped) == 3 * len(PG_TOOLS_VERSIONS) + len(BUNDLED)
    for path in shipped:
        assert elf_machine(path) == EM_AARCH64, path
        info = read_elf(path)
        search = [pgtools_dir / "lib"]
        if info.runpath == "$ORIGIN/../lib":
            search.append(path.parent.parent / "lib")
        missing = [lib for lib in info.needed if lib not in ALLOWED and not any((d / lib).is_file() for d in search)]
        assert not missing, f"{path.relative_to(pgtools_dir)} needs {missing}"


def test_zstd_and_lz4_are_bundled_for_aarch64(pgtools_dir: Path) -> None:
    for soname in BUNDLED:
        path = pgtools_dir / "lib" / soname
        assert path.is_file(), path
        assert elf_machine(path) == EM_AARCH64
        assert read_elf(path).soname == soname
    # PostgreSQL 16+ link them; 14 and 15 do not.
    assert set(BUNDLED) <= set(read_elf(pgtools_dir / "pgtools" / "18" / "bin" / "pg_dump").needed)


def test_nothing_needs_a_newer_glibc_than_amazon_linux_2023(pgtools_dir: Path) -> None:
    for path in elf_files(pgtools_dir):
        minors = [int(m) for m in re.findall(rb"GLIBC_2\.(\d+)", path.read_bytes())]
        assert minors and max(minors) <= AL2023_GLIBC_MINOR, (path, max(minors, default=None))


def test_the_layer_holds_only_the_tools_and_is_small(pgtools_dir: Path) -> None:
    files = {str(p.relative_to(pgtools_dir)) for p in pgtools_dir.rglob("*") if p.is_file()}
    expected = {
        f"pgtools/{m}/{f}" for m in PG_TOOLS_VERSIONS for f in ("bin/pg_dump", "bin/pg_restore", "lib/libpq.so.5")
    }
    expected |= {f"lib/{soname}" for soname in BUNDLED}
    assert expected <= files
    assert {f for f in files - expected if not f.startswith("licenses/")} == {".complete"}
    assert directory_size(pgtools_dir) < 10_000_000


def test_the_check_fails_on_a_library_that_is_neither_bundled_nor_in_the_runtime(
    pgtools_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "layer"
    shutil.copytree(pgtools_dir, copy)
    check_pgtools_layer(copy)
    (copy / "lib" / "libzstd.so.1").unlink()
    with pytest.raises(LayerBuildError, match=r"needs libzstd\.so\.1"):
        check_pgtools_layer(copy)


def test_the_check_fails_on_the_wrong_architecture(pgtools_dir: Path) -> None:
    with pytest.raises(LayerBuildError, match="e_machine 183, not x86_64"):
        check_pgtools_layer(pgtools_dir, arch="x86_64")


def test_building_the_pgtools_layer_again_is_a_no_op(pgtools_dir: Path) -> None:
    started = time.perf_counter()
    assert build_pgtools_layer() == pgtools_dir
    assert time.perf_counter() - started < 0.5


def _function_layers(template: dict[str, Any]) -> dict[str, list[Any]]:
    return {lid: r["Properties"].get("Layers", []) for lid, r in resources(template, "AWS::Lambda::Function").items()}


def test_only_backup_and_recovery_take_the_layer_and_the_bin_dir(synthesized: Synthesized) -> None:
    for stack in synthesized.stacks.values():
        template = synthesized.template(stack)
        layer_id = logical_id(stack, stack.layers.pgtools)
        by_job = {logical_id(stack, fn.function): job for job, fn in stack.functions.items()}
        functions = resources(template, "AWS::Lambda::Function")
        with_layer = {by_job[lid] for lid, layers in _function_layers(template).items() if {"Ref": layer_id} in layers}
        assert with_layer == PG_JOBS, stack.stack_name
        with_bin_dir = {
            by_job[lid]: r["Properties"]["Environment"]["Variables"]["WARDEN_PG_BIN_DIR"]
            for lid, r in functions.items()
            if "WARDEN_PG_BIN_DIR" in r["Properties"]["Environment"]["Variables"]
        }
        assert with_bin_dir == dict.fromkeys(PG_JOBS, "/opt/pgtools")


def test_recovery_has_ten_gib_of_tmp_for_the_spooled_dump(synthesized: Synthesized) -> None:
    for stack in synthesized.stacks.values():
        template = synthesized.template(stack)
        recovery = template["Resources"][logical_id(stack, stack.functions["recovery"].function)]
        assert recovery["Properties"]["EphemeralStorage"] == {"Size": 10240}


def test_stacks_without_postgres_tools_make_no_pgtools_layer(synthesized: Synthesized) -> None:
    for stack in (synthesized.smoke, synthesized.probe):
        layers = resources(synthesized.template(stack), "AWS::Lambda::LayerVersion")
        assert not [r for r in layers.values() if "pg_dump" in r["Properties"].get("Description", "")]


def test_the_staged_asset_keeps_the_tools_executable(synthesized: Synthesized) -> None:
    stack = synthesized.stacks["dev"]
    template = synthesized.template(stack)
    s3_key = template["Resources"][logical_id(stack, stack.layers.pgtools)]["Properties"]["Content"]["S3Key"]
    asset = synthesized.outdir / f"asset.{s3_key.removesuffix('.zip')}"
    for major in PG_TOOLS_VERSIONS:
        for tool in ("pg_dump", "pg_restore"):
            assert (asset / "pgtools" / major / "bin" / tool).stat().st_mode & 0o111
    assert not (asset / ".complete").exists()
