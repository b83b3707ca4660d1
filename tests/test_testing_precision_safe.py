"""`assert_precision_safe` (issue 15's stumbles): the Reproduce line names the real kernel and
every setting, so running it reproduces the failure; the default budget is the command line's;
pytest shows the caller's frame, not the helper's."""

from __future__ import annotations

import argparse
import inspect
import shlex

import pytest

pytest.importorskip("torch")

from normtheory.cli import main  # noqa: E402
from normtheory.cli.certify import configure  # noqa: E402
from normtheory.kernels import defective  # noqa: E402
from normtheory.testing import assert_precision_safe  # noqa: E402
from normtheory.testing.precision_safe import kernel_spec  # noqa: E402

pytest_plugins = ("pytester",)

FAILING = dict(op="rmsnorm", format="bf16", d=32, budget=48, search=False)


def _reproduce_line(message: str) -> str:
    line = next(line for line in message.splitlines() if line.startswith("Reproduce: "))
    return line[len("Reproduce: "):].split("   (")[0]


def test_reproduce_line_names_the_kernel_and_every_setting():
    with pytest.raises(AssertionError) as info:
        assert_precision_safe(defective.truncating_rms_norm, eps=1e-5, eps_mode="inside", affine="weight",
                              max_abs=64.0, backward=False, **FAILING)
    args = shlex.split(_reproduce_line(str(info.value)))
    assert args[2] == "normtheory.kernels.defective:truncating_rms_norm"
    assert "KERNEL" not in args
    for flag, value in (("--eps", "1e-05"), ("--eps-mode", "inside"), ("--affine", "weight"), ("--max-abs", "64.0"),
                        ("--budget", "48"), ("--seed", "0")):
        assert args[args.index(flag) + 1] == value, flag
    assert "--no-backward" in args and "--no-search" in args


def test_reproduce_line_runs_and_reproduces_the_failure(tmp_path, monkeypatch, capsys):
    with pytest.raises(AssertionError) as info:
        assert_precision_safe(defective.truncating_rms_norm, backward=False, **FAILING)
    args = shlex.split(_reproduce_line(str(info.value)))
    monkeypatch.chdir(tmp_path)  # --worst-out worst.npz lands here
    assert main(args[1:]) == 1  # `normtheory certify ...`: the same failure, exit 1
    assert (tmp_path / "worst.npz").exists()


def test_default_budget_is_the_command_lines():
    parser = argparse.ArgumentParser()
    configure(parser)
    cli_default = parser.parse_args(["k", "--op", "rmsnorm", "--format", "bf16", "--d", "8"]).budget
    assert inspect.signature(assert_precision_safe).parameters["budget"].default == cli_default


def test_a_callable_without_an_importable_name_is_said_so():
    def local_kernel(x, weight, bias, eps):
        return defective.truncating_rms_norm(x, weight, bias, eps)

    assert kernel_spec(local_kernel) == ("MODULE:CALLABLE", False)
    assert kernel_spec("torch.rms_norm") == ("torch.rms_norm", True)
    with pytest.raises(AssertionError) as info:
        assert_precision_safe(local_kernel, backward=False, **FAILING)
    assert "give it as module:callable" in str(info.value)


def test_pytest_shows_the_callers_frame_not_the_helpers(pytester):
    pytester.makepyfile(test_user_kernel="""
        from normtheory.kernels import defective
        from normtheory.testing import assert_precision_safe

        def test_my_kernel():
            assert_precision_safe(defective.truncating_rms_norm, op="rmsnorm", format="bf16", d=32, budget=48,
                                  search=False, backward=False)
    """)
    result = pytester.runpytest("--tb=long", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "def test_my_kernel" in output
    assert "def assert_precision_safe" not in output and "certify_kernel(config" not in output
