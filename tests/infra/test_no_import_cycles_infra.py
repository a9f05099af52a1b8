"""infra/ has no import cycle: no module of it imports, at any depth and in any form (module level,
inside a function, under TYPE_CHECKING), a module that imports it back. Read with `ast`, no synth."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_graph import imported_names, module_cycles

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def test_infra_modules_import_each_other_without_a_cycle() -> None:
    assert module_cycles([INFRA], {"infra": INFRA}) == []


def test_the_checker_finds_a_cycle_through_a_function_level_or_type_checking_import(tmp_path: Path) -> None:
    # Given a package whose modules import each other only inside a function / under TYPE_CHECKING
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (package / "c.py").write_text("from . import a\n")
    (package / "d.py").write_text("import pkg.a\nimport json\n")  # imports into the cycle, not part of it
    # When the cycles are looked for, Then the one cycle is reported, starting from its first module
    assert module_cycles([package], {"pkg": package}) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_from_package_import_submodule_is_the_submodule_not_the_package() -> None:
    tree = ast.parse("from infra import nag\nfrom .storage import Storage\n")
    assert list(imported_names(tree, "infra.stack", is_package=False)) == [
        ("infra.nag", "infra"), ("infra.storage.Storage", "infra.storage")]
