"""`normtheory lp` through the real dispatcher (wired here for the test only)."""

import json
import math

import pytest

from normtheory import cli
from normtheory.formats import FORMATS
from normtheory.theory.lp import thresholds as lp_thresholds


@pytest.fixture(autouse=True)
def wire_lp(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", {"lp": ("normtheory.cli.lp", "Lp normalizer stability table")})


def _run(capsys, *argv):
    code = cli.main(["lp", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, fragment", [
    (["--p", "0.5", "--format", "fp16", "--d", "64"], "p must be"),
    (["--p", "nan", "--format", "fp16", "--d", "64"], "p must be"),
    (["--p", "two", "--format", "fp16", "--d", "64"], "p must be"),
    (["--p", "3", "--format", "fp8_e4m3fn", "--d", "64"], "--format"),
    (["--p", "3", "--format", "fp16", "--d", "1"], "--d"),
    (["--p", "3", "--format", "fp16", "--d", "x"], "--d"),
    (["--p", "3", "--format", "fp16", "--d", "64", "--eps", "-1"], "--eps"),
    (["--p", "3", "--format", "fp16", "--d", "64", "--acc", "fp64"], "--acc"),
    (["--p", "3", "--format", "fp16", "--d", "64", "--survey-step", "0"], "--survey-step"),
    (["--format", "fp16", "--d", "64"], "--p"),
    (["--p", "3", "--format", "fp16", "--d", "8", "--json", "/nonexistent/dir/out.json"], "cannot write"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_table_for_fp16_accumulation_reports_both_failures_of_the_naive_kernel(capsys, tmp_path):
    out_path = tmp_path / "lp.json"
    code, out, _ = _run(capsys, "--p", "8", "--format", "fp16", "--d", "64", "--acc", "fp16", "--json", str(out_path))
    assert code == 0, out
    table = json.loads(out_path.read_text())
    naive = table["safe_range"]["naive"]
    predicted_high = (FORMATS["fp16"].max_finite / 64) ** (1 / 8)  # written out, not taken from the code
    assert naive["predicted"]["high"] == pytest.approx(predicted_high, rel=1e-12)
    assert predicted_high <= naive["measured_overflow_at"] <= 2 * predicted_high
    assert naive["measured_underflow_up_to"] == pytest.approx(2.0 ** (-25 / 8), rel=2 * FORMATS["fp16"].unit_roundoff * 8)
    assert table["safe_range"]["stable"]["measured_overflow_at"] is None
    assert table["stable_survey"]["max_err_over_bound"] <= 1
    # the certifier judges the catalog kernels (fp32 accumulation): at p = 8 the naive one's
    # (1/d)Σ|x|^8 still overflows fp32 inside fp16's range, the stable one never does
    assert table["certifier"] == {"naive": "fail", "stable": "pass"}
    assert "verdict: pass" in out


def test_inf_and_an_fp32_accumulator_on_fp16_data_never_fail(capsys):
    code, out, _ = _run(capsys, "--p", "inf", "--format", "fp16", "--d", "32")
    assert code == 0 and out.count("whole finite range") == 2


def test_a_wrong_prediction_makes_the_command_fail(capsys, monkeypatch):
    # forgetting the width: F^(1/p) instead of (F/d)^(1/p), several binades off at d = 4096, p = 2
    monkeypatch.setattr(lp_thresholds, "naive_overflow_abs",
                        lambda p, d, acc="fp32": math.exp(math.log(FORMATS[acc].max_finite) / p))
    code, out, _ = _run(capsys, "--p", "2", "--format", "bf16", "--d", "4096", "--survey-step", "64")
    assert code == 1 and "naive_overflow" in out


def test_the_certifier_hook_is_used_when_connected(capsys, monkeypatch):
    from normtheory.cli import lp as lp_cli

    seen = []
    monkeypatch.setattr(lp_cli, "CERTIFIER", lambda name, **kw: seen.append((name, kw["p"])) or "pass")
    code, out, _ = _run(capsys, "--p", "3", "--format", "bf16", "--d", "16", "--survey-step", "16")
    assert code == 0 and seen == [("lp.naive", 3.0), ("lp.stable", 3.0)]
    assert "certifier: naive pass, stable pass" in out
