"""The import rule of docs/architecture.md: a module imports only from its own layer or the layers below,
and no modules import each other in a circle. Imports inside functions count too (they are how an upward
dependency hides), so the check parses every file's syntax tree rather than importing it."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rebel_rl"

# From the ground up (../shared/ARCHITECTURE.md); a module's layer is that of its first path component.
LAYERS = [
    {"errors", "algorithms", "registry", "logs", "hub"},
    {"config", "stage_configs"},
    # models/: loading that policies/ and the offline stages share; it reads no data/, and
    # policies/ import it, so it sits beside data/ (docs/architecture.md says so).
    {"data", "sharding", "models"},
    {"policies"},
    {"rewards", "environments"},
    {"tasks"},
    {"training", "evaluation"},
    {"compare"},
    {"cli", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    """The layer of a dotted module name inside the package (`policies.causal_lm.policy` -> 3)."""
    head = module.split(".")[0] if module else "__init__"
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise AssertionError(f"module {module!r} is in no layer: add it to LAYERS and to docs/architecture.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Package-internal modules `path` imports anywhere in its body (relative or absolute imports)."""
    name = module_name(path)
    parts = name.split(".") if name else []
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("rebel_rl"):
                target = node.module.removeprefix("rebel_rl").lstrip(".")
            else:
                continue
            # `from . import x` / `from .pkg import mod`: a submodule when such a file exists.
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rebel_rl."):
                    found.add(alias.name.removeprefix("rebel_rl."))
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_imports_point_down_the_layers():
    upward = [f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
              for source, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(source)]
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle between files.
    edges = {source: {t for t in targets if t in graph and not _is_own_package(source, t)}
             for source, targets in graph.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [node, target]) if target in stack
                              else f"{node} -> {target}")
            elif target not in state:
                visit(target, stack + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _is_own_package(source: str, target: str) -> bool:
    """`pkg/__init__` importing `pkg.mod`, or `pkg.mod` importing its own package's `__init__`."""
    return target.startswith(source + ".") or source.startswith(target + ".") or source == ""


def test_the_checker_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The check would miss nothing if it only read top-level imports; prove it reads nested ones."""
    fake = tmp_path / "rebel_rl"
    (fake / "data").mkdir(parents=True)
    (fake / "tasks").mkdir()
    (fake / "tasks" / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "prompts.py").write_text("def load():\n    from ..tasks import thing\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert imported_modules(fake / "data" / "prompts.py") == {"tasks"}
    assert layer_of("tasks") > layer_of("data.prompts")
