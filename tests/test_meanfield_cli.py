"""`normtheory meanfield` through the real dispatcher (wired here for the test only)."""

import json
from pathlib import Path

import pytest

from normtheory import cli


@pytest.fixture(autouse=True)
def wire_meanfield(monkeypatch):
    # only this subcommand: the others may live on branches not merged here
    monkeypatch.setattr(cli, "SUBCOMMANDS",
                        {"meanfield": ("normtheory.cli.meanfield", "mean-field predictions vs measurement")})


def _run(capsys, *argv):
    code = cli.main(["meanfield", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, fragment", [
    (["--arch", "post_rms"], "--arch"),
    (["--setup", "xiong,weird"], "--setup"),
    (["--d", "64,x"], "--d"),
    (["--d", "2"], "--d"),
    (["--L", "0,6"], "--L"),
    (["--seeds", "1"], "--seeds"),
    (["--seeds", "two"], "invalid int"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cuda_without_a_device_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = _run(capsys, "--device", "cuda", "--d", "16", "--L", "1", "--seeds", "2")
    assert code == 2 and "CUDA" in err


def test_unreadable_or_foreign_records_exit_2(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "something else"}))
    for path in (tmp_path / "missing.json", corrupt, foreign):
        code, _, err = _run(capsys, "--from", str(path))
        assert code == 2 and len(err.strip().splitlines()) == 1


def test_truncated_record_is_a_usage_error(capsys, tmp_path):
    source = sorted((Path(__file__).parent / "data" / "meanfield").glob("xiong_d512.json"))[0]
    record = json.loads(source.read_text())
    record["measurements"]["pre_ln"]["hidden_ms"] = [row[:3] for row in record["measurements"]["pre_ln"]["hidden_ms"]]
    bad = tmp_path / "truncated.json"
    bad.write_text(json.dumps(record))
    code, _, err = _run(capsys, "--from", str(bad))
    assert code == 2 and "malformed record" in err and len(err.strip().splitlines()) == 1


def test_run_record_rejudge_json_and_plot(capsys, tmp_path):
    record, report, plot = tmp_path / "rec.json", tmp_path / "report.json", tmp_path / "mf.png"
    code, out, _ = _run(capsys, "--arch", "post_ln,pre_ln", "--d", "32", "--L", "2,4", "--seeds", "6",
                        "--record", str(record), "--json", str(report), "--plot", str(plot))
    data = json.loads(report.read_text())
    assert data["schema"] == "normtheory.meanfield/2" and code == data["exit"]
    verdicts = {c["id"]: c["verdict"] for c in data["claims"] if c["tests"]}
    assert set(verdicts.values()) <= {"HOLDS", "REFUTED", "INCONCLUSIVE"} and "xiong.lemma1" in verdicts
    assert code == (0 if all(c["matches"] for c in data["claims"] if c["tests"]) else 1)
    assert all(c["source"] and c["says"] and c["judged"] and c["expectation"] for c in data["claims"])
    # every report and recording states the protocol and the constants it was made with
    assert "tokens=16 readout=token loss=linear" in out
    meta = data["records"][0]
    assert meta["config"]["n_tokens"] == 16 and meta["constants"]["d_ff"] == 32 and meta["constants"]["eps"]["pre_ln"] == 0
    assert json.loads(record.read_text())[0]["constants"]["n_tokens"] == 16
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the recorded measurements re-judge to the same claims anywhere
    code2, _, _ = _run(capsys, "--from", str(record), "--json", str(tmp_path / "again.json"))
    again = json.loads((tmp_path / "again.json").read_text())
    assert code2 == code and again["claims"] == data["claims"]
    # --arch filters a record
    _run(capsys, "--from", str(record), "--arch", "post_ln", "--json", str(tmp_path / "post.json"))
    post = json.loads((tmp_path / "post.json").read_text())
    assert {t["label"].split()[1] for c in post["claims"] for t in c["tests"]} == {"post_ln"}
    code3, _, err = _run(capsys, "--from", str(record), "--arch", "lns")
    assert code3 == 2 and "--arch" in err


def test_an_underpowered_run_differs_unless_allowed(capsys):
    argv = ("--arch", "lns", "--d", "128", "--L", "6,12,24")
    code, out, _ = _run(capsys, *argv)
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert lines["sun.lns.recursion"].split()[1:3] == ["REFUTED", "REFUTED"]  # refuted, as registered
    assert code == 1 and "UNDER" in out and "INCONCLUSIVE" in out
    assert _run(capsys, *argv, "--allow-underpowered")[0] == 0


@pytest.mark.slow
def test_lns_default_run_exits_0_with_the_linear_recursion_refuted(capsys):
    """The issue's finding: a known, registered refutation must not look like a broken run."""
    code, out, _ = _run(capsys, "--arch", "lns")
    assert code == 0
    assert any(line.startswith("sun.lns.recursion") and "REFUTED       REFUTED" in line for line in out.splitlines())


def test_claims_listing_and_protocol_flags(capsys, tmp_path):
    code, out, _ = _run(capsys, "--claims")
    assert code == 0 and "xiong.thm1.pre.bound" in out and "source:" in out and "expected:" in out
    record = tmp_path / "rec.json"
    code, out, _ = _run(capsys, "--arch", "pre_ln", "--d", "16", "--L", "1,2", "--seeds", "3", "--tokens", "4",
                        "--readout", "shared", "--loss", "xent", "--record", str(record))
    assert "tokens=4 readout=shared loss=xent" in out
    cfg = json.loads(record.read_text())[0]["config"]
    assert (cfg["n_tokens"], cfg["readout"], cfg["loss"]) == (4, "shared", "xent")


@pytest.mark.parametrize("argv, fragment", [
    (["--arch", "qk_norm", "--setup", "xiong"], "softmax"),
    (["--qk-gain", "0"], "--qk-gain"),
    (["--first-seed", "-1"], "--first-seed"),
    (["--readout", "diagonal"], "invalid choice"),
])
def test_more_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    code, _, err = _run(capsys, *argv, "--d", "16", "--L", "1", "--seeds", "2")
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_trained_evidence_must_have_its_schema(capsys, tmp_path):
    bad = tmp_path / "trained.json"
    bad.write_text(json.dumps({"schema": "other", "claims": {}}))
    code, _, err = _run(capsys, "--trained", str(bad), "--claims")
    assert code == 0  # --claims lists without judging
    code, _, err = _run(capsys, "--trained", str(bad), "--d", "16", "--L", "1", "--seeds", "2")
    assert code == 2 and "trained-evidence" in err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    probe = ("import sys; from normtheory.cli import meanfield; "
             "print(any(m in sys.modules for m in ('torch', 'sympy', 'matplotlib')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.fixture
def no_work(monkeypatch):
    """Measuring and judging replaced by a failure: a refusal must come before either."""
    from normtheory.cli import meanfield

    def work(*args, **kwargs):
        raise AssertionError("measured or judged before the outputs were checked")

    monkeypatch.setattr(meanfield, "_measure", work)
    monkeypatch.setattr(meanfield, "_judge", work)


@pytest.mark.parametrize("flag", ["--json", "--record", "--plot"])
def test_a_missing_output_directory_is_refused_before_measuring(capsys, tmp_path, flag, no_work):
    code, _, err = _run(capsys, "--d", "16", "--L", "1", "--seeds", "2", flag, str(tmp_path / "no_dir" / "out.png"))
    assert code == 2 and flag in err and "does not exist" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--json", "--record", "--plot"])
def test_outputs_never_overwrite_the_from_or_trained_files(capsys, tmp_path, flag, no_work):
    record = tmp_path / "rec.json"
    record.write_text((Path(__file__).parent / "data" / "meanfield" / "xiong_d512.json").read_text())
    trained = tmp_path / "trained.json"
    trained.write_text(json.dumps({"schema": "normtheory.trained-evidence/1", "claims": {}}))
    before = record.read_bytes(), trained.read_bytes()
    for target in (record, trained):
        code, _, err = _run(capsys, "--from", str(record), "--trained", str(trained), flag, str(target))
        assert code == 2 and "would overwrite an input file" in err and len(err.strip().splitlines()) == 1, err
    assert (record.read_bytes(), trained.read_bytes()) == before


def test_an_unknown_plot_format_is_refused_before_measuring(capsys, tmp_path, no_work):
    code, _, err = _run(capsys, "--d", "16", "--L", "1", "--seeds", "2", "--plot", str(tmp_path / "mf.xyz"))
    assert code == 2 and "--plot" in err and "png" in err and len(err.strip().splitlines()) == 1, err


def test_two_outputs_naming_one_file_are_refused_before_measuring(capsys, tmp_path, no_work):
    same = str(tmp_path / "out.json")
    code, _, err = _run(capsys, "--d", "16", "--L", "1", "--seeds", "2", "--json", same, "--record", same)
    assert code == 2 and "same file" in err and len(err.strip().splitlines()) == 1, err
