"""`normtheory certify / record / check` from the command line: exit codes (0 pass, 1 fail,
2 usage or input error with one line and no traceback), the files they write, and record →
check on a machine without the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from normtheory.certify import recording  # noqa: E402
from normtheory.certify.check import check_recording  # noqa: E402
from normtheory.cli import main  # noqa: E402
from normtheory.errors import UsageError  # noqa: E402
from normtheory.kernels import defective as gallery  # noqa: E402
from normtheory.testing import assert_precision_safe  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def run_cli(*args, cwd=TESTS):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "normtheory.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(capsys, *args):
    """In-process run of the CLI (no interpreter start-up): the same main() the script calls."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def assert_usage_error(result, text):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert text in result.stderr


SMALL = ("--d", "32", "--budget", "48")


def test_certify_writes_certificate_report_and_worst_inputs(tmp_path):
    cert_path, report = tmp_path / "cert.json", tmp_path / "report.md"
    result = run_cli("certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", *SMALL,
                     "--json", str(cert_path), "--report", str(report), "--worst-out", str(tmp_path / "worst.npz"))
    assert result.returncode == 0, result.stdout + result.stderr
    cert = json.loads(cert_path.read_text())
    for key in ("schema", "verdict", "kernel", "op", "format", "d", "eps", "contract", "seed", "budget", "max_abs",
                "environment", "inputs_tested", "forward", "backward", "safe_domain", "findings"):
        assert key in cert
    assert cert["verdict"] == "pass" and cert["inputs_tested"] <= 48
    assert float.fromhex(cert["forward"]["max_err_over_bound_hex"]) == cert["forward"]["max_err_over_bound"]
    text = report.read_text()
    assert "PASS" in text and "![" in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("(")[1].rstrip(")")).is_file()
    arrays, meta = recording.load(str(tmp_path / "worst.npz"))
    assert meta["kernel"] == "torch.rms_norm" and arrays["x"].shape[1] == 32


def test_certify_user_kernel_fails_with_exit_1():
    result = run_cli("certify", "normtheory.kernels.defective:truncating_rms_norm", "--op", "rmsnorm", "--format", "bf16", *SMALL,
                     "--no-search")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "Traceback" not in result.stderr


