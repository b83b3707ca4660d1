"""`normtheory train-probe`: short training runs of tiny decoders that measure trained-model claims
about LayerNorm placement (Curse of Depth / LNS, Mix-LN and Peri-LN gradient profiles, Pre-LN vs
Post-LN with and without warm-up), with seeds, t intervals and a verdict per claim.

Exit 0 when every verdict is the one registered in normtheory/theory/training/claims.py, 1 when
one differs, 2 on bad input. torch is imported inside `run` (the `--help` of the CLI stays fast).
"""

from __future__ import annotations

import json
import math
import sys

from normtheory.errors import UsageError
from normtheory.output_files import check_writable, write_json_file

PROBE_NAMES = ("curse_of_depth", "gradient_profile", "warmup")


def configure(parser) -> None:
    parser.add_argument("--probe", choices=PROBE_NAMES, help="which claims to measure (required unless --from)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default 4; verdicts need >= 2)")
    parser.add_argument("--layers", type=int, help="Transformer blocks (default 6)")
    parser.add_argument("--d", type=int, help="model width (default 64)")
    parser.add_argument("--heads", type=int, help="attention heads (default 4)")
    parser.add_argument("--steps", type=int, help="AdamW steps per run (default 400)")
    parser.add_argument("--batch", type=int, help="sequences per step (default 16)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 1e-2 for warmup, 3e-3 otherwise)")
    parser.add_argument("--warmup-fraction", type=float,
                        help="warm-up length in the arms with warm-up, as a share of --steps (default 0.2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads, fixed for determinism (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where the models train (default cpu)")
    parser.add_argument("--json", metavar="OUT", help="write settings, per-seed records and verdicts as JSON")
    parser.add_argument("--from", dest="from_json", metavar="RESULT.json",
                        help="re-judge the per-seed records of an earlier --json instead of training")


TRAINING_FLAGS = ("seeds", "layers", "d", "heads", "steps", "batch", "lr", "warmup_fraction", "threads", "device")


