"""pytest imports test modules by their base name (the test folders are not packages): two modules
of the same name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_module_name_is_unique_across_the_test_folders() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert names, "no test modules found"
    assert not [name for name, count in names.items() if count > 1]
