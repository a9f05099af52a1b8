"""The import graph of Python source trees, read with `ast` (nothing is imported), and its cycles.

Every `import` / `from ... import` counts wherever it is: at module level, inside a function, under
`if TYPE_CHECKING:`: a cycle through any of them means code lives in the wrong place (STYLE.md).
Only imports between the modules scanned are edges; the standard library and third-party packages
are not followed.

    python tests/import_graph.py infra layers/warden/python/warden    print the cycles, exit 1 if any
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path


def module_name(path: Path, packages: Mapping[str, Path]) -> str:
    """The dotted name of the module in `path`: relative to the package directory that holds it
    (`packages` maps a top-level package name to its directory); a file in none of them is a
    top-level module named after its stem (`app.py` → `app`)."""
    path = path.resolve()
    for package, directory in packages.items():
        directory = directory.resolve()
        if path.is_relative_to(directory):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    return path.stem


def python_files(roots: Iterable[Path]) -> list[Path]:
    """Every .py file under `roots` (a root may be a file), sorted."""
    files: set[Path] = set()
    for root in roots:
        if root.is_file():
            files.add(root.resolve())
        else:
            files.update(p.resolve() for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(files)


def imported_names(tree: ast.AST, module: str, *, is_package: bool) -> Iterable[tuple[str, ...]]:
    """What each name a module imports may be, most specific first: `from a.b import c` is module
    `a.b.c`, or else a name in `a.b`; `import a.b` is `a.b`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield (alias.name,)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield (f"{base}.{alias.name}", base) if base else (alias.name,)


def import_graph(roots: Iterable[Path], packages: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module → the scanned modules it imports. A name resolves to the longest scanned module it
    starts with (`import infra.stack` and `from infra.stack import X` both mean infra.stack)."""
    files = python_files(roots)
    names = {f: module_name(f, packages) for f in files}
    known = set(names.values())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for file, module in names.items():
        tree = ast.parse(file.read_text(), filename=str(file))
        for candidates in imported_names(tree, module, is_package=file.name == "__init__.py"):
            target = next((found for name in candidates if (found := _longest_known(name, known))), None)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def _longest_known(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    return next((m for end in range(len(parts), 0, -1) if (m := ".".join(parts[:end])) in known), None)


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the first module of `component`: [a, b, ..., a]."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & members):
            if child == start:  # back to the start: walk the path to `node` backwards
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise ValueError(f"{component} is not a cycle")


def module_cycles(roots: list[Path], packages: dict[str, Path]) -> list[list[str]]:
    """The import cycles among the modules under `roots`: one shortest cycle, `[a, b, ..., a]`, per
    group of modules that import each other (fix one and run again: a group may hold more). []
    when there is none."""
    graph = import_graph(roots, packages)
    return [shortest_cycle(graph, component) for component in strongly_connected(graph)]


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("infra")]
    packages = {root.name: root for root in roots if (root / "__init__.py").is_file()}
    cycles = module_cycles(roots, packages)
    for cycle in cycles:
        print(" → ".join(cycle))
    print(f"{len(cycles)} import cycle(s) in {', '.join(map(str, roots))}", file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
