"""Recording a kernel (`normtheory record`): run it over every input family (one weight and
bias for all rows) and return inputs and outputs with the recording's meta.

With backward, the kernel is called once per family, so gw and gb are stored per family
(shape families × n): a column sum over all rows would take in the families whose rows have no
finite bound (LayerNorm at |mean|/std ≥ 1e4), and then no column could be judged at all.
fp8 outputs (no backward is certified through them) keep one call over all rows, so that a
per-tensor scale covers every row as in certify. Captured activations (--inputs) are one more
family, "captured".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from normtheory.certify import inputs as input_gen
from normtheory.certify.certificate import environment
from normtheory.certify.engine import Config
from normtheory.certify.recording import batch_arrays, meta_for
from normtheory.certify.runner import Batch, CallSpec, run_kernel
from normtheory.certify.setting import scaling_name


def record(config: Config, rows_per_family: int) -> tuple[dict, dict]:
    """(arrays, meta) of one recording; KernelFault when the kernel misbehaves."""
    s = config.setting
    batches = _batches(config, rows_per_family)
    rng = np.random.default_rng([config.seed, 50_000])
    w, b = input_gen.draw_affine(rng, config.n, s.w_fmt, s.affine)
    spans, start = [], 0
    for batch in batches:
        spans.append([batch.label, start, start + batch.x.shape[0]])
        start += batch.x.shape[0]
    x = np.concatenate([batch.x for batch in batches])
    everything = Batch(x, w, b, _stack(batches, "gy"), _stack(batches, "residual"), label="all")
    spec = CallSpec(s.fmt, s.w_fmt, s.out_fmt, s.eps, s.p, s.fused, config.device, config.autocast,
                    None if s.scaling is None else scaling_name(s.scaling))
    if config.backward and s.scaling is None:
        outputs = _per_family_outputs(config.kernel.fn, batches, w, b, spec)
    else:
        outputs = run_kernel(config.kernel.fn, everything, spec, backward=config.backward)
    meta = meta_for(config, op=s.op_name, kernel_name=config.kernel.name,
                    environment=environment(config.kernel, config.device, config.autocast), families=spans)
    meta["seed"] = config.seed
    return batch_arrays(everything, outputs), meta


def _batches(config: Config, per_family: int) -> list[Batch]:
    s = config.setting
    batches = list(input_gen.family_batches(
        config.families, rows_per_family=per_family, n=config.n, fmt=s.fmt, w_fmt=s.w_fmt, affine=s.affine,
        max_abs=config.max_abs, seed=config.seed, fused=s.fused, backward=config.backward))
    if config.captured is not None:
        batches += list(input_gen.captured_batches(config.captured, fmt=s.fmt, w_fmt=s.w_fmt, affine=s.affine,
                                                   seed=config.seed, max_rows=per_family, backward=config.backward,
                                                   fused=s.fused))
    return batches


def _stack(batches: list[Batch], name: str) -> np.ndarray | None:
    parts = [getattr(batch, name) for batch in batches]
    return None if parts[0] is None else np.concatenate(parts)


def _per_family_outputs(fn: Callable, batches: list[Batch], w: np.ndarray | None, b: np.ndarray | None,
                        spec: CallSpec) -> dict:
    """One kernel call per family: row outputs concatenated, gw and gb stacked per family."""
    calls = [run_kernel(fn, Batch(batch.x, w, b, batch.gy, batch.residual, label=batch.label), spec, backward=True)
             for batch in batches]
    combined: dict[str, np.ndarray | str] = {}
    for name, first in calls[0].items():
        parts = [call[name] for call in calls]
        if not isinstance(first, np.ndarray):  # e.g. autocast's y_format: the same for every call
            combined[name] = first
        elif name in ("gw", "gb"):
            combined[name] = np.stack(parts)
        else:
            combined[name] = np.concatenate(parts)
    return combined