def test_kernel_faults_exit_1_without_traceback():
    result = run_cli("certify", "normtheory.kernels.defective:raises", "--op", "rmsnorm", "--format", "bf16", *SMALL)
    assert result.returncode == 1
    assert "kernel raised RuntimeError" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,text", [
    (("certify", "torch.nope", "--op", "rmsnorm", "--format", "bf16", "--d", "8"), "unknown kernel"),
    (("certify", "no_such_module_xyz:fn", "--op", "rmsnorm", "--format", "bf16", "--d", "8"), "does not import"),
    (("certify", "normtheory.kernels.defective:no_such_fn", "--op", "rmsnorm", "--format", "bf16", "--d", "8"),
     "has no attribute"),
    (("certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "8", "--contract", "loose"),
     "unknown contract"),
    (("certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "8", "--contract", "model:zzz"),
     "unknown model"),
    (("certify", "torch.rms_norm", "--op", "layernorm", "--format", "bf16", "--d", "8"), "implements rmsnorm"),
    (("certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "fp7", "--d", "8"), "certify supports"),
    (("certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "1"), "--d must be"),
    (("certify", "liger.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "8"), ""),
])
def test_usage_errors_exit_2(args, text, capsys, monkeypatch):
    monkeypatch.chdir(TESTS)
    assert_usage_error(run_main(capsys, *args), text)


def test_usage_error_from_the_console_script_has_no_traceback():
    assert_usage_error(run_cli("certify", "torch.nope", "--op", "rmsnorm", "--format", "bf16", "--d", "8"),
                       "unknown kernel")


def _record(tmp_path, capsys, name="rec.npz", kernel="torch.rms_norm"):
    path = tmp_path / name
    result = run_main(capsys, "record", kernel, "--op", "rmsnorm", "--format", "bf16", "--d", "32",
                     "--rows-per-family", "3", "--out", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def test_record_then_check_passes_and_a_tampered_recording_fails(tmp_path, capsys):
    path = _record(tmp_path, capsys)
    result = run_cli("check", str(path), "--json", str(tmp_path / "cert.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    cert = json.loads((tmp_path / "cert.json").read_text())
    assert cert["verdict"] == "pass" and cert["determinism"] == "not applicable"
    # flip the last mantissa bit of every output: 1 ulp off, over a half-ulp-dominated bound
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["y"] = arrays["y"] ^ np.uint16(1)
    np.savez(tmp_path / "tampered.npz", **arrays)
    result = run_main(capsys, "check", str(tmp_path / "tampered.npz"))
    assert result.returncode == 1, result.stdout + result.stderr


def test_layer_norm_weight_gradients_are_judged_per_family(tmp_path, capsys):
    """LayerNorm rows at |mean|/std >= 1e4 have no finite bound; a column sum over every family
    would take them in and leave gw and gb unjudged, so record stores one sum per family."""
    path = tmp_path / "ln.npz"
    # the gallery's careful LayerNorm: torch's own fp32 CPU backward fails `default` at |mean|/std = 100
    result = run_main(capsys, "record", "normtheory.kernels.defective:careful_layer_norm", "--op", "layernorm",
                      "--format", "fp32", "--d", "32",
                      "--rows-per-family", "2", "--out", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    arrays, meta = recording.load(str(path))
    assert arrays["gw"].shape == arrays["gb"].shape == (len(meta["families"]), 32)
    cert = check_recording(arrays, meta)
    assert cert["verdict"] == "pass", cert["findings"]
    assert 0 < cert["backward"]["gw"]["max_err_over_bound"] <= 1
    # a gw wrong by 1% in one family (the normal one, which has a finite bound) must fail
    normal = [i for i, span in enumerate(meta["families"]) if span[0] == "normal"][0]
    arrays["gw"][normal] *= 1.01
    tampered = check_recording(arrays, meta)
    assert tampered["verdict"] == "fail"
    assert "backward gw fails `default` on normal" in "\n".join(tampered["findings"])


def test_bad_recordings_are_usage_errors(tmp_path, capsys):
    path = _record(tmp_path, capsys)
    raw = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all")
    with open(tmp_path / "pickled.npz", "wb") as handle:
        np.savez(handle, x=np.array([{"evil": 1}], dtype=object), meta=np.array("{}"))
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(tmp_path / "nometa.npz", **{k: v for k, v in arrays.items() if k != "meta"})
    np.savez(tmp_path / "badshape.npz", **{**arrays, "y": arrays["y"][:, :-1]})
    np.savez(tmp_path / "floats.npz", **{**arrays, "y": arrays["y"].astype(np.float32)})
    for name, text in [("truncated.npz", "corrupt or truncated"), ("garbage.npz", "corrupt or truncated"),
                       ("pickled.npz", "refused"), ("nometa.npz", "no `meta`"), ("badshape.npz", "shape"),
                       ("floats.npz", "raw bf16 bits"), ("missing.npz", "no such file")]:
        assert_usage_error(run_main(capsys, "check", str(tmp_path / name)), text)
    assert_usage_error(run_main(capsys, "check", str(path), "--contract", "tight"), "unknown contract")


def test_outputs_never_overwrite_inputs(tmp_path, capsys):
    path = _record(tmp_path, capsys)
    before = path.read_bytes()
    assert_usage_error(run_main(capsys, "check", str(path), "--json", str(path)), "would overwrite")
    assert path.read_bytes() == before


def test_check_recording_in_process_matches_contract_ulp(tmp_path, capsys):
    path = _record(tmp_path, capsys)
    arrays, meta = recording.load(str(path))
    # torch.rms_norm on CPU rounds once from fp32: within 1 ulp everywhere, not within 0 ulps
    assert check_recording(arrays, meta, "ulp:1")["verdict"] == "pass"
    assert check_recording(arrays, meta, "ulp:0")["verdict"] == "fail"


def test_assert_precision_safe_passes_and_explains_failures():
    cert = assert_precision_safe(gallery.careful_rms_norm, op="rmsnorm", format="bf16", d=32, budget=48,
                                 backward=False)
    assert cert["verdict"] == "pass"
    with pytest.raises(AssertionError) as info:
        assert_precision_safe(gallery.truncating_rms_norm, op="rmsnorm", format="bf16", d=32, budget=48,
                              backward=False, search=False)
    message = str(info.value)
    assert "Mismatched elements in y" in message and "Greatest error/bound" in message and "Reproduce" in message
    with pytest.raises(UsageError):
        assert_precision_safe(gallery.careful_rms_norm, op="rmsnorm", format="bf16", d=32, contract="nope")


def test_main_returns_2_for_usage_errors_in_process(capsys):
    assert main(["certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "8", "--budget", "0"]) == 2


def test_record_runs_without_numba_and_python_flint(tmp_path):
    """The GPU host has torch but may lack the reference's numba and python-flint: recording
    must not need them (checking happens later, on any CPU machine)."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('numba', 'flint'):\n"
        "        raise ImportError('not on the GPU host: ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from normtheory.cli import main\n"
        f"sys.exit(main(['record', 'torch.rms_norm', '--op', 'rmsnorm', '--format', 'bf16', '--d', '16',"
        f" '--rows-per-family', '1', '--out', {str(tmp_path / 'r.npz')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.npz").is_file()
