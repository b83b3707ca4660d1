"""`normtheory equiv`: convert a Pre-LN model to Pre-RMSNorm and Pre-CRMSNorm and check that
logits, gradients and an AdamW trajectory agree within the derived rounding-error bound.

torch and transformers are imported inside `run` (the `--help` of the CLI stays fast).
"""

from __future__ import annotations

import json
import time

from normtheory.errors import UsageError

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
    parser.add_argument("--samples", type=int, default=32, help="error-model samples per bound (>= 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="write every comparison as JSON")
    parser.add_argument("--skip-recentre", metavar="PARAM", default=None,
                        help="demonstration: leave this residual writer uncentred (a wrong conversion); "
                             "the checks must then FAIL")


def _validate(args) -> None:
    if args.steps < 0:
        raise UsageError("--steps must be >= 0")
    if args.samples < 8:
        raise UsageError("--samples must be >= 8 (the bound's χ² factor grows without limit below that)")
    if args.d < 2 or args.layers < 1 or args.heads < 1:
        raise UsageError("--d must be >= 2, --layers and --heads >= 1")
    if args.d % args.heads:
        raise UsageError(f"--d {args.d} is not divisible by --heads {args.heads}")


def _subject(args):
    from normtheory.theory.equivalence.subjects import gpt2_subject, reference_subject

    if args.model == "reference":
        from normtheory.theory.equivalence.models import DecoderConfig, random_decoder

        cfg = DecoderConfig(d=args.d, n_layers=args.layers, n_heads=args.heads, norm_affine=not args.no_affine)
        return reference_subject(random_decoder(cfg, args.seed))
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UsageError("--model gpt2 needs transformers (pip install 'normtheory[equiv]')") from None
    if args.no_affine:
        raise UsageError("--no-affine applies to --model reference only")
    from normtheory.theory.equivalence.gpt2 import random_gpt2

    return gpt2_subject(random_gpt2(d=args.d, n_layer=args.layers, n_head=args.heads, seed=args.seed))


def _print(report) -> None:
    worst = report.worst
    verdict = "PASS" if report.passed else "FAIL"
    print(f"{report.check:9s} {report.target:8s} {report.dtype}: worst {worst.name}: ‖Δ‖₂ {worst.diff_norm:.3e} "
          f"≤? bound {worst.bound:.3e} (ratio {worst.ratio:.3g}); ‖Δ‖/‖y‖ over all {report.relative_difference:.3e}"
          f"  {verdict}")
    for key in ("direct_adamw_relative_logit_difference", "direct_adamw_difference_over_bound",
                "paper_relative_logit_difference", "function_change_during_training"):
        if key in report.extra:
            print(f"          {key}: {report.extra[key]:.3e}")


def run(args) -> int:
    _validate(args)
    import torch

    from normtheory.theory.equivalence.check import gradient_check, inference_check, make_batch
    from normtheory.theory.equivalence.convert import ConversionRefused
    from normtheory.theory.equivalence.training import training_check

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here")
    if args.device == "cpu":
        torch.set_num_threads(1)  # tiny matmuls: thread hand-offs cost more than they save
    try:
        subject = _subject(args)
    except (ConversionRefused, ValueError) as exc:
        raise UsageError(f"cannot convert: {exc}") from None
    skip = frozenset()
    if args.skip_recentre is not None:
        writers = [w.weight for w in subject.anatomy.writers]
        if args.skip_recentre not in writers:
            raise UsageError(f"--skip-recentre {args.skip_recentre!r} is not a residual writer; one of: {', '.join(writers)}")
        skip = frozenset({args.skip_recentre})
    vocab, length = subject.reference.cfg.vocab, subject.reference.cfg.max_len
    idx, labels = make_batch(vocab, 2, length, args.seed + 1)
    targets = TARGETS if args.target == "both" else (args.target,)
    reports = []
    start = time.perf_counter()
    for target in targets:
        common = dict(samples=args.samples, seed=args.seed, device=args.device, skip_recentre=skip)
        reports.append(inference_check(subject, target, args.dtype, idx, **common))
        reports.append(gradient_check(subject, target, args.dtype, idx, labels, **common))
        if args.steps:
            reports.append(training_check(subject, target, args.dtype, steps=args.steps,
                                          **{**common, "samples": max(8, args.samples // 2)}))
        for report in reports[-(3 if args.steps else 2):]:
            _print(report)
    passed = all(r.passed for r in reports)
    print(f"{'PASS' if passed else 'FAIL'} ({args.model}, {args.dtype}, {time.perf_counter() - start:.1f} s)")
    if args.json:
        payload = {
            "model": args.model, "dtype": args.dtype, "device": args.device, "seed": args.seed,
            "torch": torch.__version__, "passed": passed, "reports": [r.to_json() for r in reports],
        }
        try:
            with open(args.json, "w") as fh:
                json.dump(payload, fh, indent=1, default=float)
        except OSError as exc:
            raise UsageError(f"cannot write --json {args.json}: {exc.strerror}") from None
    return 0 if passed else 1
