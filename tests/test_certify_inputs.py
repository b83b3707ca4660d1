"""Issue 15, captured activations and input files: `--inputs x.npy` raised a TypeError, an
`--inputs` .npz without `x` was taken silently, float64 activations were refused with no
hint, and `reference --x junk.txt` called a text file "pickled". Through the console entry."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("torch")

from normtheory.certify import recording  # noqa: E402
from normtheory.cli import main  # noqa: E402

D = 16
SMALL = ("--d", str(D), "--budget", "30", "--no-search")


def run_main(capsys, *args):
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def certify(capsys, tmp_path, fmt, inputs, *extra):
    return run_main(capsys, "certify", "torch.rms_norm", "--op", "rmsnorm", "--format", fmt, *SMALL,
                    "--inputs", str(inputs), "--json", str(tmp_path / "cert.json"), *extra)


def test_a_npy_file_of_activations_is_certified(tmp_path, capsys):
    np.save(tmp_path / "acts.npy", np.random.default_rng(0).standard_normal((5, D)).astype(np.float32))
    code, out, err = certify(capsys, tmp_path, "fp32", tmp_path / "acts.npy")
    assert code == 0 and "Traceback" not in err, out + err
    cert = json.loads((tmp_path / "cert.json").read_text())
    assert "captured" in cert["families"] and "captured" in cert["forward"]["max_err_over_bound_by_family"]


def test_a_npz_without_x_is_refused_naming_what_it_holds(tmp_path, capsys):
    np.savez(tmp_path / "acts.npz", activations=np.ones((2, D), dtype=np.float32))
    code, _, err = certify(capsys, tmp_path, "fp32", tmp_path / "acts.npz")
    assert code == 2 and "--inputs" in err and "activations" in err and "'x'" in err


def test_float64_activations_are_refused_with_the_way_out(tmp_path, capsys):
    acts = np.random.default_rng(1).standard_normal((4, D))
    acts[0, :3] = [0.5, -2.0, 0.0]  # bf16 values already: kept as they are
    np.savez(tmp_path / "acts.npz", x=acts)
    code, _, err = certify(capsys, tmp_path, "bf16", tmp_path / "acts.npz")
    assert code == 2 and "--round-inputs" in err and "float64" in err
    code, out, err = certify(capsys, tmp_path, "bf16", tmp_path / "acts.npz", "--round-inputs")
    assert code == 0, out + err
    # counted independently of normtheory: a value changes iff it is not a bf16 value
    changed = int(np.count_nonzero(acts.astype(ml_dtypes.bfloat16).astype(np.float64) != acts))
    assert changed == acts.size - 3
    assert f"{changed} of {acts.size} values" in out
    cert = json.loads((tmp_path / "cert.json").read_text())
    assert any(f"{changed} of {acts.size} values" in finding for finding in cert["findings"])


def test_round_inputs_without_inputs_is_a_usage_error(capsys):
    code, _, err = run_main(capsys, "certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", *SMALL,
                            "--round-inputs")
    assert code == 2 and "--inputs" in err


def test_record_takes_the_captured_rows_as_a_family(tmp_path, capsys):
    np.save(tmp_path / "acts.npy", np.random.default_rng(2).standard_normal((3, D)).astype(np.float32))
    code, out, err = run_main(capsys, "record", "torch.rms_norm", "--op", "rmsnorm", "--format", "fp32", "--d",
                              str(D), "--rows-per-family", "2", "--inputs", str(tmp_path / "acts.npy"),
                              "--out", str(tmp_path / "rec.npz"))
    assert code == 0, out + err
    _, meta = recording.load(str(tmp_path / "rec.npz"))
    assert [span for span in meta["families"] if span[0] == "captured"] == [["captured", 22, 24]]


@pytest.mark.parametrize("content,text", [(b"hello world\n", "(text)"), (b"", "(an empty file)"),
                                          (b"\x00\xff\x13\x37binary", "(not numpy data)")])
def test_reference_names_what_a_non_numpy_file_is(tmp_path, capsys, content, text):
    (tmp_path / "junk.txt").write_bytes(content)
    code, _, err = run_main(capsys, "reference", "--op", "rmsnorm", "--format", "bf16", "--x",
                            str(tmp_path / "junk.txt"), "--out", str(tmp_path / "out.npz"))
    assert code == 2 and "not a .npy or .npz file" in err and text in err and "pickled" not in err
