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
    assert "HOLDS (expected HOLDS" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["passed"] is True and payload["verdict"] == "HOLDS"
    checks = {(r["check"], r["target"]) for r in payload["reports"]}
    assert checks == {(c, t) for c in ("inference", "gradients", "training", "centring") for t in ("rmsnorm", "crmsnorm")}
    assert all(r["mde_relative"] > 0 for r in payload["reports"])
    assert all(r["relative_difference"] <= 1e-12 for r in payload["reports"] if r["check"] != "training")


def test_wrong_conversion_is_refuted_as_expected(main, capsys, tmp_path):
    """--skip-recentre registers the expectation REFUTED: exit 0 when the checks refute it."""
    out = tmp_path / "wrong.json"
    assert main(["equiv", *SMALL, "--steps", "0", "--skip-recentre", "blocks.0.attn_out.weight", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "REFUTED (expected REFUTED" in text and "MDE" in text
    payload = json.loads(out.read_text())
    assert payload["verdict"] == "REFUTED" and {r["check"] for r in payload["reports"]} >= {"centring", "inference"}


def test_bf16_catches_an_uncentred_writer_below_the_logits_mde(main, capsys):
    """A branch writer's effect (7-11% of the logits) is below the bf16 logits check's MDE; the
    centring check refutes the conversion anyway."""
    assert main(["equiv", "--dtype", "bf16", "--target", "rmsnorm", "--steps", "0",
                 "--skip-recentre", "blocks.1.attn_out.weight"]) == 0
    lines = capsys.readouterr().out.splitlines()
    inference = next(line for line in lines if line.startswith("inference"))
    centring = next(line for line in lines if line.startswith("centring"))
    assert inference.endswith("HOLDS") and centring.endswith("REFUTED")


def test_writer_scan_accounts_for_every_writer(main, capsys, tmp_path):
    out = tmp_path / "scan.json"
    assert main(["equiv", *SMALL, "--dtype", "bf16", "--target", "rmsnorm", "--writer-scan", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["writer_scan"]
    assert {r["writer"] for r in rows} == {"tok_emb.weight", "pos_emb.weight", "blocks.0.attn_out.weight",
                                           "blocks.0.fc_out.weight"}
    assert all(r["accounted_for"] and r["centring_detected"] for r in rows)
    assert "HOLDS (expected HOLDS)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--dtype", "fp16"],
        ["--model", "llama"],
        ["--d", "10", "--heads", "4"],
        ["--steps", "-1"],
        ["--samples", "2"],
        ["--skip-recentre", "nope"],
        ["--writer-scan", "--skip-recentre", "tok_emb.weight"],
        ["--model", "gpt2", "--qk-norm"],
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


def test_a_missing_json_directory_is_refused_before_the_models_are_built(main, capsys, monkeypatch, tmp_path):
    from normtheory.cli import equiv

    def build(args):
        raise AssertionError("the models were built before --json was checked")

    monkeypatch.setattr(equiv, "_subject", build)
    assert main(["equiv", *SMALL, "--json", str(tmp_path / "no_dir" / "equiv.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--json" in err and "does not exist" in err and "\n" not in err
