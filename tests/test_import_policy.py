"""House rule, enforced: a function-local import of one of normtheory's own modules is allowed
only when that module (transitively, at module level) pulls in a heavy dependency — the reason
`normtheory --help` and light commands stay fast. Everything else is imported at the top, so the
import graph import-linter checks is the real one. Static analysis of the package's AST."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "normtheory"
# third-party packages that cost a noticeable fraction of a second (or a GPU context) to import
# (ml_dtypes: about half a second, paid by every command that touches a format)
HEAVY = {"torch", "transformers", "sympy", "numba", "flint", "matplotlib", "liger_kernel", "triton",
         "submitit", "hypothesis", "scipy", "tqdm", "ml_dtypes"}


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "normtheory":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(node: ast.AST, current: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        base = node.module
        if node.level:  # relative imports: resolve against the current package
            base = ".".join(current.split(".")[: -node.level] + [node.module])
        # `from pkg import mod` may name a submodule
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


@cache
def top_level_imports(path: Path) -> tuple[str, ...]:
    """Module-level imports (not inside functions or `if TYPE_CHECKING`), plus what a package's
    module-level `__getattr__` loads: `from pkg import name` runs it (PEP 562 lazy loading)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    current = module_name(path)
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for inner in ast.walk(node):
                names += _imported_names(inner, current)
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            names += _imported_names(inner, current)
    return tuple(names)


@cache
def is_heavy(name: str, seen: frozenset = frozenset()) -> bool:
    if name.split(".")[0] in HEAVY:
        return True
    path = module_path(name)
    if path is None or name in seen:
        return False
    parents = [".".join(name.split(".")[:i]) for i in range(2, len(name.split(".")))]
    return any(is_heavy(dep, seen | {name}) for dep in (*top_level_imports(path), *parents))


def local_project_imports(source: str, current: str) -> list[tuple[int, str]]:
    """(line, module) of each import of a normtheory module inside a function of `source`."""
    tree = ast.parse(source)
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if func.name == "__getattr__" and func in tree.body:
            continue  # PEP 562 lazy loading of a package's heavy parts is the point
        for node in ast.walk(func):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [n for n in _imported_names(node, current) if n.startswith("normtheory")]
                modules = [n for n in names if module_path(n)]
                # `from pkg import submodule` imports the submodule: judge that, not the package
                specific = [n for n in modules if n != names[0]] if len(modules) > 1 else modules
                if specific:
                    found.append((node.lineno, max(specific, key=is_heavy)))
    return found


def light_local_imports(source: str, current: str) -> list[str]:
    light = []
    for line, name in local_project_imports(source, current):
        if not is_heavy(name):
            light.append(f"{current}:{line} imports {name} inside a function, but it pulls in nothing heavy")
    return light


def test_function_local_imports_of_the_project_are_only_for_heavy_modules():
    light = []
    for path in sorted(PACKAGE.rglob("*.py")):
        light += light_local_imports(path.read_text(encoding="utf-8"), module_name(path))
    assert not light, "\n".join(light)


def test_the_policy_can_fail():
    """A light module imported inside a function is reported; a torch-importing one is not."""
    source = "def f():\n    from normtheory.errors import UsageError\n    from normtheory.kernels import eager\n"
    assert light_local_imports(source, "normtheory.example") == [
        "normtheory.example:2 imports normtheory.errors inside a function, but it pulls in nothing heavy"]
    assert not is_heavy("normtheory.errors") and not is_heavy("normtheory.registry")
    assert is_heavy("normtheory.kernels.eager")  # imports torch at module level
