"""Pre-LN → Pre-RMSNorm → Pre-CRMSNorm block algebra (Jiang et al. 2023, arXiv 2305.14858, §3).

A pre-norm residual block maps the stream x ∈ R^d to
    x + W·h(A·norm(x) + a) + b
with an input projection A (m × d, bias a), an elementwise activation h, and an output
projection W (d × m, bias b): column vectors throughout, so W's columns live in the stream.

Conversion (the claim proved in proofs/test_claim4_block_algebra.py):
- recentre every writer of the stream: W ← C·W, b ← C·b with C = I − 11ᵀ/d, i.e.
  W ← W − (1/d)11ᵀW (each column loses its mean) and b ← b − mean(b)1;
- then the converted stream is C·(original stream), zero-mean, and LN = RMSNorm on it;
- CRMSNorm keeps only the first d − 1 coordinates z = x[:−1] (x_d = −Σz on a zero-mean
  stream): writers drop their last row, readers use A − a_d1ᵀ with the last column dropped
  (a_d = A's last column).

Two forms, as in normalizers.py: explicit matrices for a concrete width (sympy Matrix of
symbols or numbers), and entries at a generic index for a general width (SumAlgebra). The
keyword switches build the deliberately wrong conversions the proofs must reject.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy as sp

from normtheory.symbolic.normalizers import divide_by_normalizer
from normtheory.symbolic.powersums import SumAlgebra

Activation = Callable[[sp.Expr], sp.Expr]
Normalizer = Callable[[Sequence[sp.Expr]], Sequence[sp.Expr]]


# ---- explicit matrices, concrete width --------------------------------------------------------
def centring_matrix(d: int) -> sp.Matrix:
    """C = I − 11ᵀ/d: the orthogonal projection onto zero-mean vectors."""
    return sp.eye(d) - sp.ones(d, d) / d


def recentre_output_projection(W: sp.Matrix) -> sp.Matrix:
    """W − (1/d)11ᵀW: every column of W made zero-mean."""
    return centring_matrix(W.rows) * W


def recentre_bias(b: sp.Matrix) -> sp.Matrix:
    """b − mean(b)·1."""
    return b - sp.ones(b.rows, 1) * (sum(b) / sp.Integer(b.rows))


def compress_input_projection(A: sp.Matrix, subtract_last_column: bool = True) -> sp.Matrix:
    """(A − a_d1ᵀ) without its last column: the reader of the stored d − 1 coordinates.

    `subtract_last_column=False` only drops the column: the wrong compression, which forgets
    that the dropped coordinate is −Σz and still contributes a_d·x_d.
    """
    last = A[:, A.cols - 1] if subtract_last_column else sp.zeros(A.rows, 1)
    return (A - last * sp.ones(1, A.cols))[:, : A.cols - 1]


def elementwise(activation: Activation, v: sp.Matrix) -> sp.Matrix:
    return v.applyfunc(activation)


def as_column(values) -> sp.Matrix:
    return values if isinstance(values, sp.MatrixBase) else sp.Matrix(list(values))


@dataclass(frozen=True)
class Branch:
    """One residual branch: stream += W·h(A·norm(stream) + a) + b."""

    A: sp.Matrix  # m × n: reads the normalised stream (n = d, or d − 1 after compression)
    a: sp.Matrix  # m × 1
    W: sp.Matrix  # n × m: writes into the stream
    b: sp.Matrix  # n × 1

    def pre_activation(self, stream, norm: Normalizer) -> sp.Matrix:
        return self.A * as_column(norm(list(stream))) + self.a

    def write(self, stream, hidden) -> sp.Matrix:
        """stream + W·hidden + b: the block's output given its hidden activations."""
        return as_column(stream) + self.W * as_column(hidden) + self.b

    def apply(self, stream, norm: Normalizer, activation: Activation) -> sp.Matrix:
        return self.write(stream, elementwise(activation, self.pre_activation(stream, norm)))


def branch_symbols(d: int, m: int, tag: str = "") -> Branch:
    """A branch whose every parameter is its own real symbol (A_kj, a_k, W_jk, b_j)."""
    def matrix(name, rows, cols):
        return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{name}{tag}_{r + 1}{c + 1}", real=True))

    return Branch(matrix("A", m, d), matrix("a", m, 1), matrix("W", d, m), matrix("b", d, 1))


def to_rmsnorm_branch(branch: Branch, recentre_W: bool = True, recentre_b: bool = True) -> Branch:
    """The Pre-RMSNorm branch: writers recentred (each switch off builds a wrong conversion)."""
    W = recentre_output_projection(branch.W) if recentre_W else branch.W
    b = recentre_bias(branch.b) if recentre_b else branch.b
    return Branch(branch.A, branch.a, W, b)


def to_crmsnorm_branch(branch: Branch, subtract_last_column: bool = True, recentre_W: bool = True,
                       recentre_b: bool = True) -> Branch:
    """The Pre-CRMSNorm branch on z = x[:−1]: RMSNorm's writers without their last row, the reader
    compressed."""
    rms = to_rmsnorm_branch(branch, recentre_W, recentre_b)
    d = branch.W.rows
    return Branch(compress_input_projection(branch.A, subtract_last_column), branch.a,
                  rms.W[: d - 1, :], rms.b[: d - 1, :])


# ---- generic index, general width -------------------------------------------------------------
def next_stream_entry(alg: SumAlgebra, hidden: Sequence[sp.Symbol], recentre_W: bool = True,
                      recentre_b: bool = True) -> sp.Expr:
    """Entry i of x + W·h + b for general d, with the writers recentred (or not).

    alg.fields must be ("x", "w1", ..., "wm", "b"): column k of W is the field "wk", the
    hidden activations h_k are constant in i (they depend on the whole stream, not on i).
    """
    entry = alg.i["x"] + (alg.i["b"] - alg.mean(alg.i["b"]) if recentre_b else alg.i["b"])
    for k, h_k in enumerate(hidden, start=1):
        column = alg.i[f"w{k}"]
        entry += (column - alg.mean(column) if recentre_W else column) * h_k
    return entry


def zero_mean_substitution(alg: SumAlgebra, field: str = "x") -> dict:
    """Σ_l field_l = 0: the stream is zero-mean."""
    return {alg.sum_symbol(alg.i[field]): sp.Integer(0)}


def compressed_pre_activation_entry(alg: SumAlgebra, eps, eps_mode="inside", subtract_last_column=True):
    """One hidden unit's pre-activation Σ_{j<d} (a_j − a_d) z_j / N_C(z) − the CRMSNorm reader.

    alg: fields ("x", "a") with width d − 1 (x holds z, a the first d − 1 weights of the unit);
    returns (the compressed pre-activation, the symbol a_d), both over sum symbols.
    """
    a_last = sp.Symbol("a_d", real=True)
    z, a = alg.i["x"], alg.i["a"]
    weight = a - a_last if subtract_last_column else a
    statistic = (alg.total(z**2) + alg.total(z) ** 2) / alg.d
    return divide_by_normalizer(alg.total(weight * z), statistic, eps, eps_mode), a_last


def full_pre_activation_entry(alg: SumAlgebra, a_last, eps, eps_mode="inside"):
    """Σ_{j≤d} a_j x_j / N_RMS(x) with x = (z, −Σz): the Pre-RMSNorm reader on the full stream."""
    z, a = alg.i["x"], alg.i["a"]
    x_last = -alg.total(z)
    mean_square = (alg.total(z**2) + x_last**2) / alg.d
    return divide_by_normalizer(alg.total(a * z) + a_last * x_last, mean_square, eps, eps_mode)
