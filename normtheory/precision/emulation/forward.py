"""White-box emulated kernels: run exactly the algorithm a `Model` describes.

These are models of classes of kernels, not bit-for-bit copies of any particular library
kernel: every named model run here (models.MODELS) is a model of a class of kernels, and no
output of this module is claimed bit-identical to a real kernel's. The kernels that are
mirrored bit for bit (torch 2.13 CPU rms_norm and layer_norm, HF Llama RMSNorm) are in
mirrors/cpu.py, with the exact order of their reductions. Operation order (per row; every step rounded in the model's
accumulator format):

    x is loaded into the accumulator (exact; DAZ may flush subnormals)
    statistics      two_pass : s = Σx; μ = s·fl(1/d); c = x − μ; S = Σc²; var = S·fl(1/d)
                    welford  : per-lane Welford, Chan merge (reductions.welford); var = M·fl(1/d)
                    one_pass : s1 = Σx, s2 = Σx²; μ = s1·fl(1/d); var = max(s2·fl(1/d) − μ², 0)
                    rmsnorm  : q = Σx²·fl(1/d)
                    crmsnorm : q = (Σz² + (Σz)²)·fl(1/d)
                    (every statistic: emulation/statistic_rules.EMULATED_STATISTICS)
    scale           inside : r = rsqrt(v + fl(eps));  outside: r = 1/(sqrt(v) + fl(eps))
                    inside, the op's own floor (NormSpec.eps_floor): emulation/statistic_rules.EPS_FLOORS
                    r is the correctly rounded value moved `rsqrt_ulps` ulps (up on even rows,
                    down on odd rows: both signs of a hardware error), then, if `rsqrt_rel`,
                    multiplied by (1 ± rsqrt_rel) and rounded (an approximate rsqrt).
    normalized      n = (x − μ)·r   (LayerNorm recomputes x − μ as in the second pass)
    affine          weight: n·w; weight_bias: n·w + b (one FMA when contracting);
                    offset_weight: n·fl_off(1 + w) with (1 + w) formed in `offset_format`
    output          once: z rounded to the output format; truncate: rounded toward zero;
                    llama: n rounded to the output format first, the affine done there.
"""

from __future__ import annotations

import numpy as np

from normtheory.formats import FloatFormat, as_format
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.statistic_rules import (
    ADD_FLOOR,
    EMULATED_STATISTICS,
    SUPPORTED_OPS,
    EmulatedFloor,
    floor_for,
)
from normtheory.precision.models import Model
from normtheory.registry import NormSpec, get_spec


def emulated_spec(op: str) -> NormSpec:
    """The op's NormSpec, if this module emulates its statistic (ValueError otherwise)."""
    spec = get_spec(op)
    if spec.statistic not in EMULATED_STATISTICS:
        raise ValueError(f"emulated kernels exist for {SUPPORTED_OPS}, not {op!r}")
    return spec


def statistic(op: str, x: np.ndarray, ar: Arith, model: Model, d: int):
    """(mean or None, the statistic under the root: variance or mean square)."""
    return EMULATED_STATISTICS[emulated_spec(op).statistic](x, ar, model, ar.round(1.0 / d))


def backward_floor(spec: NormSpec, model: Model) -> EmulatedFloor | None:
    """The op's eps floor where the model puts eps inside (the backward asks it which rows it pins), else None."""
    return floor_for(spec) if model.eps_mode == "inside" else None


def inverse_scale(stat: np.ndarray, eps: float, ar: Arith, model: Model, *, floor: EmulatedFloor = ADD_FLOOR) -> np.ndarray:
    """r̂ per row: `floor` is the op's inside placement (emulation/statistic_rules.EPS_FLOORS),
    used when the model puts eps inside; outside, 1/(sqrt(v) + fl(eps)) for every op."""
    eps_acc = ar.round(eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        if model.eps_mode == "inside":
            exact_ish = floor.inverse_scale(stat, eps_acc, ar)
        else:
            exact_ish = 1.0 / ar.add(ar.sqrt(stat), eps_acc)
    r = ar.round(exact_ish)
    sign = np.where(np.arange(r.shape[0]) % 2 == 0, 1.0, -1.0)
    if model.rsqrt_ulps:
        r = r + sign * model.rsqrt_ulps * ar.fmt.ulp(r)  # a multiple of the spacing: representable
    if model.rsqrt_rel:
        r = ar.round(r * (1.0 + sign * model.rsqrt_rel))
    return r


def truncate(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round toward zero to `fmt` (saturating at its largest finite value, as truncation does)."""
    magnitude = np.abs(values)
    quantum = fmt.ulp(magnitude)
    with np.errstate(invalid="ignore"):
        truncated = np.minimum(np.floor(magnitude / quantum) * quantum, fmt.max_finite)
    return np.copysign(truncated, values)


def forward(op: str, x, w=None, b=None, *, model: Model, eps: float, affine: str = "none",
            out_format="fp32") -> np.ndarray:
    """The model's output (float64 array of values of `out_format`) for rows x of width n.

    Like hardware, the kernel raises nothing on overflow or 0·inf: it returns inf or NaN.
    """
    with np.errstate(all="ignore"):
        return _forward(op, x, w, b, model=model, eps=eps, affine=affine, out_format=out_format)


def normalize(op: str, x: np.ndarray, ar: Arith, model: Model, eps: float):
    """(d, stat̂, r̂, n̂): the statistic's divisor (the model width, or 1 for a plain sum), the
    computed statistic and the inverse scale per row, and n̂ = fl(fl(x − μ̂)·r̂) for loaded rows x —
    the step the forward and the backward (which recomputes it, as a kernel does) share."""
    spec = emulated_spec(op)
    d = spec.statistic_divisor(x.shape[1])
    mean, stat = statistic(op, x, ar, model, d)
    r = inverse_scale(stat, eps, ar, model, floor=floor_for(spec))
    centred = x if mean is None else ar.sub(x, mean[:, None])
    return d, stat, r, ar.mul(centred, r[:, None])


def _forward(op: str, x, w, b, *, model: Model, eps: float, affine: str, out_format) -> np.ndarray:
    emulated_spec(op)
    ar = Arith(model.acc, ftz=model.ftz, daz=model.ftz)
    out = as_format(out_format)
    x = ar.load(np.atleast_2d(np.asarray(x, dtype=np.float64)))
    _, _, _, normalized = normalize(op, x, ar, model, eps)
    w = None if w is None else np.asarray(w, dtype=np.float64)
    b = None if b is None else np.asarray(b, dtype=np.float64)
    if model.output == "llama":
        return _affine(affine, out.round_to_float64(normalized), w=w, b=b, ar=Arith(out), model=model)
    z = _affine(affine, normalized, w=w, b=b, ar=ar, model=model)
    if model.output == "truncate":
        return truncate(z, out)
    return out.round_to_float64(z)


def _affine(affine: str, normalized: np.ndarray, *, w, b, ar: Arith, model: Model) -> np.ndarray:
    if affine == "none":
        return normalized
    if affine == "weight":
        return ar.mul(normalized, w)
    if affine == "weight_bias":
        return ar.mul_add(normalized, w, b, model.fma)
    if affine == "offset_weight":
        offset_ar = Arith(model.offset_format or model.acc)  # never the llama output format
        return ar.mul(normalized, offset_ar.add(1.0, w))
    raise ValueError(f"unknown affine mode {affine!r}")
