"""`normtheory record KERNEL [certify's options] --out REC.npz`: run a kernel over every input
family (one weight and bias for all rows) and save inputs and outputs as raw bits.

With backward, the kernel is called once per family, so gw and gb are stored per family
(shape families × n): a column sum over all rows would take in the families whose rows have no
finite bound (LayerNorm at |mean|/std ≥ 1e4), and then no column could be judged at all.
fp8 outputs (no backward is certified through them) keep one call over all rows, so that a
per-tensor scale covers every row as in certify."""

from __future__ import annotations

import argparse

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    from normtheory.cli.certify import add_kernel_arguments

    add_kernel_arguments(parser)
    parser.add_argument("--rows-per-family", type=int, default=None,
                        help="rows drawn from each family (default: budget / number of families)")
    parser.add_argument("--out", required=True, help="the recording to write (.npz)")


def run(args: argparse.Namespace) -> int:
    from normtheory.certify import inputs as input_gen
    from normtheory.certify.certificate import environment
    from normtheory.certify.recording import batch_arrays, meta_for, save
    from normtheory.certify.runner import Batch, CallSpec, KernelFault, run_kernel
    from normtheory.cli.certify import config_from_args, protect_outputs
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
        if config.backward and s.scaling is None:
            outputs = _per_family_outputs(config.kernel.fn, batches, w, b, spec)
        else:
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


def _per_family_outputs(fn, batches, w, b, spec) -> dict:
    """One kernel call per family: row outputs concatenated, gw and gb stacked per family."""
    from normtheory.certify.runner import Batch, run_kernel

    calls = [run_kernel(fn, Batch(batch.x, w, b, batch.gy, batch.residual, label=batch.label), spec, backward=True)
             for batch in batches]
    combined = {}
    for name, first in calls[0].items():
        parts = [call[name] for call in calls]
        if not isinstance(first, np.ndarray):  # e.g. autocast's y_format: the same for every call
            combined[name] = first
        elif name in ("gw", "gb"):
            combined[name] = np.stack(parts)
        else:
            combined[name] = np.concatenate(parts)
    return combined
