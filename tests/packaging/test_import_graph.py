"""The import graph of s3dgs and preprocess, read statically (``ast``, every import at any depth: module level,
inside functions, under ``TYPE_CHECKING``): no cycle, ``preprocess`` never imports ``s3dgs``, and only the train
entry point imports the trainer."""

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("s3dgs", "preprocess")


def module_files() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its own name, from its ``__init__.py``)."""
    files = {}
    for top in PACKAGES:
        for path in (REPO_ROOT / top).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ours that ``name`` (at ``path``) imports: ``from a import b`` counts as ``a.b`` when that
    is a module, else as ``a``; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the modules along it (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walk_finds_a_cycle_and_the_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    graph = import_graph()
    assert {"s3dgs.trainer", "s3dgs.run", "s3dgs.checkpoint"} <= graph["s3dgs.train"] | graph["s3dgs.trainer"]
    assert "s3dgs.render.rendering" in graph["s3dgs.render"]  # a relative import
    assert "s3dgs.view" in graph["s3dgs.trainer"]  # an import inside a function


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_preprocess_never_imports_s3dgs():
    bad = {m: sorted(i for i in deps if i.startswith("s3dgs"))
           for m, deps in import_graph().items() if m.startswith("preprocess")}
    assert not any(bad.values()), {m: d for m, d in bad.items() if d}


def test_only_the_train_entry_point_imports_the_trainer():
    assert {m for m, deps in import_graph().items() if "s3dgs.trainer" in deps} == {"s3dgs.train"}
