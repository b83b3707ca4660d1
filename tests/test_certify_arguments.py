"""Issue 15, usage errors a newcomer met only after a whole run, or met in a loop: every
argument of certify / record / check / fp8 is checked before any kernel runs, and the message
says what to do. Each case runs through the console entry (normtheory.cli.main, what the
`normtheory` script calls; one case through a real subprocess) with a user kernel that leaves
a mark when it is called, so "before the kernel runs" is observed, not assumed."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from normtheory.cli import main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ("--d", "16", "--budget", "24")
_names = itertools.count()

KERNEL_SOURCE = """
import pathlib
import torch

def rms_norm(x, weight, bias, eps):
    pathlib.Path({mark!r}).write_text("called")
    y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return (y if weight is None else y * weight.float()).to(x.dtype)
"""


@pytest.fixture
def marked_kernel(tmp_path, monkeypatch):
    """A module:callable in the working directory that writes `called` when it runs."""
    name = f"marked_kernel_{next(_names)}"
    mark = tmp_path / "called"
    (tmp_path / f"{name}.py").write_text(KERNEL_SOURCE.format(mark=str(mark)))
    monkeypatch.chdir(tmp_path)
    return f"{name}:rms_norm", mark


def run_main(capsys, *args):
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_refused_before_the_kernel(result, mark, *texts):
    code, out, err = result
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in texts:
        assert text in err, err
    assert not mark.exists(), "the kernel ran before the usage error was found"


@pytest.mark.parametrize("flag", ["--report", "--json", "--worst-out"])
def test_a_missing_output_directory_is_refused_before_the_run(flag, marked_kernel, capsys):
    kernel, mark = marked_kernel
    result = run_main(capsys, "certify", kernel, "--op", "rmsnorm", "--format", "bf16", *SMALL,
                      flag, "no_such_dir/out.file")
    assert_refused_before_the_kernel(result, mark, flag, "does not exist")


@pytest.mark.parametrize("outputs", [
    ("--json", "out.json", "--report", "out.json"),
    ("--report", "r.md", "--json", "r_safe_domain.png"),  # a plot the report would write beside it
    ("--worst-out", "w.npz", "--json", "w.search.npz"),  # where --worst-out puts the search's worst row
])
def test_two_outputs_naming_one_file_are_refused_before_the_run(outputs, marked_kernel, capsys):
    kernel, mark = marked_kernel
    result = run_main(capsys, "certify", kernel, "--op", "rmsnorm", "--format", "bf16", *SMALL, *outputs)
    assert_refused_before_the_kernel(result, mark, "same file")


def test_worst_out_companions_never_overwrite_the_inputs(marked_kernel, capsys, tmp_path):
    """--worst-out w.npz also writes w.backward.npz: captured inputs of that name stay as they were."""
    kernel, mark = marked_kernel
    np.savez(tmp_path / "w.backward.npz", x=np.arange(-8, 8, dtype=np.float32).reshape(1, 16))
    before = (tmp_path / "w.backward.npz").read_bytes()
    result = run_main(capsys, "certify", kernel, "--op", "rmsnorm", "--format", "bf16", *SMALL,
                      "--inputs", "w.backward.npz", "--worst-out", "w.npz")
    assert_refused_before_the_kernel(result, mark, "--worst-out", "would overwrite an input file")
    assert (tmp_path / "w.backward.npz").read_bytes() == before


@pytest.mark.parametrize("extra", [("--contract", "model:eps_outside"), ("--eps-mode", "outside")])
def test_a_contract_without_a_backward_bound_says_no_backward(extra, marked_kernel, capsys):
    kernel, mark = marked_kernel
    result = run_main(capsys, "certify", kernel, "--op", "rmsnorm", "--format", "bf16", *SMALL, *extra)
    assert_refused_before_the_kernel(result, mark, "--no-backward")


def test_the_same_contract_forward_only_runs(marked_kernel, capsys):
    kernel, mark = marked_kernel
    code, out, err = run_main(capsys, "certify", kernel, "--op", "rmsnorm", "--format", "bf16", *SMALL,
                              "--eps-mode", "outside", "--no-backward", "--no-search")
    assert code in (0, 1) and mark.exists(), out + err  # judged: whatever the verdict, no usage error


def test_record_and_check_refuse_a_missing_output_directory(marked_kernel, capsys, tmp_path):
    kernel, mark = marked_kernel
    result = run_main(capsys, "record", kernel, "--op", "rmsnorm", "--format", "bf16", "--d", "16",
                      "--rows-per-family", "1", "--out", "no_such_dir/rec.npz")
    assert_refused_before_the_kernel(result, mark, "--out", "does not exist")
    code, _, _ = run_main(capsys, "record", kernel, "--op", "rmsnorm", "--format", "bf16", "--d", "16",
                          "--rows-per-family", "1", "--out", "rec.npz")
    assert code == 0
    code, _, err = run_main(capsys, "check", "rec.npz", "--json", "no_such_dir/cert.json")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_fp8_flags_on_a_plain_kernel_name_the_fp8_kernels(marked_kernel, capsys):
    """Issue 15: "drop --scaling", then "needs --scaling", round and round."""
    for flags in (("--out-format", "fp8_e4m3fn"), ("--out-format", "fp8_e4m3fn", "--scaling", "row"),
                  ("--scaling", "row")):
        result = run_main(capsys, "certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", *SMALL, *flags)
        code, _, err = result
        assert code == 2 and "fp8.rms_norm or fp8.layer_norm" in err, (flags, err)


def _recording(tmp_path, capsys) -> dict:
    path = tmp_path / "rec.npz"
    code, out, err = run_main(capsys, "record", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16",
                              "--d", "16", "--rows-per-family", "2", "--out", str(path))
    assert code == 0, out + err
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("damage", ["gx deleted", "gw deleted", "meta d = 999"])
def test_check_calls_a_damaged_recording_corrupt(damage, tmp_path, capsys):
    """Issue 15: a recording with gx deleted was judged without gx, and meta d = 999 beside
    16-wide arrays was accepted: both are corrupt files (exit 2, one line)."""
    arrays = _recording(tmp_path, capsys)
    if damage == "meta d = 999":
        meta = json.loads(str(arrays["meta"]))
        meta["d"] = 999
        arrays["meta"] = np.array(json.dumps(meta))
    else:
        del arrays[damage.split()[0]]
    np.savez(tmp_path / "damaged.npz", **arrays)
    code, out, err = run_main(capsys, "check", str(tmp_path / "damaged.npz"))
    assert code == 2 and "corrupt recording" in err and len(err.strip().splitlines()) == 1, out + err
    np.savez(tmp_path / "intact.npz", **_recording(tmp_path, capsys))
    assert run_main(capsys, "check", str(tmp_path / "intact.npz"))[0] == 0  # the check itself is not the problem


def test_fp8_accumulation_of_a_kernel_recording_says_what_to_run(tmp_path, capsys):
    """Issue 15: `normtheory fp8 accumulation rec.npz` answered `(KeyError: 'cases')`."""
    np.savez(tmp_path / "rec.npz", **_recording(tmp_path, capsys))
    code, _, err = run_main(capsys, "fp8", "accumulation", str(tmp_path / "rec.npz"))
    assert code == 2 and "normtheory check" in err and "accumulation_probe.py" in err and "KeyError" not in err


def test_usage_error_through_the_real_console_script(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "normtheory", "certify", "torch.rms_norm", "--op", "rmsnorm",
                             "--format", "bf16", *SMALL, "--report", str(tmp_path / "nodir" / "r.md")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert "row/s" not in result.stderr  # no progress bar: nothing ran


def test_help_says_exit_codes_examples_signature_models_and_seed(capsys):
    with pytest.raises(SystemExit):
        main(["certify", "--help"])
    text = capsys.readouterr().out
    for needed in ("exit codes: 0 pass, 1 fail", "examples:", "fn(x, weight, bias, eps", "model:NAME",
                   "llama", "onepass", "eps_outside", "same seed"):
        assert needed in text, needed
    with pytest.raises(SystemExit):
        main(["record", "--help"])
    text = capsys.readouterr().out
    assert "record the forward pass only" in text and "certify the forward pass only" not in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit codes" in capsys.readouterr().out
