"""`normtheory record KERNEL [certify's options] --out REC.npz`: run a kernel over every input
family in one call (one weight, bias and upstream gradient for all rows, so gw and gb are
single column sums) and save inputs and outputs as raw bits."""

from __future__ import annotations

import argparse

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    from normtheory.certify.cli import add_kernel_arguments

    add_kernel_arguments(parser)
    parser.add_argument("--rows-per-family", type=int, default=None,
                        help="rows drawn from each family (default: budget / number of families)")
    parser.add_argument("--out", required=True, help="the recording to write (.npz)")


def run(args: argparse.Namespace) -> int:
    from normtheory.certify import inputs as input_gen
    from normtheory.certify.certificate import environment
    from normtheory.certify.cli import config_from_args, protect_outputs
    from normtheory.certify.recording import batch_arrays, meta_for, save
    from normtheory.certify.runner import Batch, CallSpec, KernelFault, run_kernel
    from normtheory.errors import CheckFailed, UsageError

    protect_outputs(args, "out")
    config = config_from_args(args, search=False)
    per_family = args.rows_per_family or max(1, args.budget // len(config.families))
    if per_family < 1:
        raise UsageError("--rows-per-family must be >= 1")
    batches = list(input_gen.family_batches(
        config.families, rows_per_family=per_family, n=config.n, fmt=config.setting.fmt, w_fmt=config.setting.w_fmt,
        affine=config.setting.affine, max_abs=config.max_abs, seed=config.seed, fused=config.kernel.fused,
        backward=config.backward))
    rng = np.random.default_rng([config.seed, 50_000])
    w, b = input_gen.draw_affine(rng, config.n, config.setting.w_fmt, config.setting.affine)
    spans, start = [], 0
    for batch in batches:
        spans.append([batch.label, start, start + batch.x.shape[0]])
        start += batch.x.shape[0]
    stack = lambda name: None if getattr(batches[0], name) is None else np.concatenate([getattr(b_, name) for b_ in batches])  # noqa: E731
    everything = Batch(stack("x"), w, b, stack("gy"), stack("residual"), label="all")
    s = config.setting
    spec = CallSpec(s.fmt, s.w_fmt, s.out_fmt, s.eps, s.p, config.kernel.fused, config.device, config.autocast,
                    s.scaling)
    try:
        outputs = run_kernel(config.kernel.fn, everything, spec, backward=config.backward)
    except KernelFault as fault:
        raise CheckFailed(f"kernel fault while recording: {fault}") from None
    meta = meta_for(config, op=args.op, kernel_name=config.kernel.name,
                    environment=environment(config.kernel, config.device, config.autocast), families=spans)
    meta["seed"] = config.seed
    save(args.out, batch_arrays(everything, outputs), meta)
    print(f"wrote {args.out}: {everything.x.shape[0]} rows x {config.n} ({len(spans)} families), "
          f"arrays {', '.join(k for k, v in batch_arrays(everything, outputs).items() if v is not None)}")
    return 0
