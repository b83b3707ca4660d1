"""`assert_close_to_exact`: judge outputs a kernel suite already has against the exact result.

    from normtheory.testing import assert_close_to_exact
    y = my_rms_norm(x, w, eps=1e-6)
    y.backward(gy)
    assert_close_to_exact({"y": y, "gx": x.grad, "gw": w.grad}, op="rmsnorm", x=x, weight=w, gy=gy, eps=1e-6)

No atol or rtol: the reference is the exact result (correctly rounded to fp32), the tolerance
is the contract's a-priori bound evaluated at these inputs, width and formats
(`normtheory.precision.tolerance`). See docs/kernel_authors.md.
"""

from __future__ import annotations

import os

from normtheory.testing import margins
from normtheory.testing.failures import ENV, replay_hint, save
from normtheory.testing.judge import Verdict, judge
from normtheory.testing.message import failure_message
from normtheory.testing.problem import parse_problem


def assert_close_to_exact(actual, *, op: str, x, weight=None, bias=None, residual=None, gy=None, gh=None, eps: float,
                          affine: str | None = None, eps_mode: str = "inside", p=None, contract: str = "default",
                          scale=None, scaling: str | None = None, semantics: str = "exact",
                          msg: str | None = None) -> Verdict:
    """Raise AssertionError if any output is provably farther from the exact result than the
    contract's bound allows; return the Verdict (largest error/bound per output) otherwise.

    actual: the output y (a tensor or array), or a dict with any of "y", "gx", "gw", "gb",
        "h" (the fused x + residual) and "scale". torch tensors on any device, numpy arrays
        (ml_dtypes for bf16/fp8); formats are read from the dtypes.
    op: layernorm | rmsnorm | crmsnorm | lpnorm, or add_layernorm | add_rmsnorm (fused; any op
        given `residual` is fused too: h = x + residual rounded, y = norm(h)).
    gy: the incoming gradient of y (needed for gx, gw, gb).
    gh: fused kernels whose h output also receives a gradient: gx is then gh + the VJP of gy.
    affine: none | weight | weight_bias | offset_weight; by default read off weight/bias.
    contract: default | model:NAME | ulp:K.
    scale, scaling: an fp8 y with its scale s, y ≈ q / s (Transformer Engine's convention; for a
        dequantization scale d, y ≈ q·d, pass 1/d); `scaling` (tensor, row, block:N, mx[:N])
        also checks that s is a scale that recipe gives.
    semantics: "exact" (the normalizer rounded once), or "llama" (cast to the activation
        dtype before the weight multiply, as HF's LlamaRMSNorm: semantics.py).
    msg: prefixed to the failure message.
    Bad arguments raise normtheory.errors.UsageError.
    """
    __tracebackhide__ = True
    problem = parse_problem(actual, op=op, x=x, weight=weight, bias=bias, residual=residual, gy=gy, gh=gh, eps=eps,
                            affine=affine, eps_mode=eps_mode, p=p, contract=contract, scale=scale, scaling=scaling,
                            semantics=semantics)
    verdict = judge(problem)
    margins.note({name: result.max_ratio for name, result in verdict.results.items() if name != "h"},
                 failed=verdict.failed)
    if verdict.failed:
        saved = _save_for_replay(problem, op, eps, contract, scaling, semantics, msg)
        raise AssertionError(failure_message(verdict, msg=msg, replay=replay_hint(saved)))
    return verdict


def _save_for_replay(problem, op, eps, contract, scaling, semantics, msg) -> str | None:
    directory = os.environ.get(ENV)
    if not directory:
        return None
    params = problem.params
    arrays = {"x": problem.x, "weight": problem.weight, "bias": problem.bias, "gy": problem.gy, "gh": problem.gh,
              "residual": problem.residual}
    arrays.update({f"actual_{name}": values for name, values in problem.actual.items()})
    settings = {"op": op, "eps": eps, "affine": params.affine, "eps_mode": params.eps_mode,
                "p": params.p, "contract": str(contract), "scaling": scaling, "semantics": semantics, "msg": msg}
    return save(directory, arrays, settings)

