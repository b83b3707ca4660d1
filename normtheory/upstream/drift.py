"""`python -m normtheory.upstream.drift requirements/ci.lock`: what moved since the lock.

Run by `.ci/drift` in a fresh environment holding the newest allowed versions. Prints two
tables: the packages whose installed version differs from the lock, and every upstream
behaviour as old → new (old: the table's value for the locked version; new: probed here).
Exit 1 when a covered version contradicts the table (docs/upstream.md), else 0.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from importlib import metadata

from normtheory.upstream.compare import covering_row, observe_all
from normtheory.upstream.facts import FACTS

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_path: str) -> dict[str, str]:
    pins = {}
    with open(lock_path, encoding="utf-8") as handle:
        for line in handle:
            if match := _PIN.match(line.strip()):
                pins[_canonical(match.group(1))] = match.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    return {_canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in rows)


def report(lock_path: str) -> tuple[str, bool]:
    locked, installed = locked_versions(lock_path), installed_versions()
    moved = [(name, locked[name], installed.get(name, "(absent)")) for name in sorted(locked)
             if installed.get(name) != locked[name]]
    text = f"packages that moved since {lock_path}: {len(moved)} of {len(locked)}\n"
    if moved:
        text += _table([("package", "locked", "installed")] + moved)
    rows = [("package", "version (locked -> now)", "behaviour", "old -> new", "status")]
    observations = observe_all()
    for observation in observations:
        facts = [f for f in FACTS if f.behaviour == observation.behaviour]
        locked_version = locked.get(_canonical(observation.package))
        old_row = covering_row(facts, locked_version) if locked_version else None
        old = old_row.value if old_row else "(not tabled)"
        new = observation.probed if observation.probed is not None else f"({observation.note})"
        change = old if new == old else f"{old} -> {new}"
        rows.append((observation.package, f"{locked_version or '-'} -> {observation.version or '-'}",
                     observation.behaviour, change, observation.status))
    text += "\nupstream behaviours (docs/upstream.md):\n" + _table(rows)
    return text, any(o.failed for o in observations)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m normtheory.upstream.drift LOCKFILE", file=sys.stderr)
        return 2
    try:
        text, failed = report(argv[0])
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
