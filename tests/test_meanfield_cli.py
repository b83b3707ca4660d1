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
    assert code == (0 if data["verdict"] == "pass" else 1)
    assert data["schema"] == "normtheory.meanfield/1"
    kinds = {c["kind"] for c in data["comparisons"]}
    assert kinds == {"exact", "band", "scaling"}
    assert all(c["verdict"] in ("PASS", "FAIL") and c["source"] for c in data["comparisons"])
    assert "fitted exponents" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the recorded measurements re-judge to the same comparisons anywhere
    code2, out2, _ = _run(capsys, "--from", str(record), "--json", str(tmp_path / "again.json"))
    again = json.loads((tmp_path / "again.json").read_text())
    assert code2 == code and again["comparisons"] == data["comparisons"]
    # --arch filters a record
    _run(capsys, "--from", str(record), "--arch", "post_ln", "--json", str(tmp_path / "post.json"))
    post = json.loads((tmp_path / "post.json").read_text())
    assert {c["arch"] for c in post["comparisons"]} == {"post_ln"}
    code3, _, err = _run(capsys, "--from", str(record), "--arch", "lns")
    assert code3 == 2 and "--arch" in err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    probe = ("import sys; from normtheory.cli import meanfield; "
             "print(any(m in sys.modules for m in ('torch', 'sympy', 'matplotlib')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
