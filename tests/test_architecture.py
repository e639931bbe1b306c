"""The package's imports point one way: core -> methods -> export -> benchmark -> harness -> cli.

Read from the source (every import, also those inside functions), so a new module that
reaches up a layer or closes a circle fails here, not in a reviewer's head.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kerasprune"

#: top-level parts of the package, lowest first; a part may import its own layer and below
LAYERS = [
    {"backend", "errors", "checks", "files", "environment", "results", "loading", "data", "importance",
     "interop", "models", "metrics", "distribute", "batches", "distillation", "random_state"},
    {"sparsity", "structured", "quantization", "inference", "agent"},
    {"export"},
    {"benchmark"},
    {"experiment", "studies", "tuner"},  # a tuner trial compresses, exports and times
    {"cli"},
]
LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}
MAX_FILE_LINES = 400
MAX_CLASS_LINES = 250


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["kerasprune", *path.relative_to(PACKAGE).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The kerasprune modules that ``name`` imports (a package stands for its __init__)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                targets.add(full if full in modules else module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(m) for m in _modules()} - {None}
    assert parts <= set(LAYER_OF), f"place {sorted(parts - set(LAYER_OF))} in LAYERS"


def test_no_import_points_up_a_layer():
    upward = [f"{source} -> {target}" for source, targets in _graph().items()
              for target in targets
              if _part(source) and _part(target) and LAYER_OF[_part(target)] > LAYER_OF[_part(source)]]
    assert upward == []


def test_there_are_no_import_circles():
    graph, state, circles = _graph(), {}, []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_parts_import_each_other_without_circles():
    parts: dict[str, set[str]] = {}
    for source, targets in _graph().items():
        for target in targets:
            if _part(source) and _part(target) and _part(source) != _part(target):
                parts.setdefault(_part(source), set()).add(_part(target))
    both_ways = sorted(f"{a} <-> {b}" for a in parts for b in parts[a] if a < b and a in parts.get(b, ()))
    assert both_ways == []


def test_importing_kerasprune_imports_neither_tensorflow_nor_the_harness():
    import subprocess
    import sys

    probe = ("import sys, kerasprune; print(sorted(m for m in sys.modules if m == 'tensorflow' "
             "or m.startswith('kerasprune.experiment')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_modules_and_classes_stay_small_enough_to_read():
    too_long = []
    for name, path in _modules().items():
        source = path.read_text()
        if source.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno > MAX_CLASS_LINES:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno} lines")
    assert too_long == []
