"""Where each comparison leaves its margin for the pytest plugin (`--normtheory-report`).

The plugin opens a record per test (`start`), every `assert_close_to_exact` in that test adds
its largest error/bound per output (`note`), and the plugin collects it (`finish`). Without
the plugin nothing is recorded: `note` is then a dictionary lookup and a return.
"""

from __future__ import annotations

_current: dict | None = None


def start() -> None:
    global _current
    _current = {"comparisons": 0, "failed": 0, "max_err_over_bound": 0.0, "by_output": {}}


def note(max_ratios: dict[str, float], *, failed: bool) -> None:
    record = _current
    if record is None:
        return
    record["comparisons"] += 1
    record["failed"] += int(failed)
    for name, ratio in max_ratios.items():
        previous = record["by_output"].get(name, 0.0)
        record["by_output"][name] = max(previous, ratio)
        record["max_err_over_bound"] = max(record["max_err_over_bound"], ratio)


def finish() -> dict | None:
    global _current
    record, _current = _current, None
    return record if record and record["comparisons"] else None
