"""House rule, enforced: no function in normtheory/ longer than 60 lines, except a numba-compiled
kernel (one pass over a row in cache) with a comment saying why, directly above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "normtheory"
LIMIT = 60


def _is_compiled(node: ast.FunctionDef) -> bool:
    return any("jit" in ast.unparse(decorator) for decorator in node.decorator_list)


def long_functions(source: str, label: str) -> list[str]:
    lines = source.split("\n")
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= LIMIT:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        explained = first >= 2 and lines[first - 2].lstrip().startswith("#")
        if not (_is_compiled(node) and explained):
            found.append(f"{label}:{node.lineno} {node.name} has {length} lines")
    return found


def test_no_function_over_the_limit():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not found, "\n".join(found)


def test_the_rule_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT + 1))
    assert long_functions(f"def f():\n{body}\n", "example") == ["example:1 f has 62 lines"]
    compiled = f"@numba.njit\ndef g():\n{body}\n"
    assert long_functions(compiled, "example") == ["example:2 g has 62 lines"]  # no comment saying why
    assert long_functions("# one pass in cache\n" + compiled, "example") == []
