"""`normtheory equiv`: convert a Pre-LN model to Pre-RMSNorm and Pre-CRMSNorm and check that
logits, gradients and an AdamW trajectory agree within the derived rounding-error bound, and
that the converted residual writers are the recentred originals within one rounding. Every
check reports HOLDS or REFUTED and its minimum detectable effect; exit 0 when the verdict is
the expected one (HOLDS; REFUTED for --skip-recentre), 1 otherwise, 2 on bad input.

torch and transformers are imported inside `run` (the `--help` of the CLI stays fast).
"""

from __future__ import annotations

import json
import time

from normtheory.errors import UsageError
from normtheory.output_files import check_writable, write_text_file

MODELS = ("reference", "gpt2")
DTYPES = ("fp64", "fp32", "bf16")
TARGETS = ("rmsnorm", "crmsnorm")


def configure(parser) -> None:
    parser.add_argument("--model", choices=MODELS, default="reference",
                        help="normtheory's reference Pre-LN decoder, or a random-weight HF GPT2LMHeadModel")
    parser.add_argument("--dtype", choices=DTYPES, default="fp64", help="working precision of both models")
    parser.add_argument("--target", choices=TARGETS + ("both",), default="both")
    parser.add_argument("--steps", type=int, default=5, help="AdamW steps of the training check (0: skip it)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the two models run (the error model always runs in fp64 on the CPU)")
    parser.add_argument("--d", type=int, default=32, help="model width")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--no-affine", action="store_true", help="LayerNorms without γ, β")
    parser.add_argument("--qk-norm", action="store_true",
                        help="reference model with QK-Norm (RMSNorm of q and k per head): the stream's LNs still convert")
    parser.add_argument("--samples", type=int, default=32, help="error-model samples per bound (>= 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="write every comparison as JSON")
    parser.add_argument("--skip-recentre", metavar="PARAM", default=None,
                        help="demonstration: leave this residual writer uncentred (a wrong conversion); its "
                             "expected verdict is REFUTED")
    parser.add_argument("--writer-scan", action="store_true",
                        help="leave each residual writer uncentred in turn and report which check detects it, "
                             "or that its effect is below the logits check's MDE")


def _validate(args) -> None:
    if args.steps < 0:
        raise UsageError("--steps must be >= 0")
    if args.samples < 8:
        raise UsageError("--samples must be >= 8 (the bound's χ² factor grows without limit below that)")
    if args.d < 2 or args.layers < 1 or args.heads < 1:
        raise UsageError("--d must be >= 2, --layers and --heads >= 1")
    if args.d % args.heads:
        raise UsageError(f"--d {args.d} is not divisible by --heads {args.heads}")
    check_writable(args.json, flag="--json")  # before the models are built and trained


def _subject(args):
    from normtheory.theory.equivalence.subjects import gpt2_subject, reference_subject

    if args.model == "reference":
        from normtheory.theory.equivalence.models import DecoderConfig, random_decoder

        cfg = DecoderConfig(d=args.d, n_layers=args.layers, n_heads=args.heads, norm_affine=not args.no_affine,
                            qk_norm=args.qk_norm)
        return reference_subject(random_decoder(cfg, args.seed))
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UsageError("--model gpt2 needs transformers (pip install 'normtheory[equiv]')") from None
    if args.no_affine or args.qk_norm:
        raise UsageError("--no-affine and --qk-norm apply to --model reference only")
    from normtheory.theory.equivalence.gpt2 import random_gpt2

    return gpt2_subject(random_gpt2(d=args.d, n_layer=args.layers, n_head=args.heads, seed=args.seed))


def _print(report) -> None:
    worst = report.worst
    print(f"{report.check:9s} {report.target:8s} {report.dtype}: worst {worst.name}: ‖Δ‖₂ {worst.diff_norm:.3e} "
          f"≤? bound {worst.bound:.3e} (ratio {worst.ratio:.3g}); ‖Δ‖/‖y‖ over all {report.relative_difference:.3e}; "
          f"MDE ‖δ‖/‖y‖ {report.mde_relative:.2e}  {report.verdict}")
    for key in ("direct_adamw_relative_logit_difference", "direct_adamw_difference_over_bound",
                "paper_relative_logit_difference", "function_change_during_training"):
        if key in report.extra:
            print(f"          {key}: {report.extra[key]:.3e}")


def _skipped(args, subject) -> frozenset:
    if args.skip_recentre is None:
        return frozenset()
    writers = [w.weight for w in subject.anatomy.writers]
    if args.skip_recentre not in writers:
        raise UsageError(f"--skip-recentre {args.skip_recentre!r} is not a residual writer; one of: {', '.join(writers)}")
    if args.writer_scan:
        raise UsageError("--writer-scan leaves every writer uncentred in turn: drop --skip-recentre")
    return frozenset({args.skip_recentre})


def _checks(args, subject, skip, idx, labels) -> list:
    from normtheory.theory.equivalence.check import gradient_check, inference_check
    from normtheory.theory.equivalence.training import training_check
    from normtheory.theory.equivalence.writers import centring_check

    targets = TARGETS if args.target == "both" else (args.target,)
    reports = []
    for target in targets:
        common = dict(samples=args.samples, seed=args.seed, device=args.device, skip_recentre=skip)
        mine = [inference_check(subject, target, args.dtype, idx, **common),
                gradient_check(subject, target, args.dtype, idx, labels, **common),
                centring_check(subject, target, args.dtype, skip_recentre=skip)]
        if args.steps:
            mine.append(training_check(subject, target, args.dtype, steps=args.steps,
                                       **{**common, "samples": max(8, args.samples // 2)}))
        for report in mine:
            _print(report)
        reports += mine
    return reports


def _scan(args, subject, idx, labels) -> tuple[int, list]:
    from normtheory.theory.equivalence.writers import writer_scan

    rows = []
    targets = TARGETS if args.target == "both" else (args.target,)
    print(f"{'target':8} {'writer left uncentred':34} {'effect':>9} {'logits MDE':>10}  logits     gradients  centring")
    for target in targets:
        for r in writer_scan(subject, target, args.dtype, idx, labels, samples=args.samples, seed=args.seed,
                             device=args.device):
            def word(hit):
                return "detected" if hit else "-"
            print(f"{target:8} {r.writer:34} {100 * r.effect_relative:8.2f}% {100 * r.logits_mde_relative:9.2f}%  "
                  f"{word(r.logits_detected):10} {word(r.gradients_detected):10} {word(r.centring_detected):8}"
                  + ("" if r.accounted_for else "  NOT ACCOUNTED FOR"))
            rows.append({"target": target, **r.to_json()})
    verdict = "HOLDS" if all(r["accounted_for"] for r in rows) else "REFUTED"
    print(f"claim 'every single uncentred writer is detected or below the stated MDE' ({args.dtype}): {verdict} "
          "(expected HOLDS)")
    return (0 if verdict == "HOLDS" else 1), rows


def run(args) -> int:
    _validate(args)
    import torch

    from normtheory.theory.equivalence.check import make_batch
    from normtheory.theory.equivalence.convert import ConversionRefused

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here")
    if args.device == "cpu":
        torch.set_num_threads(1)  # tiny matmuls: thread hand-offs cost more than they save
    try:
        subject = _subject(args)
    except (ConversionRefused, ValueError) as exc:
        raise UsageError(f"cannot convert: {exc}") from None
    skip = _skipped(args, subject)
    vocab, length = subject.reference.cfg.vocab, subject.reference.cfg.max_len
    idx, labels = make_batch(vocab, 2, length, args.seed + 1)
    start = time.perf_counter()
    meta = {"model": args.model, "dtype": args.dtype, "device": args.device, "seed": args.seed,
            "torch": torch.__version__}
    if args.writer_scan:
        code, rows = _scan(args, subject, idx, labels)
        _write_json(args.json, {**meta, "writer_scan": rows, "exit": code})
        return code
    reports = _checks(args, subject, skip, idx, labels)
    verdict = "HOLDS" if all(r.passed for r in reports) else "REFUTED"
    expected = "REFUTED" if skip else "HOLDS"
    code = 0 if verdict == expected else 1
    print(f"{verdict} (expected {expected}{': a deliberately wrong conversion' if skip else ''}; {args.model}, "
          f"{args.dtype}, {time.perf_counter() - start:.1f} s) -> exit {code}")
    _write_json(args.json, {**meta, "passed": verdict == "HOLDS", "verdict": verdict, "expected": expected,
                            "reports": [r.to_json() for r in reports]})
    return code


def _write_json(path, payload) -> None:
    if path:
        # default=float: numpy and torch scalars as JSON numbers (output_files' default=str would quote them)
        write_text_file(path, json.dumps(payload, indent=1, default=float))
