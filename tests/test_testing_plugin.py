"""The pytest plugin (`--normtheory-report`), tested with pytester: per test the largest
error/bound seen, failing comparisons included, tests without comparisons left out; the
pyproject entry point names the module."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")

pytest_plugins = ("pytester",)
PLUGIN = "normtheory.testing.pytest_plugin"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUITE = """
import torch
from normtheory.kernels import defective
from normtheory.testing import assert_close_to_exact

x = torch.randn(8, 128, generator=torch.Generator().manual_seed(0)).bfloat16()

def test_careful():
    y = defective.careful_rms_norm(x, None, None, 1e-6)
    assert_close_to_exact(y, op="rmsnorm", x=x, eps=1e-6)
    assert_close_to_exact({"y": y}, op="rmsnorm", x=x, eps=1e-6)

def test_truncating():
    assert_close_to_exact(defective.truncating_rms_norm(x, None, None, 1e-6), op="rmsnorm", x=x, eps=1e-6)

def test_no_comparison():
    assert True
"""


def _report(pytester, *args):
    pytester.makepyfile(test_suite=SUITE)
    path = pytester.path / "margins.json"
    result = pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", "--normtheory-report", str(path), *args)
    return result, json.loads(path.read_text())


def test_report_holds_each_tests_largest_error_over_bound(pytester):
    result, report = _report(pytester)
    result.assert_outcomes(passed=2, failed=1)
    assert report["schema"] == "normtheory.margins/1"
    tests = {entry["nodeid"].split("::")[1]: entry for entry in report["tests"]}
    assert set(tests) == {"test_careful", "test_truncating"}  # no comparison, no entry
    careful, truncating = tests["test_careful"], tests["test_truncating"]
    assert careful["outcome"] == "passed" and careful["comparisons"] == 2 and careful["failed"] == 0
    assert 0 < careful["max_err_over_bound"] <= 1 and set(careful["by_output"]) == {"y"}
    assert truncating["outcome"] == "failed" and truncating["failed"] == 1 and truncating["max_err_over_bound"] > 1
    assert report["tests"][0]["nodeid"].endswith("test_truncating")  # tightest first
    result.stdout.fnmatch_lines(["normtheory: 2 tests compared to the exact result; largest error/bound *"])


@pytest.mark.slow
def test_report_under_xdist(pytester):
    _, report = _report(pytester, "-n", "2")
    assert {entry["nodeid"].split("::")[1] for entry in report["tests"]} == {"test_careful", "test_truncating"}


def test_a_missing_report_directory_is_a_usage_error(pytester):
    pytester.makepyfile(test_suite="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", PLUGIN, "--normtheory-report", str(pytester.path / "nowhere" / "m.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--normtheory-report*does not exist*"])


def test_without_the_option_the_plugin_records_nothing(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    assert "normtheory:" not in result.stdout.str()


def test_the_entry_point_names_the_plugin_module():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        entry_points = tomllib.load(handle)["project"]["entry-points"]["pytest11"]
    assert entry_points == {PLUGIN: PLUGIN}  # name = module: `-p` and the entry point are one plugin
    module = __import__(PLUGIN, fromlist=["pytest_addoption"])
    assert callable(module.pytest_addoption)