def _validate(args) -> None:
    if args.from_json:
        given = [f"--{name.replace('_', '-')}" for name in TRAINING_FLAGS + ("probe",) if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--from re-judges recorded runs; it takes none of {', '.join(given)}")
        return
    if args.probe is None:
        raise UsageError("give --probe curse_of_depth|gradient_profile|warmup (or --from RESULT.json)")
    positive = {"seeds": 1, "layers": 2, "d": 2, "heads": 1, "steps": 1, "batch": 1, "threads": 1}
    for name, least in positive.items():
        value = getattr(args, name)
        if value is not None and value < least:
            raise UsageError(f"--{name} must be >= {least}, got {value}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.warmup_fraction is not None and not 0 < args.warmup_fraction <= 1:
        raise UsageError(f"--warmup-fraction must be in (0, 1], got {args.warmup_fraction}")
    d = args.d if args.d is not None else 64
    heads = args.heads if args.heads is not None else 4
    if d % heads:
        raise UsageError(f"--d {d} is not divisible by --heads {heads}")


def _settings(args):
    from normtheory.theory.training.probes import ProbeSettings, default_lr, with_overrides

    reference = ProbeSettings(probe=args.probe, lr=default_lr(args.probe))
    overrides = {name: getattr(args, name) for name in TRAINING_FLAGS}
    return reference, with_overrides(reference, **overrides)


def _load(path: str) -> list[dict]:
    """The results in a --json file of this command (one probe) or of benchmarks/training_probe.py
    ({"results": [one per probe]})."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--from {path}: cannot read it as JSON ({exc})") from None
    results = data.get("results") if isinstance(data, dict) and "results" in data else [data]
    if not isinstance(results, list) or not results:
        raise UsageError(f"--from {path}: 'results' must be a non-empty list of train-probe results")
    for result in results:
        if not isinstance(result, dict) or result.get("probe") not in PROBE_NAMES or not isinstance(
                result.get("arms"), dict) or not isinstance(result.get("settings"), dict):
            raise UsageError(f"--from {path}: not a train-probe result (needs 'probe', 'settings' and 'arms')")
        _check_settings(result["settings"], path)
    return results


def _check_settings(settings: dict, path: str) -> None:
    from normtheory.theory.training.probes import ProbeSettings

    try:
        ProbeSettings.from_dict(settings)
    except (TypeError, KeyError, ValueError) as exc:
        raise UsageError(f"--from {path}: settings are not those of a train-probe run ({exc})") from None


def _train(settings) -> dict:
    from tqdm import tqdm

    from normtheory.theory.training.probes import run_probe, total_steps

    with tqdm(total=total_steps(settings), desc=f"train-probe {settings.probe}", unit="step", file=sys.stderr,
              disable=None, leave=False) as bar:
        return run_probe(settings, progress=bar.update)


def _interval_text(interval: dict) -> str:
    if interval["n"] < 2:
        return f"{interval['mean']:+.4g} (n = {interval['n']}: no interval)"
    return (f"{interval['mean']:+.4g} [{interval['low']:+.4g}, {interval['high']:+.4g}] "
            f"sd {interval['sd']:.3g}, n {interval['n']}, MDE {interval['mde']:.3g}")


def _print_report(result: dict, judged: dict, differences: list[str]) -> None:
    settings = result["settings"]
    print(f"train-probe {result['probe']}: L={settings['layers']} d={settings['d']} steps={settings['steps']} "
          f"batch={settings['batch']} lr={settings['lr']:g} seeds={settings['seeds']} (scale: docs/trained_claims.md)")
    alpha = judged["claims"][0]["interval"]["alpha"] if judged["claims"] else 0.0
    print(f"claims (two-sided t intervals at level {1 - alpha:.4f}: Bonferroni over the probe's claims, family 95 %)")
    for claim in judged["claims"]:
        mark = "ok" if claim["as_registered"] else f"DIFFERS (registered: {claim['expected']})"
        print(f"  {claim['id']:40s} {claim['verdict']:12s} {mark}")
        print(f"      {claim['effect']}: {_interval_text(claim['interval'])}")
    print("descriptive (95 % t intervals, not judged)")
    for item in judged["descriptive"]:
        print(f"  {item['id']:40s} {_interval_text(item['interval'])}")
    _print_profiles(result)
    for line in differences:
        print(f"note: {line}")


# per probe: the per-block measurements worth seeing as a profile (mean over seeds)
PROFILES = {"curse_of_depth": ("removal_delta", "angular_distance", "stream_rms"),
            "gradient_profile": ("block_grad_norm",), "warmup": ()}


def _print_profiles(result: dict) -> None:
    keys = PROFILES[result["probe"]]
    if keys:
        print("profiles over depth (mean over seeds; stream_rms: x_0 … x_L, the rest per block 1 … L)")
    for key in keys:
        for arm, records in result["arms"].items():
            rows = [r[key] for r in records if key in r]
            if rows:
                means = [sum(column) / len(rows) for column in zip(*rows)]
                print(f"  {key:17s} {arm:8s} " + " ".join(f"{m:.3g}" for m in means))


def _differences(result: dict) -> list[str]:
    """Where the run's settings differ from the reference settings the verdicts were registered at."""
    from normtheory.theory.training.probes import ProbeSettings, default_lr

    reference = ProbeSettings(probe=result["probe"], lr=default_lr(result["probe"])).as_dict()
    changed = [f"{key} = {result['settings'].get(key)!r} (reference {value!r})" for key, value in reference.items()
               if key not in ("threads", "device") and result["settings"].get(key) != value]
    notes = []
    if changed:
        notes.append("verdicts were registered at the reference settings; this run differs in " + "; ".join(changed)
                     + ", so a different verdict need not mean a regression")
    if result["probe"] == "gradient_profile" and math.floor(0.25 * result["settings"]["layers"]) == 0:
        notes.append("with fewer than 4 layers Mix-LN has no Post-LN block and is Pre-LN")
    return notes


def _judge(result: dict) -> dict:
    from normtheory.theory.training.judge import judge_result

    try:
        return judge_result(result)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"the {result['probe']} records cannot be judged: {exc!r}") from None


def run(args) -> int:
    _validate(args)

    check_writable(args.json, flag="--json", inputs=(args.from_json,))
    results = _load(args.from_json) if args.from_json else [_train(_settings(args)[1])]
    reports = []
    for result in results:
        judged = _judge(result)
        _print_report(result, judged, _differences(result))
        reports.append({"probe": result["probe"], "settings": result["settings"], "arms": result["arms"]} | judged)
    if args.json:
        write_json_file(args.json, reports[0] if len(reports) == 1 else {"results": reports})
    verdict_ok = all(report["all_as_registered"] for report in reports)
    print("all verdicts as registered" if verdict_ok else "FAIL: a verdict differs from the registered one")
    return 0 if verdict_ok else 1
