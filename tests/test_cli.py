"""The command line: exit codes and one-line errors (docs/design.md), fast --help, and the
reference command writing what the Python function returns."""

from __future__ import annotations

import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from normtheory.cli import main
from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "normtheory.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_help_imports_nothing_heavy():
    code = ("import sys, normtheory.cli as c; c.build_parser(); "
            "heavy = [m for m in ('torch', 'sympy', 'numba', 'transformers', 'flint') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_reference_command_writes_the_correctly_rounded_values(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8)).astype(ml_dtypes.bfloat16)
    gy = rng.standard_normal((3, 8)).astype(ml_dtypes.bfloat16)
    np.save(tmp_path / "x.npy", x)  # saved as |V2: the file convention for ml_dtypes data
    np.save(tmp_path / "gy.npy", gy.view(np.uint16))  # raw bits are accepted too
    result = run_cli("reference", "--op", "layernorm", "--format", "bf16", "--x", str(tmp_path / "x.npy"),
                     "--gy", str(tmp_path / "gy.npy"), "--out", str(tmp_path / "out.npz"))
    assert result.returncode == 0, result.stderr
    written = np.load(tmp_path / "out.npz", allow_pickle=False)
    assert str(written["format"]) == "bf16" and written["y"].dtype == np.uint16
    fmt = FORMATS["bf16"]
    expected = correctly_rounded("layernorm", fmt.to_float64(x), format="bf16", gy=fmt.to_float64(gy))
    for name in ("y", "gx", "gw", "gb"):
        assert np.array_equal(written[name], fmt.to_bits(expected[name])), name


def _bad_inputs(tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.ones((2, 4), dtype=np.float32))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "tenth.npy", np.array([[0.1, 1.0]]))
    np.save(tmp_path / "w5.npy", np.ones(5, dtype=np.float32))
    out = str(tmp_path / "out.npz")
    common = ["--format", "fp32", "--out", out]
    return {
        "unknown op": ["reference", "--op", "groupnorm", "--x", str(good), *common],
        "unknown format": ["reference", "--op", "rmsnorm", "--x", str(good), "--format", "fp12", "--out", out],
        "missing file": ["reference", "--op", "rmsnorm", "--x", str(tmp_path / "none.npy"), *common],
        "pickled file": ["reference", "--op", "rmsnorm", "--x", str(tmp_path / "pickled.npy"), *common],
        "corrupt file": ["reference", "--op", "rmsnorm", "--x", str(tmp_path / "corrupt.npy"), *common],
        "not representable": ["reference", "--op", "rmsnorm", "--x", str(tmp_path / "tenth.npy"), *common],
        "w of wrong length": ["reference", "--op", "rmsnorm", "--x", str(good), "--w", str(tmp_path / "w5.npy"), *common],
        "negative eps": ["reference", "--op", "rmsnorm", "--x", str(good), "--eps", "-1e-5", *common],
        "bad flag": ["reference", "--op", "rmsnorm", "--x", str(good), "--frobnicate", *common],
        "overwrite input": ["reference", "--op", "rmsnorm", "--x", str(good), "--format", "fp32", "--out", str(good)],
        "unknown command": ["certify-all"],
    }


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, capsys):
    cases = _bad_inputs(tmp_path)
    before = (tmp_path / "x.npy").read_bytes()
    for label, args in cases.items():
        code = main(args)  # in process: main() is exactly what the console script calls
        stderr = capsys.readouterr().err
        assert code == 2, f"{label}: exit {code}: {stderr}"
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, f"{label}: {stderr}"
    assert (tmp_path / "x.npy").read_bytes() == before  # nothing the user gave was overwritten


@pytest.mark.parametrize("flags, message", [
    (["--op", "groupnorm"], "unknown op"),
    (["--op", "lpnorm", "--p", "0.5"], "p must be a number >= 1"),
    (["--op", "rmsnorm", "--p", "2"], "p is only for lpnorm"),
    (["--op", "rmsnorm", "--eps=-1e-5"], "eps must be finite and >= 0"),
    (["--op", "rmsnorm", "--eps-mode", "around"], "eps_mode must be one of"),
    (["--op", "rmsnorm", "--affine", "scale"], "affine must be one of"),
    (["--op", "rmsnorm", "--format", "fp4_e2m1fn"], "has no NaN or inf"),
])
def test_the_settings_are_checked_before_any_input_is_read(tmp_path, capsys, flags, message):
    """A wrong --op (or eps, p, format) is the error reported, not the missing --x behind it."""
    args = ["reference", "--format", "fp32", *flags, "--x", str(tmp_path / "none.npy"), "--out", str(tmp_path / "o.npz")]
    code = main(args)
    stderr = capsys.readouterr().err
    assert code == 2 and message in stderr and "no such file" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1


def test_bad_input_through_the_real_console_entry(tmp_path):
    result = run_cli(*_bad_inputs(tmp_path)["pickled file"])
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
