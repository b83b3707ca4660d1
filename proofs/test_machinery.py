"""The proof machinery itself: each tool is shown to give the right answer and to be able to fail.

Why this file exists: a spot-check that silently works in 53-bit floats "agrees to 100 digits"
with anything that is equally rounded. These tests pin the precision of both sides and the
behaviour of the prove-or-refute procedure and the general-d sum algebra.
"""

import mpmath
import sympy as sp

from normtheory.symbolic.identities import decide, rational_points
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import AGREEMENT, SPOT_DIGITS, agrees, evaluate_at, mp_function, reference


def test_spot_check_values_carry_more_than_100_digits():
    t = sp.Symbol("t", positive=True)
    root = evaluate_at(mp_function([t], [sp.sqrt(t)]), 2.0)[0]
    with mpmath.workdps(SPOT_DIGITS + 20):
        exact = mpmath.sqrt(2)
        perturbed = exact * (1 + mpmath.mpf(10) ** -60)
    assert agrees([root], [exact])
    assert not agrees([root], [perturbed])  # a difference in the 60th digit is caught
    assert not agrees([root], [mpmath.mpf(float(mpmath.sqrt(2)))])  # and so is a binary64 value


def test_reference_values_carry_more_than_100_digits():
    """RMSNorm of (1, 2) with eps = 1/4: y = x/sqrt(5/2 + 1/4) exactly."""
    y = reference("rmsnorm", [1.0, 2.0], eps=0.25, affine="none")["y"]
    with mpmath.workdps(SPOT_DIGITS + 20):
        exact = [v / mpmath.sqrt(mpmath.mpf(11) / 4) for v in (1, 2)]
        binary64 = [mpmath.mpf(float(v)) for v in exact]
    assert agrees(y, exact)
    assert not agrees(binary64, exact)


def test_agreement_threshold_is_100_digits():
    assert AGREEMENT == mpmath.mpf(10) ** -100
    assert SPOT_DIGITS >= 100


def test_decide_proves_a_true_identity_and_refutes_a_false_one():
    a, b = sp.symbols("a b", positive=True)
    assert decide(sp.sqrt(a * b) * sp.sqrt(a), a * sp.sqrt(b), []).proven
    points = rational_points([a, b])
    wrong = decide(sp.sqrt(a + b), sp.sqrt(a) + sp.sqrt(b), points)
    assert wrong.refuted and not wrong.proven
    assert abs(wrong.difference_at_counterexample) > 1e-3


def test_decide_does_not_call_undecidable_things_false():
    """Without a witness point, an unproven identity is 'undecided', never 'refuted'."""
    a, b = sp.symbols("a b", positive=True)
    verdict = decide(sp.sqrt(a + b), sp.sqrt(a) + sp.sqrt(b), [])
    assert not verdict.proven and not verdict.refuted and verdict.method == "undecided"


def test_sum_algebra_total_and_partial_match_explicit_vectors():
    alg = SumAlgebra(("x", "g"))
    x, g = alg.i["x"], alg.i["g"]
    c = sp.Symbol("c", real=True)
    expr = (x - c) ** 2 * g + 3 * x + sp.Abs(x) ** sp.Rational(5, 2)
    total = alg.total(expr)
    entry = x**3 * alg.total(g * x) / (1 + alg.total(x**2))
    own, through = alg.partial(entry, "x")
    values = {"x": [2, -1, sp.Rational(1, 3), 5], "g": [1, 4, -2, sp.Rational(1, 2)]}
    xs, gs = values["x"], values["g"]
    explicit_total = sum((xv - c) ** 2 * gv + 3 * xv + sp.Abs(xv) ** sp.Rational(5, 2) for xv, gv in zip(xs, gs))
    assert sp.simplify(alg.explicit(total, values, i=0) - explicit_total) == 0
    # derivative of entry 0 with respect to x_2 (off-diagonal) and x_0 (diagonal)
    vector = sp.symbols("v0:4", real=True)
    explicit_entry = vector[0] ** 3 * sum(gv * v for gv, v in zip(gs, vector)) / (1 + sum(v**2 for v in vector))
    at = dict(zip(vector, xs))
    assert sp.simplify(sp.diff(explicit_entry, vector[2]).subs(at) - alg.explicit(through, values, i=0, j=2)) == 0
    diagonal = own + through.xreplace({alg.j["x"]: x, alg.j["g"]: g})
    assert sp.simplify(sp.diff(explicit_entry, vector[0]).subs(at) - alg.explicit(diagonal, values, i=0)) == 0
    # a wrong derivative (forgetting the dependence through the sums) is detected
    assert sp.simplify(sp.diff(explicit_entry, vector[0]).subs(at) - alg.explicit(own, values, i=0)) != 0


def test_total_over_j_sums_the_second_index():
    alg = SumAlgebra()
    expr = alg.i["x"] * alg.j["x"] ** 2
    values = {"x": [1, 2, 3]}
    assert alg.explicit(alg.total_over_j(expr), values, i=1) == 2 * (1 + 4 + 9)


def test_symbolic_package_never_imports_torch():
    """Every module of normtheory/symbolic imports without torch; the same probe does see torch
    behind a module that needs it (theory/equivalence/convert.py), so it is able to fail."""
    import pkgutil
    import subprocess
    import sys

    import normtheory.symbolic as symbolic

    modules = [f"normtheory.symbolic.{m.name}" for m in pkgutil.iter_modules(symbolic.__path__)]
    assert {"normtheory.symbolic.blocks", "normtheory.symbolic.lp", "normtheory.symbolic.moments"} <= set(modules)

    def imports_torch(names):
        code = f"import sys, importlib; [importlib.import_module(m) for m in {names!r}]; print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return out.stdout.strip() == "True"

    assert not imports_torch(modules)
    assert imports_torch(["normtheory.theory.equivalence.convert"])
