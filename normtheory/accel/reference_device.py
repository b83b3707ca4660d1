"""LayerNorm/RMSNorm references for torch tensors, with the float64 pass on the tensor's device.

For a CUDA tensor, the float64 evaluation and its rigorous per-element bound run on the GPU
(torch float64, op by op, so no fused multiply-add changes a rounding), together with the
rounding test; every element it cannot decide sends its whole row to the CPU tiers
(reference/lnrms.py: the float64 row pass, the double-word midpoint tier, arb). The result is
the same correctly rounded array `normtheory.reference.correctly_rounded` returns (numpy,
the format's dtype): the GPU only decides what the bounds prove.

The bounds are those of reference/fastpath.py (derivations there): sums are explicit pairwise
trees (deterministic on any device, error ≤ levels·u·Σ|terms|), LayerNorm centres around a
pivot, and each element carries decide.forward_element's bound. The rounding test is
rowpass.cell_test's, on the binary64 bit pattern.

Importing this module registers it with normtheory.reference.tensors, so `correctly_rounded`
hands it forward-only LayerNorm/RMSNorm calls on CUDA tensors. `evaluate_on_device` takes a
tensor on any device (CPU included, which is how the tests check it without a GPU).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normtheory.formats import FloatFormat, as_format
from normtheory.reference import correctly_rounded, encode, lnrms, tensors
from normtheory.registry import NormParams, resolve_params

U = 2.0**-53
SAFETY = 1.0 + 2.0**-20
_WIDEN_REL, _WIDEN_ABS = 1.0 + 2.0**-40, 2.0**-51
_SIGNIFICAND = (1 << 52) - 1


def evaluate_on_device(op, x, w=None, b=None, *, format, eps=None, eps_mode="inside", affine=None, p=None,
                       w_format=None, bound_scale: float = 1.0):
    """(result, stats) as `correctly_rounded(..., return_stats=True)`, forward only.
    `bound_scale` multiplies every element's (widened) bound: 1 in use; the tests run smaller,
    wrong, values to show that their comparison can fail."""
    fmt = as_format(format)
    params = resolve_params(op, eps=eps, eps_mode=eps_mode, affine=affine, p=p)
    w_host, b_host = tensors.host_array(w), tensors.host_array(b)
    host_kwargs = dict(format=fmt, eps=eps, eps_mode=eps_mode, affine=affine, p=p, w_format=w_format, return_stats=True)
    if params.op not in ("layernorm", "rmsnorm") or fmt.precision > 24 or not tensors.is_tensor(x) or x.ndim not in (1, 2):
        return correctly_rounded(op, tensors.to_host(x), w_host, b_host, **host_kwargs)
    single_row = x.ndim == 1
    x2 = x.detach().reshape(1, -1) if single_row else x.detach()
    rows, n = x2.shape
    # w, b, eps, affine are checked (with the host's messages) on a one-row probe
    correctly_rounded(op, np.zeros((1, n)), w_host, b_host, **host_kwargs)
    w64 = np.ones(n) * (0.0 if params.affine == "offset_weight" else 1.0) if w_host is None else w_host.astype(np.float64)
    b64 = np.zeros(n) if b_host is None else b_host.astype(np.float64)
    x64 = x2.to(torch.float64)
    invalid = _invalid_count(x64, fmt)
    if invalid:
        return correctly_rounded(op, tensors.to_host(x), w_host, b_host, **host_kwargs)  # raises the host's error
    d = params.spec.model_width(n)
    rounded, open_rows = device_pass(params, fmt, x64, w64, b64, d, bound_scale=bound_scale)
    rounded_host = rounded.cpu().numpy()
    open_ids = torch.nonzero(open_rows).flatten().cpu().numpy()
    stats = {"y": 0, "y_midpoint_tier": 0, "elements": rows * n, "host_rows": int(open_ids.size)}
    if open_ids.size:
        x_open = x64[torch.as_tensor(open_ids, device=x64.device)].cpu().numpy()
        outcome = lnrms.compute(params, fmt, x_open, w64, b64, None, d, all_slow=False, check_x=False)
        rounded_host[open_ids] = outcome.values["y"].astype(np.float32)  # exact: format values
        stats["y"], stats["y_midpoint_tier"] = outcome.escalated["y"], outcome.midpoint_tier
    bad_columns = ~(np.isfinite(w64) & np.isfinite(b64))
    rounded_host[:, bad_columns] = np.nan
    y = encode.to_format(rounded_host, fmt)
    return {"y": y[0] if single_row else y}, stats


def _invalid_count(x64: torch.Tensor, fmt: FloatFormat) -> int:
    """Values not in the format (as FloatFormat.is_representable; rowpass._scan_row's rule)."""
    a = x64.abs()
    bits = x64.view(torch.int64)
    low_bits = (1 << (52 - (fmt.precision - 1))) - 1
    normal_ok = ((bits & low_bits) == 0) & (a <= fmt.max_finite)
    scaled = x64 * (2.0 ** -(fmt.emin - (fmt.precision - 1)))
    small_ok = torch.round(scaled) == scaled
    ok = torch.where(a >= fmt.min_normal, normal_ok, small_ok) | torch.isnan(x64)
    if fmt.has_inf:
        ok |= torch.isinf(x64)
    return int((~ok).sum().item())


def _pairwise(values: torch.Tensor):
    """Row sums by an explicit pairwise tree (fastpath.pairwise_sum): (sums, levels)."""
    level, levels = values, 0
    while level.shape[1] > 1:
        if level.shape[1] % 2:
            level = torch.cat([level, torch.zeros_like(level[:, :1])], dim=1)
        half = level.shape[1] // 2
        level = level[:, :half] + level[:, half:]
        levels += 1
    return level[:, 0], levels


def _abs_sum(values: torch.Tensor) -> torch.Tensor:
    """Σ|values| per row, rounded up enough to bound the exact sum (any order: ≤ n·u low)."""
    return values.abs().sum(dim=1) * (1 + (values.shape[1] + 1) * U)


def _centred(params: NormParams, x64: torch.Tensor, d: int):
    """(ĉ, bound, degenerate rows): fastpath.centre for LayerNorm, ĉ = x exactly otherwise."""
    if not params.spec.centred:
        return x64, torch.zeros_like(x64), (x64 == 0).all(dim=1)
    degenerate = (x64 == x64[:, :1]).all(dim=1)
    pivot = x64.sum(dim=1, keepdim=True) / d
    t = x64 - pivot
    total, levels = _pairwise(t)
    delta = total[:, None] / d
    c = t - delta
    row_term = (levels + 3) * U * _abs_sum(t)[:, None] / d + U * delta.abs()
    c_err = (U * (c.abs() + t.abs()) + row_term) * SAFETY
    c = torch.where(degenerate[:, None], torch.zeros_like(c), c)  # a constant row is its own mean
    c_err = torch.where(degenerate[:, None], torch.zeros_like(c_err), c_err)
    return c, c_err, degenerate


def _normalizer(params: NormParams, c, c_err, degenerate, d: int):
    """(r, relative bound on r) per row, (rows, 1): statistic_rules.row_stats and fastpath.finish_rms_family."""
    n = c.shape[1]
    ss, levels = _pairwise(c * c)
    ss_err = (c_err * (2 * c.abs() + c_err)).sum(dim=1) * (1 + (n + 1) * U) + (levels + 1) * U * ss
    s = ss / d
    s_err = (ss_err / d + U * s) * SAFETY
    eps = params.eps
    if params.eps_mode == "inside":
        tt = s + eps
        N = torch.sqrt(tt)  # IEEE-correctly rounded in float64 on CPU and CUDA
        N_rel = torch.where(tt > 0, ((s_err + U * tt) / tt) / 2 + U, torch.full_like(tt, math.inf))
    else:
        sigma = torch.sqrt(s)
        rel_s = torch.where(s > 0, s_err / s, torch.where(s_err == 0, 0.0, math.inf))
        sigma_rel = rel_s / 2 + U
        N = sigma + eps
        N_rel = torch.where(N > 0, (sigma * sigma_rel + U * N) / N, torch.full_like(N, math.inf))
    r = torch.where(N > 0, 1.0 / N, torch.full_like(N, math.inf))
    return r[:, None], ((N_rel + U) * SAFETY)[:, None]


def device_pass(params: NormParams, fmt: FloatFormat, x64: torch.Tensor, w64: np.ndarray, b64: np.ndarray, d: int,
                bound_scale: float = 1.0):
    """(rounded values as float32 on the device — NaN on NaN rows —, rows with an element left
    open). Elements: decide.forward_element's ŷ and bound; the test: rowpass.cell_test."""
    device = x64.device
    nonfinite = ~torch.isfinite(x64).all(dim=1)
    x64 = torch.where(nonfinite[:, None], torch.zeros_like(x64), x64)
    c, c_err, degenerate = _centred(params, x64, d)
    r, r_rel = _normalizer(params, c, c_err, degenerate, d)
    w = torch.as_tensor(np.where(np.isfinite(w64), w64, 1.0), device=device)
    factor = 1.0 + w if params.affine == "offset_weight" else (torch.ones_like(w) if params.affine == "none" else w)
    factor_err = U * factor.abs() if params.affine == "offset_weight" else torch.zeros_like(factor)
    yn = c * r
    yn_err = (yn.abs() * (r_rel + U) + c_err * r * (1 + r_rel)) * SAFETY
    scaled = yn * factor
    y_err = factor.abs() * yn_err + yn.abs() * factor_err + U * scaled.abs()
    y = scaled
    if params.affine == "weight_bias":
        y = scaled + torch.as_tensor(np.where(np.isfinite(b64), b64, 0.0), device=device)
        y_err = y_err + U * y.abs()
    q, inside = cell_test(y.abs(), y_err * SAFETY, fmt, bound_scale)
    nan_rows = nonfinite | (degenerate & (params.eps == 0))
    rounded = torch.where(nan_rows[:, None], torch.full_like(q, math.nan), torch.copysign(q, y))
    open_rows = ~(inside.all(dim=1) | nan_rows)
    return rounded.to(torch.float32), open_rows


def cell_test(a: torch.Tensor, err: torch.Tensor, fmt: FloatFormat, scale: float = 1.0):
    """rowpass.cell_test on tensors: (q = round(a), [a − err, a + err] provably rounds to q).
    `scale` multiplies the widened bound (1; smaller only in the tests' wrong variants)."""
    dropped = 52 - (fmt.precision - 1)
    half_minus_one = (1 << (dropped - 1)) - 1
    keep = ~((1 << dropped) - 1)
    quantum = math.ldexp(1.0, fmt.emin - (fmt.precision - 1))
    widened = (err * _WIDEN_REL + a * _WIDEN_ABS) * scale
    bits = a.view(torch.int64)
    q_bits = (bits + half_minus_one + ((bits >> dropped) & 1)) & keep
    q = q_bits.view(torch.float64)
    half = ((q_bits & ~_SIGNIFICAND) - (fmt.precision << 52)).view(torch.float64)
    half_below = torch.where((q_bits & _SIGNIFICAND) == 0, half * 0.5, half)
    subnormal = a < fmt.min_normal
    q = torch.where(subnormal, torch.round(a / quantum) * quantum, q)
    half = torch.where(subnormal, torch.full_like(half, quantum / 2), half)
    half_below = torch.where(subnormal, torch.full_like(half, quantum / 2), half_below)
    inside = (q > 0) & (a < fmt.max_finite) & (a - widened > q - half_below) & (a + widened < q + half)
    return q, inside | ((a == 0) & (err == 0))  # an exact zero: itself (its sign is the caller's)


def _accepts(x) -> bool:
    return tensors.device_type(x) == "cuda"


tensors.register_device_backend(_accepts, evaluate_on_device)
