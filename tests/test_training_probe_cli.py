"""`normtheory train-probe`: exit codes, usage errors, the JSON round trip and --from."""

from __future__ import annotations

import json
import math

import pytest

from normtheory.cli import main
from normtheory.theory.training.claims import claims_for
from normtheory.theory.training.probes import ProbeSettings, default_lr

TINY_FLAGS = ["--seeds", "2", "--layers", "2", "--d", "16", "--heads", "2", "--steps", "3", "--batch", "4"]


@pytest.mark.parametrize("argv, message", [
    (["train-probe"], "--probe"),
    (["train-probe", "--probe", "warmup", "--seeds", "0"], "--seeds"),
    (["train-probe", "--probe", "warmup", "--layers", "1"], "--layers"),
    (["train-probe", "--probe", "warmup", "--d", "10", "--heads", "3"], "divisible"),
    (["train-probe", "--probe", "warmup", "--lr", "nan"], "--lr"),
    (["train-probe", "--probe", "warmup", "--warmup-fraction", "0"], "--warmup-fraction"),
    (["train-probe", "--probe", "nonsense"], "invalid choice"),
    (["train-probe", "--probe", "warmup", "--json", "/no/such/dir/out.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_from_rejects_bad_files_and_training_flags(tmp_path, capsys):
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    wrong = tmp_path / "y.json"
    wrong.write_text(json.dumps({"probe": "warmup", "arms": {}, "settings": {"probe": "warmup", "bogus": 1}}))
    empty = tmp_path / "z.json"
    empty.write_text(json.dumps({"results": []}))
    for argv in (["--from", str(not_json)], ["--from", str(wrong)], ["--from", str(tmp_path / "missing.json")],
                 ["--from", str(empty)], ["--from", str(wrong), "--steps", "3"]):
        assert main(["train-probe", *argv]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_json_round_trip_and_no_overwrite_of_the_input(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["train-probe", "--probe", "curse_of_depth", *TINY_FLAGS, "--json", str(out)])
    first = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["probe"] == "curse_of_depth" and len(saved["arms"]["lns"]) == 2
    assert [c["id"] for c in saved["claims"]] == [c.id for c in claims_for("curse_of_depth")]
    assert code == (0 if saved["all_as_registered"] else 1)
    assert "differs in seeds = 2" in first  # not the reference settings: said so
    # re-judging the records gives the same verdicts and the same exit code
    assert main(["train-probe", "--from", str(out)]) == code
    rejudged = capsys.readouterr().out
    assert [line for line in rejudged.splitlines() if "  cod." in line] == \
        [line for line in first.splitlines() if "  cod." in line]
    before = out.read_text()
    assert main(["train-probe", "--from", str(out), "--json", str(out)]) == 2
    assert out.read_text() == before


def _records_with_verdicts(tmp_path, expected_holds: bool):
    """A constructed warmup result: Post-LN loses 0.5 nats without warm-up (± 0.01), Pre-LN nothing."""
    arms = {key: [] for key in ("pre_ln/warmup", "pre_ln/no_warmup", "post_ln/warmup", "post_ln/no_warmup")}
    for i in range(5):
        jitter = 0.01 * (i - 2)
        gap = (0.5 if expected_holds else -0.5) + jitter
        for key, loss in (("pre_ln/warmup", 1.0), ("pre_ln/no_warmup", 1.0 + jitter),
                          ("post_ln/warmup", 1.0), ("post_ln/no_warmup", 1.0 + gap)):
            arms[key].append({"final_val_loss": loss, "chance_loss": math.log(16), "seed": i})
    path = tmp_path / f"constructed_{expected_holds}.json"
    settings = ProbeSettings(probe="warmup", seeds=5, lr=default_lr("warmup")).as_dict()
    path.write_text(json.dumps({"probe": "warmup", "settings": settings, "arms": arms}))
    return path


def test_exit_code_follows_the_registered_verdicts(tmp_path, capsys):
    """The exit code is 0 exactly when every verdict is the registered one: a constructed record
    set whose verdicts are the registered ones passes, the same set with the effect reversed fails."""
    registered = {c.id: c.expected for c in claims_for("warmup")}
    holds, reversed_ = _records_with_verdicts(tmp_path, True), _records_with_verdicts(tmp_path, False)
    verdicts = {}
    for path in (holds, reversed_):
        out = tmp_path / f"judged_{path.stem}.json"
        code = main(["train-probe", "--from", str(path), "--json", str(out)])
        judged = json.loads(out.read_text())
        verdicts[path] = {c["id"]: c["verdict"] for c in judged["claims"]}
        assert code == (0 if verdicts[path] == registered else 1)
    # Pre-LN without warm-up within ±0.02 nats of Post-LN with warm-up: comparable (< 0.05) in both
    assert verdicts[holds] == {"xiong.post_ln_needs_warmup": "HOLDS", "xiong.warmup_matters_more_for_post_ln": "HOLDS",
                               "xiong.pre_ln_without_warmup_comparable": "HOLDS"}
    assert verdicts[reversed_] == {"xiong.post_ln_needs_warmup": "REFUTED",
                                   "xiong.warmup_matters_more_for_post_ln": "REFUTED",
                                   "xiong.pre_ln_without_warmup_comparable": "HOLDS"}
    assert "DIFFERS" in capsys.readouterr().out
