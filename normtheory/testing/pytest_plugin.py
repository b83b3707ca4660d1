"""pytest plugin (entry point `pytest11`): `--normtheory-report PATH` writes, per test, the
largest error/bound that `assert_close_to_exact` saw in it, per output (y, gx, gw, gb), so a
suite shows its margin and not only pass/fail. A test whose comparisons all pass at 0.99
is one rounding away from failing; one at 0.3 has room.

Works under pytest-xdist: each worker attaches its tests' records to their reports and the
controller writes the file. Without the option the plugin does nothing. Imports nothing heavy:
it is loaded into every pytest run of an environment where normtheory is installed.
"""

from __future__ import annotations

import json
import os

import pytest

from normtheory.testing import margins

PROPERTY = "normtheory_margin"
SCHEMA = "normtheory.margins/1"


def pytest_addoption(parser):
    group = parser.getgroup("normtheory")
    group.addoption("--normtheory-report", metavar="PATH", default=None,
                    help="write, per test, the largest error/bound assert_close_to_exact saw (JSON)")


def pytest_configure(config):
    path = config.getoption("normtheory_report", default=None)
    if path:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise pytest.UsageError(f"--normtheory-report {path}: directory {directory} does not exist")
        config.pluginmanager.register(MarginReport(path), "normtheory-margin-report")


class MarginReport:
    def __init__(self, path: str):
        self.path = path
        self.records: dict[str, dict] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        margins.start()
        try:
            yield
        finally:
            item.stash[_KEY] = margins.finish()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        record = item.stash.get(_KEY, None)
        if call.when == "call" and record is not None:
            outcome.get_result().user_properties.append((PROPERTY, record))

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for name, record in report.user_properties:
            if name == PROPERTY:
                self.records[report.nodeid] = {"nodeid": report.nodeid, "outcome": report.outcome, **record}

    def pytest_sessionfinish(self, session):
        if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
            return
        tests = sorted(self.records.values(), key=lambda r: -r["max_err_over_bound"])
        with open(self.path, "w") as handle:
            json.dump({"schema": SCHEMA, "tests": tests}, handle, indent=2)
            handle.write("\n")

    def pytest_terminal_summary(self, terminalreporter):
        if not self.records:
            terminalreporter.write_line(f"normtheory: no assert_close_to_exact in these tests; {self.path} lists none")
            return
        tightest = max(self.records.values(), key=lambda r: r["max_err_over_bound"])
        terminalreporter.write_line(
            f"normtheory: {len(self.records)} tests compared to the exact result; largest error/bound "
            f"{tightest['max_err_over_bound']:.3g} in {tightest['nodeid']}; margins in {self.path}")


_KEY = pytest.StashKey[dict | None]()
