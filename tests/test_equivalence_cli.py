"""`normtheory equiv`: exit codes 0 / 1 / 2 and the JSON report. The dispatcher on this branch
does not list `equiv` yet, so the tests register it the way cli.py will."""

import json
import subprocess
import sys

import pytest
import torch

from normtheory import cli


@pytest.fixture
def main(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", {"equiv": ("normtheory.cli.equiv", "Pre-LN ≡ Pre-RMSNorm ≡ Pre-CRMSNorm")})
    before = torch.get_num_threads()
    yield cli.main
    torch.set_num_threads(before)


SMALL = ["--d", "8", "--layers", "1", "--heads", "2", "--samples", "8"]


def test_pass_writes_json(main, tmp_path, capsys):
    out = tmp_path / "equiv.json"
    assert main(["equiv", *SMALL, "--steps", "2", "--json", str(out)]) == 0
    assert "PASS" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["passed"] is True
    checks = {(r["check"], r["target"]) for r in payload["reports"]}
    assert checks == {(c, t) for c in ("inference", "gradients", "training") for t in ("rmsnorm", "crmsnorm")}
    assert all(r["relative_difference"] <= 1e-12 for r in payload["reports"] if r["check"] != "training")


def test_wrong_conversion_fails_with_exit_1(main, capsys):
    assert main(["equiv", *SMALL, "--steps", "0", "--skip-recentre", "blocks.0.attn_out.weight"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--dtype", "fp16"],
        ["--model", "llama"],
        ["--d", "10", "--heads", "4"],
        ["--steps", "-1"],
        ["--samples", "2"],
        ["--skip-recentre", "nope"],
        ["--json", "/nonexistent-dir/x.json", "--steps", "0", *SMALL],
    ],
)
def test_bad_input_is_one_line_and_exit_2(main, capsys, argv):
    assert main(["equiv", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err


def test_cuda_request_without_cuda_is_a_usage_error(main, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["equiv", "--device", "cuda", *SMALL]) == 2


def test_module_imports_nothing_heavy():
    code = "import sys, normtheory.cli.equiv; print(any(m in sys.modules for m in ('torch', 'transformers', 'sympy')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
