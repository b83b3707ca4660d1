"""The comparator's request, parsed once at the edge: which normalizer, which inputs, which
outputs to judge, under which contract.

Fused add + norm (op "add_rmsnorm" / "add_layernorm", or any op given a `residual`): the
normalizer's input is h = x + residual correctly rounded to h's format (the format of the
returned `h`, else the wider of x's and residual's), and y is the normalizer of that h —
the unfused semantics (normtheory.kernels.eager.add_rms_norm: add in the activation dtype,
then normalize what was stored). Gradients are then gradients with respect to h, which x and
residual both receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from normtheory.errors import UsageError
from normtheory.formats import FORMATS, FloatFormat, round_exact_to_float64
from normtheory.precision.contract import Contract, parse_contract
from normtheory.registry import FUSED_OPS, NormParams, get_spec, resolve_params
from normtheory.testing.arrays import Values, as_values, optional_values, rows_of

QUANTITIES = ("y", "gx", "gw", "gb", "h", "scale")
INPUT_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz")
OUTPUT_FORMATS = ("fp32", "fp16", "bf16")  # and fp8 with a scale
SEMANTICS = ("exact", "llama")


@dataclass(frozen=True)
class Problem:
    params: NormParams  # base op, eps, eps_mode, affine, p
    fused: bool
    contract: Contract
    semantics: str
    x: Values  # what the caller passed as x
    residual: Values | None
    h: Values  # what the normalizer sees: x, or x + residual rounded
    weight: Values | None
    bias: Values | None
    gy: Values | None
    gh: Values | None  # fused: the incoming gradient of h, added to x's and residual's gradient
    actual: dict[str, Values]
    scaling: str | None

    @property
    def op(self) -> str:
        return self.params.op

    @property
    def h_rows(self) -> np.ndarray:
        return rows_of(self.h.values)

    @property
    def gy_rows(self) -> np.ndarray | None:
        return None if self.gy is None else rows_of(self.gy.values)

    def gradient_rows(self) -> np.ndarray:
        """gy as rows, for the backward quantities' bounds (only asked for when gy was given)."""
        if self.gy is None:
            raise ValueError("a gradient bound was asked for a problem without gy")
        return rows_of(self.gy.values)

    def bound_contract(self, quantity: str) -> str:
        """The contract text precision.tolerance takes for `quantity`: the default contract's
        models put eps inside the root and round once; a kernel specified otherwise is held to
        the same careful algorithm with eps outside (model:eps_outside), or with the
        cast-before-weight placement for its gradients (model:llama)."""
        if self.contract.kind == "default":
            if self.params.eps_mode == "outside":
                return "model:eps_outside"
            if self.semantics == "llama" and quantity != "y":
                return "model:llama"
        return str(self.contract)


def _actual_outputs(actual) -> dict[str, Values]:
    if isinstance(actual, dict):
        unknown = sorted(set(actual) - set(QUANTITIES))
        if unknown:
            raise UsageError(f"actual has unknown key(s) {', '.join(unknown)}; known: {', '.join(QUANTITIES)}")
        outputs = {key: as_values(value, f"actual[{key!r}]") for key, value in actual.items() if value is not None}
    else:
        outputs = {"y": as_values(actual, "actual")}
    if not outputs:
        raise UsageError("actual holds no output to judge")
    return outputs


def _wider(a: FloatFormat, b: FloatFormat) -> FloatFormat:
    """The format torch promotes x + residual to: the one with more precision (then range)."""
    return max((a, b), key=lambda f: (f.precision, f.emax))


