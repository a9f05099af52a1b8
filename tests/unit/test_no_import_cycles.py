"""No import cycle anywhere in the code that ships or drives it: infra/, functions/, the library
(layers/warden/python/warden), warden_cli/ and local/. Every import counts (module level, inside a
function, under TYPE_CHECKING): a cycle means code lives in the wrong place (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import import_graph, module_cycles

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "infra": REPO / "infra",
    "functions": REPO / "functions",  # functions/<job>/handler.py → functions.<job>.handler
    "warden": REPO / "layers" / "warden" / "python" / "warden",
    "warden_cli": REPO / "warden_cli",
    "local": REPO / "local",
}


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    cycles = module_cycles(list(PACKAGES.values()), PACKAGES)
    assert cycles == [], "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in cycles)


def test_the_cli_never_imports_the_local_runtime() -> None:
    # local/ plugs its commands into the CLI through an entry point; the other direction would ship
    # the local runtime's dependencies (moto, the launchers) with every CLI install.
    graph = import_graph(list(PACKAGES.values()), PACKAGES)
    cli = {module: sorted(t for t in targets if t.split(".")[0] == "local")
           for module, targets in graph.items() if module.split(".")[0] == "warden_cli"}
    assert {module: found for module, found in cli.items() if found} == {}


def test_every_handler_is_scanned_under_its_own_name() -> None:
    graph = import_graph([PACKAGES["functions"]], PACKAGES)
    handlers = sorted(p.parent.name for p in (REPO / "functions").glob("*/handler.py"))
    assert sorted(m.split(".")[1] for m in graph if m.endswith(".handler")) == handlers
