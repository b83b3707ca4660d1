"""`normtheory record KERNEL [certify's options] --out REC.npz`: run a kernel over every input
family (one weight and bias for all rows) and save inputs and outputs as raw bits.

With backward, the kernel is called once per family, so gw and gb are stored per family
(shape families × n): a column sum over all rows would take in the families whose rows have no
finite bound (LayerNorm at |mean|/std ≥ 1e4), and then no column could be judged at all.
fp8 outputs (no backward is certified through them) keep one call over all rows, so that a
per-tensor scale covers every row as in certify. Captured activations (--inputs) are one more
family, "captured".
"""

from __future__ import annotations

import argparse

import numpy as np

from normtheory.cli.certify import EXIT_CODES, add_kernel_arguments, check_outputs, config_from_args
from normtheory.errors import CheckFailed, UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (f"{EXIT_CODES.replace('pass, 1 fail', 'written, 1 fail')}\n\nexample (on the GPU host, then "
                     "`normtheory check rec.npz` anywhere):\n"
                     "  normtheory record torch.rms_norm --op rmsnorm --format bf16 --d 1024 --device cuda --out rec.npz")
    add_kernel_arguments(parser, verb="record")
    parser.add_argument("--rows-per-family", type=int, default=None,
                        help="rows drawn from each family (default: budget / number of families)")
    parser.add_argument("--out", required=True, help="the recording to write (.npz)")


def _batches(config, per_family: int) -> list:
    from normtheory.certify import inputs as input_gen  # imports torch

    s = config.setting
    batches = list(input_gen.family_batches(
        config.families, rows_per_family=per_family, n=config.n, fmt=s.fmt, w_fmt=s.w_fmt, affine=s.affine,
        max_abs=config.max_abs, seed=config.seed, fused=s.fused, backward=config.backward))
    if config.captured is not None:
        batches += list(input_gen.captured_batches(config.captured, fmt=s.fmt, w_fmt=s.w_fmt, affine=s.affine,
                                                   seed=config.seed, max_rows=per_family, backward=config.backward,
                                                   fused=s.fused))
    return batches


def run(args: argparse.Namespace) -> int:
    from normtheory.certify import inputs as input_gen  # imports torch
    from normtheory.certify.certificate import environment
    from normtheory.certify.recording import batch_arrays, meta_for, save
    from normtheory.certify.runner import Batch, KernelFault

    check_outputs(args, "out")
    if args.rows_per_family is not None and args.rows_per_family < 1:
        raise UsageError("--rows-per-family must be >= 1")
    config = config_from_args(args, search=False)
    per_family = args.rows_per_family or max(1, args.budget // len(config.families))
    batches = _batches(config, per_family)
    rng = np.random.default_rng([config.seed, 50_000])
    w, b = input_gen.draw_affine(rng, config.n, config.setting.w_fmt, config.setting.affine)
    spans, start = [], 0
    for batch in batches:
        spans.append([batch.label, start, start + batch.x.shape[0]])
        start += batch.x.shape[0]
    everything = Batch(_stack(batches, "x"), w, b, _stack(batches, "gy"), _stack(batches, "residual"), label="all")
    try:
        outputs = _outputs(config, batches, everything, w, b)
    except KernelFault as fault:
        raise CheckFailed(f"kernel fault while recording: {fault}") from None
    meta = meta_for(config, op=config.setting.op_name, kernel_name=config.kernel.name,
                    environment=environment(config.kernel, config.device, config.autocast), families=spans)
    meta["seed"] = config.seed
    arrays = batch_arrays(everything, outputs)
    save(args.out, arrays, meta)
    print(f"wrote {args.out}: {everything.x.shape[0]} rows x {config.n} ({len(spans)} families), "
          f"arrays {', '.join(k for k, v in arrays.items() if v is not None)}")
    return 0


def _stack(batches, name):
    parts = [getattr(batch, name) for batch in batches]
    return None if parts[0] is None else np.concatenate(parts)


def _outputs(config, batches, everything, w, b) -> dict:
    from normtheory.certify.runner import CallSpec, run_kernel  # imports torch
    from normtheory.certify.setting import scaling_name

    s = config.setting
    spec = CallSpec(s.fmt, s.w_fmt, s.out_fmt, s.eps, s.p, s.fused, config.device, config.autocast,
                    None if s.scaling is None else scaling_name(s.scaling))
    if config.backward and s.scaling is None:
        return _per_family_outputs(config.kernel.fn, batches, w, b, spec)
    return run_kernel(config.kernel.fn, everything, spec, backward=config.backward)


def _per_family_outputs(fn, batches, w, b, spec) -> dict:
    """One kernel call per family: row outputs concatenated, gw and gb stacked per family."""
    from normtheory.certify.runner import Batch, run_kernel  # imports torch

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