def round_sum(a: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """a + b correctly rounded to fmt. The float64 sum is exact unless the exponents are far
    apart; there TwoSum's error term is nonzero and the few such elements are rounded from the
    exact rational sum (a float64 midpoint of fmt could otherwise round the wrong way)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = a + b
        t = s - a
        e = (a - (s - t)) + (b - t)
        rounded = fmt.round_to_float64(s)
    inexact = np.isfinite(s) & (e != 0)
    if inexact.any():
        exact = [Fraction(float(p)) + Fraction(float(q)) for p, q in zip(a[inexact], b[inexact])]
        rounded[inexact] = fmt.round_to_float64(round_exact_to_float64(exact, fmt))
    return rounded


def _check_shapes(problem_x: Values, weight, bias, gy, actual: dict[str, Values]) -> None:
    shape, n = problem_x.shape, problem_x.shape[-1]
    for name, values in (("weight", weight), ("bias", bias)):
        if values is not None and values.shape != (n,):
            raise UsageError(f"{name} must have shape ({n},) to match x {shape}, got {values.shape}")
    if gy is not None and gy.shape != shape:
        raise UsageError(f"gy must have the shape of x {shape}, got {gy.shape}")
    for name in ("y", "gx", "h"):
        if name in actual and actual[name].shape != shape:
            raise UsageError(f"actual[{name!r}] must have the shape of x {shape}, got {actual[name].shape}")
    for name in ("gw", "gb"):
        if name in actual and actual[name].shape != (n,):
            raise UsageError(f"actual[{name!r}] must have shape ({n},), got {actual[name].shape}")
    if any(q in actual for q in ("gx", "gw", "gb")) and gy is None:
        raise UsageError("gradients (gx, gw, gb) are judged against the VJP of gy: pass gy=")


def _affine(affine, weight, bias) -> str:
    if affine is not None:
        return affine
    if weight is None:
        if bias is not None:
            raise UsageError("a bias without a weight: pass affine= explicitly")
        return "none"
    return "weight" if bias is None else "weight_bias"


def _check_formats(h: Values, actual: dict[str, Values], scaled: bool) -> None:
    if h.fmt.name not in INPUT_FORMATS:
        raise UsageError(f"x in {h.fmt.name}: the comparator judges inputs in {', '.join(INPUT_FORMATS)} "
                         "(its reference is correctly rounded to fp32)")
    for name, values in actual.items():
        if name in ("h", "scale") or (name == "y" and scaled):
            continue
        if values.fmt.name not in OUTPUT_FORMATS:
            hint = " (an fp8 y needs its scale: scale= or actual['scale'])" if values.fmt.name.startswith("fp8") else ""
            raise UsageError(f"actual[{name!r}] in {values.fmt.name}: judged output formats are "
                             f"{', '.join(OUTPUT_FORMATS)}{hint}")


def parse_problem(actual, *, op, x, weight, bias, residual, gy, eps, gh=None, affine, eps_mode, p, contract,
                  scale, scaling, semantics) -> Problem:
    """Validate everything (UsageError for what the caller got wrong) into a Problem."""
    fused = op in FUSED_OPS or residual is not None
    base_op = FUSED_OPS.get(op, op)
    get_spec(base_op)
    if op in FUSED_OPS and residual is None:
        raise UsageError(f"op {op} is a fused add + norm: pass residual=")
    if semantics not in SEMANTICS:
        raise UsageError(f"semantics must be one of {', '.join(SEMANTICS)}, got {semantics!r}")
    outputs = _actual_outputs(actual)
    if scale is not None:
        outputs["scale"] = as_values(scale, "scale")
    x_values = as_values(x, "x")
    weight, bias = optional_values(weight, "weight"), optional_values(bias, "bias")
    gy_values, residual_values = optional_values(gy, "gy"), optional_values(residual, "residual")
    _check_shapes(x_values, weight, bias, gy_values, outputs)
    params = resolve_params(base_op, eps=eps, eps_mode=eps_mode, affine=_affine(affine, weight, bias), p=p)
    if params.affine in ("none", "weight", "offset_weight") and bias is not None:
        raise UsageError(f"a bias was given but affine is {params.affine!r}")
    h = x_values
    if fused:
        if residual_values is None or residual_values.shape != x_values.shape:
            raise UsageError(f"residual must have the shape of x {x_values.shape}")
        h_fmt = outputs["h"].fmt if "h" in outputs else _wider(x_values.fmt, residual_values.fmt)
        h = Values(round_sum(x_values.values, residual_values.values, h_fmt), h_fmt)
    elif "h" in outputs:
        raise UsageError("actual['h'] is the fused residual output: pass residual=")
    _check_formats(h, outputs, scaled="scale" in outputs)
    gh_values = optional_values(gh, "gh")
    if gh_values is not None and (not fused or gh_values.shape != x_values.shape or "gx" not in outputs):
        raise UsageError("gh (the gradient of the fused output h) goes with residual=, the shape of x, and actual['gx']")
    if scaling is not None:
        from normtheory.precision.lowprecision.scaling import parse_scaling

        scaling = str(parse_scaling(scaling))
        if "scale" not in outputs:
            raise UsageError(f"scaling={scaling!r} judges an fp8 output's scale: pass scale= or actual['scale']")
    if semantics == "llama" and "scale" in outputs:
        raise UsageError("semantics 'llama' is for a y in the activation dtype; an fp8 y with a scale is judged "
                         "by the fp8 output bound of the exact normalizer")
    if semantics == "llama" and params.affine not in ("weight", "none"):
        raise UsageError("semantics 'llama' (cast, then multiply by the weight) takes affine 'weight' or 'none'")
    return Problem(params, fused, parse_contract(contract), semantics, x_values, residual_values, h, weight, bias,
                   gy_values, gh_values, outputs, scaling)


__all__ = ["Problem", "parse_problem", "round_sum", "FUSED_OPS", "FORMATS"]
