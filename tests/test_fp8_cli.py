"""`normtheory fp8` (cli/fp8.py), driven through the same parser class the console
script uses (the lead wires the subcommand into normtheory/cli.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from normtheory.cli import _ArgumentParser
from normtheory.cli import fp8 as fp8_cli
from normtheory.errors import UsageError


def run(*argv):
    parser = _ArgumentParser(prog="normtheory fp8")
    fp8_cli.configure(parser)
    return fp8_cli.run(parser.parse_args(list(argv)))


def test_probe_prints_and_writes_json(tmp_path, capsys):
    pytest.importorskip("torch")
    assert run("probe", "--json", str(tmp_path / "p.json")) == 0
    written = json.loads((tmp_path / "p.json").read_text())
    formats = {row["format"] for row in written["results"]}
    assert {"fp8_e4m3fn", "fp8_e5m2"} <= formats
    assert "fp8_e4m3fn" in capsys.readouterr().out


def test_accumulation_reads_a_recording(tmp_path):
    from normtheory.formats import FORMATS
    from normtheory.precision.lowprecision.accumulation import probe_inputs, save_recording

    a, b = probe_inputs(256, "bf16", np.random.default_rng(0), m=4, n=4)
    measured = FORMATS["fp32"].round_to_float64(a @ b)  # float64 product then fp32: a near-exact accumulator
    save_recording(str(tmp_path / "r.npz"), {"x/K256": {"a": a, "b": b, "c": measured, "label": "x", "k": 256,
                                                        "in_format": "bf16", "out_format": "fp32"}}, {})
    assert run("accumulation", str(tmp_path / "r.npz"), "--json", str(tmp_path / "a.json")) == 0
    (row,) = json.loads((tmp_path / "a.json").read_text())["results"]
    assert row["at_least"] and row["bits"] >= 24  # the output rounding is all there is to see


@pytest.mark.parametrize("argv,message", [(("dance",), "unknown fp8 action"), (("accumulation",), "needs a recording"),
                                          (("accumulation", "/nonexistent.npz"), "no such recording"),
                                          (("probe", "--device", "tpu"), "--device must be")])
def test_bad_input_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=message):
        run(*argv)
