"""The code's shape, checked with `ast` over `workbench/` and `app.py` (docs/design.md, "Module boundaries"):

* no function or method (nested ones too; lambdas are expressions) longer than MAX_FUNCTION_LINES, counted
  from its `def` line to its last line: decorators excluded, docstring and comments included;
* no module longer than MAX_MODULE_LINES;
* the library (`workbench/` minus `workbench.cli` and `workbench.app`) never imports the faces
  (`workbench.cli`, `workbench.app`, the root `app.py`);
* the data layer (`workbench.data`) does not import the layers built on it (models, methods, training,
  explanations, the API): a collator reads a model's sizes from the model, it does not import them;
* no import cycle among the workbench modules and `app.py`. Every import statement counts, wherever it
  is (module level, inside a function, under `if TYPE_CHECKING`): a function-level import only delays a
  cycle, it does not remove it.

An import is an edge to the most specific module it names that exists: `from workbench.data import shapes`
is an edge to `workbench.data.shapes`, `from workbench.data import Collator` one to the package
`workbench.data` (its `__init__`). The implicit import of a parent package is not an edge: every submodule
would otherwise form a cycle with a package `__init__` that re-exports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500
FACES = ("workbench.cli", "workbench.app", "app")


def python_files(root: Path = ROOT) -> list[Path]:
    """Every Python file of workbench/, and the root app.py."""
    return sorted((root / "workbench").rglob("*.py")) + [p for p in [root / "app.py"] if p.exists()]


def source_files(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} for every module of workbench/ and the root app.py. Where a package and a
    module share a name (`x/__init__.py` beside `x.py`), the package is what `import` finds."""
    files = {}
    for path in python_files(root):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in files or path.name == "__init__.py":
            files[name] = path
    return files


def is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _absolute(module: str | None, level: int, importer: str, files: dict[str, Path]) -> str:
    """The absolute name of `from <level dots><module> import ...` written in module `importer`."""
    if level == 0:
        return module or ""
    package = importer if is_package(importer, files) else importer.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _known(name: str, files: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted `name` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in files:
            return ".".join(parts[:n])
    return None


def imports_of(importer: str, tree: ast.AST, files: dict[str, Path]) -> list[tuple[str, int]]:
    """(module imported, line) for every import statement anywhere in `tree` that names one of our modules."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, importer, files)
            # `from pkg import sub` imports the submodule; `from pkg import name` the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
        else:
            continue
        for target in targets:
            module = _known(target, files)
            if module is not None and module != importer:
                found.append((module, node.lineno))
    return sorted(found, key=lambda edge: edge[1])


def import_graph(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """{importer: {imported: first line}} among our modules."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        edges: dict[str, int] = {}
        for module, line in imports_of(name, ast.parse(path.read_text(), str(path)), files):
            edges.setdefault(module, line)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]] | dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected component with more than one
    module (Tarjan's algorithm, iterative so a deep graph cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: list[str], graph) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search inside the component)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in component {component}")  # Tarjan only returns cyclic components


def _within(module: str, packages: tuple[str, ...]) -> bool:
    """Whether `module` is one of `packages` or inside one of them."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def is_face(module: str) -> bool:
    return _within(module, FACES)


# ------------------------------------------------------------------------------------------- the rules


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    return source_files()


@pytest.fixture(scope="module")
def graph(files) -> dict[str, dict[str, int]]:
    return import_graph(files)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_long_functions():
    long = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{_rel(path)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_no_long_modules():
    long = [
        f"{_rel(p)}: {n} lines" for p in python_files() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_library_does_not_import_the_faces(files, graph):
    bad = [
        f"{_rel(files[importer])}:{line} imports {module}"
        for importer, edges in graph.items()
        if not is_face(importer)
        for module, line in edges.items()
        if is_face(module)
    ]
    assert not bad, "the library imports the app or the CLI:\n" + "\n".join(bad)


ABOVE_DATA = ("workbench.models", "workbench.methods", "workbench.train", "workbench.explain", "workbench.api")


def test_data_layer_does_not_import_the_layers_above_it(files, graph):
    bad = [
        f"{_rel(files[importer])}:{line} imports {module}"
        for importer, edges in graph.items()
        if _within(importer, ("workbench.data",))
        for module, line in edges.items()
        if _within(module, ABOVE_DATA)
    ]
    assert not bad, "the data layer imports the layers above it:\n" + "\n".join(bad)


def test_no_import_cycles(files, graph):
    cycles = find_cycles(graph)

    def describe(cycle: list[str]) -> str:
        steps = [f"{a} ({_rel(files[a])}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
        return " -> ".join(steps + [cycle[-1]])

    assert not cycles, "import cycles:\n" + "\n".join(describe(c) for c in cycles)


# ------------------------------------------------------------------------------- the checker itself


def test_find_cycles_reports_each_cycle_once():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["d", "e", "d"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_are_resolved_to_the_most_specific_module(tmp_path):
    pkg = tmp_path / "workbench"
    (pkg / "data").mkdir(parents=True)
    for name in ("__init__.py", "data/__init__.py", "data/shapes.py", "data/collate.py", "api.py", "cli.py"):
        (pkg / name).write_text("")
    (pkg / "data" / "shapes.py").write_text(
        "from . import collate\nfrom .collate import Batch\nfrom workbench.data import Collator\n"
        "import numpy\n\ndef f():\n    from ..api import ask\n    import workbench.cli\n"
    )
    files = source_files(tmp_path)
    tree = ast.parse((pkg / "data" / "shapes.py").read_text())
    assert imports_of("workbench.data.shapes", tree, files) == [
        ("workbench.data.collate", 1),
        ("workbench.data.collate", 2),
        ("workbench.data", 3),
        ("workbench.api", 7),
        ("workbench.cli", 8),
    ]
    init = ast.parse("from .shapes import Example\nfrom . import collate\n")
    assert imports_of("workbench.data", init, files) == [("workbench.data.shapes", 1), ("workbench.data.collate", 2)]
