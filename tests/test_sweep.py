"""`normtheory sweep`: a grid of 2 kernels × 3 formats × 2 widths gives the same recordings on
the local process pool and through submitit's local executor as one after the other, the
recordings re-judge with `normtheory check`, and bad grids are refused in one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from normtheory.certify.recording import load  # noqa: E402
from normtheory.cli import main  # noqa: E402

GRID = """
out = "{out}"
check = {check}

[[kernel]]
name = "torch.rms_norm"
op = "rmsnorm"

[[kernel]]
name = "torch.layer_norm"
op = "layernorm"

[grid]
format = ["bf16", "fp16", "fp32"]
d = [8, 16]

[options]
rows_per_family = 1
seed = {seed}
"""


def _grid(tmp_path, name="grid.toml", *, out="recs", check="false", seed=0):
    path = tmp_path / name
    path.write_text(GRID.format(out=out, check=check, seed=seed))
    return str(path)


def _recordings(directory) -> dict:
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".npz"):
            found[name] = load(os.path.join(directory, name))
    return found


def _same_recordings(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for name in a:
        (arrays_a, meta_a), (arrays_b, meta_b) = a[name], b[name]
        if meta_a != meta_b or arrays_a.keys() != arrays_b.keys():
            return False
        for key in arrays_a:  # bit for bit (NaN included)
            if not np.array_equal(arrays_a[key].view(np.uint64), arrays_b[key].view(np.uint64)):
                return False
    return True


def test_local_and_submitit_sweeps_give_the_sequential_recordings(tmp_path, capsys):
    grid = _grid(tmp_path, check="true")
    runs = {}
    for executor, extra in (("sequential", []), ("local", ["--workers", "2"]),
                            ("submitit", ["--cluster", "local", "--cells-per-job", "6"])):
        out = tmp_path / executor
        code = main(["sweep", grid, "--executor", executor, "--out", str(out), *extra])
        manifest = json.loads((out / "sweep.json").read_text())
        assert len(manifest["cells"]) == 12 and all(c["record_exit"] == 0 for c in manifest["cells"])
        runs[executor] = (_recordings(out), code, [c["check_exit"] for c in manifest["cells"]])
    assert len(runs["sequential"][0]) == 12
    assert _same_recordings(runs["sequential"][0], runs["local"][0])
    assert _same_recordings(runs["sequential"][0], runs["submitit"][0])
    assert runs["sequential"][1:] == runs["local"][1:] == runs["submitit"][1:]  # the same verdicts too
    # a recording moves: `normtheory check` elsewhere gives the verdict the sweep recorded
    manifest = json.loads((tmp_path / "submitit" / "sweep.json").read_text())
    for cell in manifest["cells"][:3]:
        assert main(["check", cell["recording"]]) == cell["check_exit"]


def test_the_comparison_can_fail(tmp_path):
    """Recordings of another seed differ: _same_recordings is not trivially true."""
    a, b = _grid(tmp_path, "a.toml", out="a", seed=0), _grid(tmp_path, "b.toml", out="b", seed=1)
    for grid in (a, b):
        assert main(["sweep", grid, "--executor", "sequential"]) == 0
    assert not _same_recordings(_recordings(tmp_path / "a"), _recordings(tmp_path / "b"))


@pytest.mark.parametrize("text, message", [
    ("[[kernel]]\nname='torch.rms_norm'\nop='rmsnorm'\n[grid]\nformat=['bf16']\n[options]\nd=8\nbudgett=3\n",
     "unrecognized arguments: --budgett"),
    ("[[kernel]]\nname='torch.rms_norm'\n[grid]\nd=[8]\n", "needs exactly name and op"),
    ("speed = 1\n", "unknown key"),
    ("[[kernel]]\nname='torch.rms_norm'\nop='rmsnorm'\n[grid]\nd=8\n", "must be a non-empty list"),
    ("not toml [", "not valid TOML"),
])
def test_bad_grids_are_refused_in_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_existing_recordings_are_kept_unless_asked(tmp_path, capsys):
    grid = _grid(tmp_path)
    assert main(["sweep", grid, "--executor", "sequential"]) == 0
    first = sorted(os.listdir(tmp_path / "recs"))
    assert main(["sweep", grid, "--executor", "sequential"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["sweep", grid, "--executor", "sequential", "--resume"]) == 0
    skipped = json.loads((tmp_path / "recs" / "sweep.json").read_text())["skipped"]
    assert sorted(skipped) == [n[:-4] for n in first if n.endswith(".npz")]
    assert main(["sweep", grid, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("normtheory record torch.") == 12
