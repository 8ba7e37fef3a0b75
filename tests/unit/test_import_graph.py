"""The library's imports form no circle, between modules or between packages.

The imports of every module of src/mainsail are read from its source (AST), none executed:
module-level imports, those under `if TYPE_CHECKING:` and those inside functions all count, so
a circle cannot hide behind a deferred import. Two graphs are checked: modules (`a.b.c` imports
`a.b.d`) and packages (the folder of each module; a package's own `__init__` belongs to it), in
which an import between a package and one of its sub-packages is not a circle. A circle is
reported as the path that closes it. The checker itself is tested on small trees that have one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mainsail"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py below `root` (a package folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its source."""

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        # The root package (an empty __init__) is everybody's parent, never a dependency.
        return target if target and target != name and "." in target else None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod; `from mod import x`, mod.
                sub = f"{base}.{alias.name}"
                found.add(resolve(sub) if sub in known else resolve(base))
    return {f for f in found if f is not None}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_files(root)
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def package_graph(root: Path, graph: dict[str, set[str]]) -> dict[str, set[str]]:
    modules = module_files(root)

    def package(name: str) -> str:
        return name if modules[name].name == "__init__.py" else name.rpartition(".")[0]

    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        for target in targets:
            a, b = package(name), package(target)
            nested = a.startswith(b + ".") or b.startswith(a + ".")
            if a != b and not nested:
                out.setdefault(a, set()).add(b)
    return out


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_circle_between_modules() -> None:
    circle = find_circle(import_graph(SRC))
    assert circle is None, "import circle between modules: " + " -> ".join(circle or [])


def test_no_circle_between_packages() -> None:
    circle = find_circle(package_graph(SRC, import_graph(SRC)))
    assert circle is None, "import circle between packages: " + " -> ".join(circle or [])


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph(SRC)
    assert "mainsail.config.base" in graph["mainsail.config.project"]  # module level
    assert "mainsail.lifecycle.data" in graph["mainsail.pipeline.steps"]  # inside a function
    assert "mainsail.data.report" in graph["mainsail.data.errors"]  # under TYPE_CHECKING
    assert len(graph) > 100


def test_no_loose_modules_at_the_package_root() -> None:
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules at the root of src/mainsail belong in a package: {loose}"


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    root = tmp / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "kind", "expected"),
    [
        (  # a function-level import closes a module circle
            {
                "__init__.py": "",
                "a.py": "from pkg import b\n",
                "b.py": "def f():\n    from pkg.a import x\n",
            },
            "modules",
            ["pkg.a", "pkg.b", "pkg.a"],
        ),
        (  # a TYPE_CHECKING import, relative, closes it too
            {
                "__init__.py": "",
                "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from .b import B\n",
                "b.py": "from pkg.a import A\n",
            },
            "modules",
            ["pkg.a", "pkg.b", "pkg.a"],
        ),
        (  # modules without a circle, packages with one
            {
                "__init__.py": "",
                "x/__init__.py": "",
                "x/one.py": "from pkg.y.two import f\n",
                "y/__init__.py": "",
                "y/two.py": "def f(): ...\n",
                "y/three.py": "from pkg.x import one\n",
            },
            "packages",
            ["pkg.x", "pkg.y", "pkg.x"],
        ),
    ],
)
def test_the_checker_finds_a_circle(
    tmp_path: Path, files: dict[str, str], kind: str, expected: list[str]
) -> None:
    root = _tree(tmp_path, files)
    graph = import_graph(root)
    found = find_circle(graph if kind == "modules" else package_graph(root, graph))
    assert found is not None and set(found) == set(expected) and found[0] == found[-1]
    if kind == "packages":
        assert find_circle(graph) is None
