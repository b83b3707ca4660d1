"""What the emulated kernels do for each registry statistic and eps floor, in one module.

emulation/forward.py and emulation/backward.py run the model's algorithm (its docstring gives the
order of operations); what differs between ops beyond NormSpec's flags is here: the statistic
under the root (EMULATED_STATISTICS: registry.STATISTICS → the model's loops) and how eps enters
when the model puts it inside (EPS_FLOORS: registry.EPS_FLOORS → the kernel's 1/scale, and the
rows where the floor pins the scale, on which the backward drops the projection). A new
statistic or floor is one entry in each table. Lp's power mean is emulated by emulation/lp.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normtheory.precision.emulation.arith import Arith
from normtheory.precision.emulation.reductions import tree_sum, tree_sum_squares, welford
from normtheory.precision.models import Model
from normtheory.registry import REGISTRY, NormSpec


def _variance(x: np.ndarray, ar: Arith, model: Model, inv_d):
    """LayerNorm: (mean, variance) by the model's statistics algorithm."""
    if model.stats == "two_pass":
        mean = ar.mul(tree_sum(x, ar, model), inv_d)
        centred = ar.sub(x, mean[:, None])
        return mean, ar.mul(tree_sum_squares(centred, ar, model), inv_d)
    if model.stats == "welford":
        mean, m2 = welford(x, ar, model)
        return mean, ar.mul(m2, inv_d)
    mean = ar.mul(tree_sum(x, ar, model), inv_d)
    mean_square = ar.mul(tree_sum_squares(x, ar, model), inv_d)
    var = ar.mul_add(-mean, mean, mean_square, model.fma)
    return mean, np.maximum(var, 0.0)


def _mean_square(x: np.ndarray, ar: Arith, model: Model, inv_d):
    """RMSNorm: (None, Σx²·fl(1/d))."""
    return None, ar.mul(tree_sum_squares(x, ar, model), inv_d)


def _crms(x: np.ndarray, ar: Arith, model: Model, inv_d):
    """CRMSNorm: (None, (Σz² + (Σz)²)·fl(1/d)), the square of Σz fused into the add when contracting."""
    s1 = tree_sum(x, ar, model)
    s2 = tree_sum_squares(x, ar, model)
    return None, ar.mul(ar.mul_add(s1, s1, s2, model.fma), inv_d)


# the emulated statistic of each registry statistic (registry.STATISTICS); Lp's power mean is
# emulated by emulation/lp.py
EMULATED_STATISTICS = {"variance": _variance, "mean_square": _mean_square, "crms": _crms,
                       "sum_square": _mean_square}  # the sum: its divisor (NormSpec.statistic_divisor) is 1
SUPPORTED_OPS = tuple(name for name, spec in REGISTRY.items() if spec.statistic in EMULATED_STATISTICS)


@dataclass(frozen=True)
class EmulatedFloor:
    """How eps enters inside the root: (v̂, fl(eps), arith) -> 1/scale before r̂'s rounding, and,
    for a floor that can pin the scale, the rows where it does (v̂, eps, arith) -> bool per row."""

    inverse_scale: Callable[[np.ndarray, np.ndarray | float, Arith], np.ndarray]
    pinned_rows: Callable[[np.ndarray, float, Arith], np.ndarray] | None = None


def _add_inside(stat: np.ndarray, eps_acc: np.ndarray | float, ar: Arith) -> np.ndarray:
    """1/sqrt(fl(v + fl(eps))): eps under the root."""
    return 1.0 / np.sqrt(ar.add(stat, eps_acc))


def _max_floor(stat: np.ndarray, eps_acc: np.ndarray | float, ar: Arith) -> np.ndarray:
    """1/max(fl(sqrt(v)), fl(eps)): eps as a floor on the root (l2normalize, torch's clamp_min)."""
    return 1.0 / np.maximum(ar.sqrt(stat), eps_acc)


def _max_floor_active(stat: np.ndarray, eps: float, ar: Arith) -> np.ndarray:
    """Rows where a max-floor kernel takes the floor: fl(sqrt(v)) < fl(eps), strictly (at the tie
    the norm, torch's clamp_min convention)."""
    return ar.sqrt(stat) < ar.round(eps)


ADD_FLOOR = EmulatedFloor(_add_inside)
EPS_FLOORS = {"add": ADD_FLOOR, "max": EmulatedFloor(_max_floor, pinned_rows=_max_floor_active)}


def floor_for(spec: NormSpec) -> EmulatedFloor:
    """The op's inside placement of eps (registry.NormSpec.eps_floor)."""
    return EPS_FLOORS[spec.eps_floor]
