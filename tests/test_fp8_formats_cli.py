"""The new formats at the command line: the fnuz fp8 formats work end to end in
`normtheory reference`; fp6/fp4 (no NaN) and the e8m0 scale format are refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.reference import correctly_rounded

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "normtheory.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_reference_writes_fnuz_outputs(tmp_path):
    fmt = FORMATS["fp8_e4m3fnuz"]
    x = fmt.round(np.random.default_rng(0).standard_normal((3, 16)) * 4)
    np.save(tmp_path / "x.npy", fmt.to_bits(x))
    result = run_cli("reference", "--op", "rmsnorm", "--format", "fp8_e4m3fnuz", "--x", str(tmp_path / "x.npy"),
                     "--out", str(tmp_path / "out.npz"))
    assert result.returncode == 0, result.stderr
    written = np.load(tmp_path / "out.npz", allow_pickle=False)
    expected = correctly_rounded("rmsnorm", fmt.to_float64(x), format=fmt)["y"]
    assert np.array_equal(written["y"], fmt.to_bits(expected))
    assert not (written["y"] == 0x80).any()  # 0x80 is NaN in fnuz, never a zero


@pytest.mark.parametrize("name,message", [("fp4_e2m1fn", "has no NaN or inf"), ("fp6_e3m2fn", "has no NaN or inf"),
                                          ("fp8_e8m0fnu", "block-scale format")])
def test_reference_refuses_formats_it_cannot_write(tmp_path, name, message):
    np.save(tmp_path / "x.npy", np.ones((2, 4), dtype=np.float32))
    result = run_cli("reference", "--op", "rmsnorm", "--format", name, "--x", str(tmp_path / "x.npy"),
                     "--out", str(tmp_path / "out.npz"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_raw_bits_beyond_the_encoding_are_refused():
    from normtheory.arrays import decode
    from normtheory.errors import UsageError

    fmt = FORMATS["fp4_e2m1fn"]
    assert np.array_equal(decode(np.array([0, 7, 15], dtype=np.uint8), fmt, "x"), [0.0, 6.0, -6.0])
    with pytest.raises(UsageError, match="below 2\\*\\*4"):
        decode(np.array([16], dtype=np.uint8), fmt, "x")
