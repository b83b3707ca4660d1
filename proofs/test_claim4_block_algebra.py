"""Claim 4: a Pre-LN network equals the Pre-RMSNorm (and Pre-CRMSNorm) network whose stream writers
are recentred.

Source: Jiang et al. 2023, "Pre-RMSNorm and Pre-CRMSNorm Transformers" (arXiv 2305.14858), §3:
recentre the writers of the residual stream (W ← W − (1/d)11ᵀW, b ← b − mean(b)); then the
stream is zero-mean, every LN is an RMSNorm, and CRMSNorm may store only x[:−1] with readers
A − a_d1ᵀ (last column dropped). Notation: normtheory/symbolic/blocks.py (column vectors; a block
maps x to x + W·h(A·norm(x) + a) + b).

The argument, for general d, in four steps (each a test below):
(a) zero-mean x: LN(x) = RMSNorm(x) — LN's centring is the identity when Σx = 0 (general d).
(b) Σ_i (x + C W h + C b)_i = Σx + 1ᵀC·(W h + b) = 0 when Σx = 0, because 1ᵀC = 1ᵀ − (1ᵀ1)1ᵀ/d = 0:
    each column of CW and Cb sums to 0 (general d, for any h: h_k is constant in i).
(c) Induction step: if the converted stream is C·(original stream) then, one block later, it still
    is: C·(x + W h(A LN(x) + a) + b) = Cx + CW h(A RMS(Cx) + a) + Cb, since LN(x) = RMS(Cx) (claim 1).
    Proved in two parts — equal pre-activations (so equal h(pre) for every activation h) and the
    linear write — for general d over sum symbols, and again for every d from 2 to 8 with explicit
    matrices; one composition with an undefined h (d = 3) checks that the split loses nothing. The base case is the
    recentred embedding (Cx₀),
    and the final LN(x_L) = RMS(Cx_L) is claim 1 again, so the networks compute the same function.
(d) On a zero-mean stream x = (z, −Σz), Σ_{j≤d} a_j x_j = Σ_{j<d} (a_j − a_d) z_j and RMS's mean
    square is CRMSNorm's statistic, so A·RMS(x) = (A − a_d1ᵀ)[:, :−1]·CRMS(z) (general d).
Each step rejects its wrong variant by the same decision procedure: a forgotten recentring of W or
of b, compression without subtracting a_d, LN = RMSNorm on a stream that is not zero-mean. The
numeric check runs whole 3-block networks (GELU) at 110 digits, with the first normalisation
compared against normtheory.reference.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp

from normtheory.symbolic import blocks
from normtheory.symbolic import normalizers as norms
from normtheory.symbolic.identities import decide, rational_points
from normtheory.symbolic.powersums import SumAlgebra
from normtheory.symbolic.spotcheck import SPOT_DIGITS, agrees, evaluate_at, mp_function, reference

EPS = sp.Symbol("epsilon", nonnegative=True)
MODES = ("inside", "outside")
ZERO_MEAN_WITNESS = [3, -1, -4, 2]  # Σ = 0
WITNESS = [1, 2, 4, -3]  # Σ ≠ 0
HIDDEN = sp.symbols("h_1 h_2", real=True)


def gelu(t):
    return t / 2 * (1 + sp.erf(t / sp.sqrt(2)))


TENTH = sp.Rational(1, 10)


def with_eps(points, eps=TENTH):
    return [{**p, EPS: eps} for p in points]


# ---- (a) LN = RMSNorm on a zero-mean stream ---------------------------------------------------
@pytest.mark.parametrize("eps_mode", MODES)
def test_layernorm_is_rmsnorm_on_zero_mean_stream_for_general_d(eps_mode):
    alg = SumAlgebra()
    layernorm, rmsnorm = norms.layernorm_entry(alg, EPS, eps_mode), norms.rmsnorm_entry(alg, EPS, eps_mode)
    zero_mean = blocks.zero_mean_substitution(alg)
    witness = with_eps([alg.instance({"x": ZERO_MEAN_WITNESS}, i=i) for i in range(3)])
    verdict = decide(layernorm.xreplace(zero_mean), rmsnorm.xreplace(zero_mean), witness)
    assert verdict.proven, verdict
    # wrong variant: the same identity on a stream that is not zero-mean
    refuted = decide(layernorm, rmsnorm, with_eps([alg.instance({"x": WITNESS}, i=i) for i in range(3)]))
    assert refuted.refuted, refuted


# ---- (b) recentred writers keep the stream zero-mean ------------------------------------------
def stream_algebra():
    return SumAlgebra(("x",) + tuple(f"w{k}" for k in range(1, len(HIDDEN) + 1)) + ("b",))


def writer_witness(alg):
    values = {"x": ZERO_MEAN_WITNESS, "w1": [2, 5, -1, 7], "w2": [-3, 1, 1, 4], "b": [1, 1, 2, -6]}
    return [{**alg.instance(values), HIDDEN[0]: sp.Rational(3, 2), HIDDEN[1]: -2}]


def next_stream_sum(alg, **switches):
    """Σ_i (next stream)_i, on a zero-mean stream."""
    entry = blocks.next_stream_entry(alg, HIDDEN, **switches)
    return alg.total(entry).xreplace(blocks.zero_mean_substitution(alg))


def test_recentred_writers_keep_the_stream_zero_mean_for_general_d():
    alg = stream_algebra()
    verdict = decide(next_stream_sum(alg), 0, writer_witness(alg))
    assert verdict.proven, verdict


@pytest.mark.parametrize("forgotten", ["recentre_W", "recentre_b"])
def test_forgotten_recentring_leaves_a_mean_in_the_stream(forgotten):
    alg = stream_algebra()
    verdict = decide(next_stream_sum(alg, **{forgotten: False}), 0, writer_witness(alg))
    assert verdict.refuted, verdict


# ---- (c) induction step: the converted stream stays C·(original stream) ------------------------
# The block is x ↦ write(x, h(pre(x))), so it is proved in two parts, each an identity of explicit
# matrices: the pre-activations agree (then so do h(pre) for every h), and writing the same hidden
# vector H keeps the converted stream equal to C·(original stream). Expanding h(pre) whole costs
# ~30 s at d = 8 for no extra content; one direct composition with an undefined h (d = 3) is kept.
def step_parts(d, m, eps_mode="inside", **switches):
    """[(original, converted)] for the pre-activations and for the written stream."""
    x = sp.Matrix(norms.vector_symbols("x", d))
    hidden = sp.Matrix(sp.symbols(f"H_1:{m + 1}", real=True))
    branch = blocks.branch_symbols(d, m)
    converted = blocks.to_rmsnorm_branch(branch, **switches)
    C = blocks.centring_matrix(d)
    pre = (branch.pre_activation(x, lambda v: norms.layernorm_vector(v, EPS, eps_mode)),
           converted.pre_activation(C * x, lambda v: norms.rmsnorm_vector(v, EPS, eps_mode)))
    written = (C * branch.write(x, hidden), converted.write(C * x, hidden))
    return [pre, written]


def all_symbols(*expressions):
    found = set()
    for e in expressions:
        found |= sp.Matrix(e).free_symbols
    return sorted(found - {EPS}, key=str)


def refuting_points(*expressions, seed=4):
    return with_eps(rational_points(all_symbols(*expressions), count=2, seed=seed))


@pytest.mark.parametrize("eps_mode", MODES)
@pytest.mark.parametrize("d", range(2, 9))
def test_converted_block_keeps_the_stream_centred_for_each_d(d, eps_mode):
    for original, converted in step_parts(d, 2, eps_mode):
        verdict = decide(original, converted, [])
        assert verdict.proven, verdict


def test_converted_block_composed_with_an_undefined_activation():
    """The same step as one expression, h(pre) included, at d = 3: no split needed."""
    d, h = 3, sp.Function("h")
    x = sp.Matrix(norms.vector_symbols("x", d))
    branch = blocks.branch_symbols(d, 2)
    C = blocks.centring_matrix(d)
    original = C * branch.apply(x, lambda v: norms.layernorm_vector(v, EPS), h)
    converted = blocks.to_rmsnorm_branch(branch).apply(C * x, lambda v: norms.rmsnorm_vector(v, EPS), h)
    verdict = decide(original, converted, [])
    assert verdict.proven, verdict


@pytest.mark.parametrize("eps_mode", MODES)
def test_converted_block_keeps_the_stream_centred_for_general_d(eps_mode):
    """The same two parts over sum symbols. Pre-activation of one hidden unit with weights a:
    Σ_j a_j LN(x)_j versus Σ_j a_j RMS(Cx)_j (its bias is the same on both sides). Write: entry i
    of C·(x + Σ_k w_k H_k + b) versus (Cx)_i + Σ_k (C w_k)_i H_k + (C b)_i."""
    reader = SumAlgebra(("x", "a"))
    x = reader.i["x"]
    original = reader.total(reader.i["a"] * norms.layernorm_entry(reader, EPS, eps_mode))
    converted = reader.total(reader.i["a"] * norms.rmsnorm_entry(reader, EPS, eps_mode, of=x - reader.mean(x)))
    point = with_eps([reader.instance({"x": WITNESS, "a": [2, -1, 3, 5]})])
    verdict = decide(original, converted, point)
    assert verdict.proven, verdict
    writer = stream_algebra()
    stream = writer.i["x"] + sum(writer.i[f"w{k}"] * h for k, h in enumerate(HIDDEN, start=1)) + writer.i["b"]
    centred_original = stream - writer.mean(stream)
    centred_input = writer.i["x"] - writer.mean(writer.i["x"])
    written = blocks.next_stream_entry(writer, HIDDEN).xreplace({writer.i["x"]: centred_input})
    verdict = decide(centred_original, written, writer_witness(writer))
    assert verdict.proven, verdict


@pytest.mark.parametrize("forgotten", ["recentre_W", "recentre_b"])
def test_general_d_write_with_a_forgotten_recentring_is_refuted(forgotten):
    writer = stream_algebra()
    stream = writer.i["x"] + sum(writer.i[f"w{k}"] * h for k, h in enumerate(HIDDEN, start=1)) + writer.i["b"]
    centred_input = writer.i["x"] - writer.mean(writer.i["x"])
    written = blocks.next_stream_entry(writer, HIDDEN, **{forgotten: False}).xreplace({writer.i["x"]: centred_input})
    verdict = decide(stream - writer.mean(stream), written, writer_witness(writer))
    assert verdict.refuted, verdict


@pytest.mark.parametrize("forgotten", ["recentre_W", "recentre_b"])
def test_block_with_a_forgotten_recentring_is_refuted(forgotten):
    pre, (original, converted) = step_parts(4, 2, **{forgotten: False})
    assert decide(*pre, []).proven  # the readers are untouched by the mistake ...
    verdict = decide(original, converted, refuting_points(original, converted))
    assert verdict.refuted, verdict  # ... the written stream is not C·(original stream)


# ---- (d) CRMSNorm: the compressed reader --------------------------------------------------------
def crms_algebra():
    return SumAlgebra(("x", "a"), width=SumAlgebra().d - 1)


def reader_witness(alg, a_last):
    values = {"x": [3, -1, 5], "a": [2, -7, 1]}
    return with_eps([{**alg.instance(values), a_last: 4}])


@pytest.mark.parametrize("eps_mode", MODES)
def test_compressed_reader_gives_the_same_pre_activation_for_general_d(eps_mode):
    alg = crms_algebra()
    compressed, a_last = blocks.compressed_pre_activation_entry(alg, EPS, eps_mode)
    full = blocks.full_pre_activation_entry(alg, a_last, EPS, eps_mode)
    verdict = decide(compressed, full, reader_witness(alg, a_last))
    assert verdict.proven, verdict


def test_compression_without_subtracting_the_last_column_is_refuted():
    alg = crms_algebra()
    wrong, a_last = blocks.compressed_pre_activation_entry(alg, EPS, subtract_last_column=False)
    verdict = decide(wrong, blocks.full_pre_activation_entry(alg, a_last, EPS), reader_witness(alg, a_last))
    assert verdict.refuted, verdict


def crms_step_parts(d, m, **switches):
    """[(original, compressed)]: pre-activations (Pre-LN on x, CRMSNorm on (Cx)[:−1]) and the
    written stream ((C·original)[:−1], compressed write)."""
    x = sp.Matrix(norms.vector_symbols("x", d))
    hidden = sp.Matrix(sp.symbols(f"H_1:{m + 1}", real=True))
    branch = blocks.branch_symbols(d, m)
    compressed = blocks.to_crmsnorm_branch(branch, **switches)
    C = blocks.centring_matrix(d)
    stored = (C * x)[: d - 1, :]
    pre = (branch.pre_activation(x, lambda v: norms.layernorm_vector(v, EPS)),
           compressed.pre_activation(stored, lambda z: norms.crmsnorm_vector(z, EPS)))
    written = ((C * branch.write(x, hidden))[: d - 1, :], compressed.write(stored, hidden))
    return [pre, written]


@pytest.mark.parametrize("d", range(2, 9))
def test_crmsnorm_block_stores_the_first_coordinates_of_the_centred_stream(d):
    for original, compressed in crms_step_parts(d, 2):
        verdict = decide(original, compressed, [])
        assert verdict.proven, verdict


def test_crmsnorm_block_with_an_uncompressed_reader_is_refuted():
    pre, _ = crms_step_parts(4, 2, subtract_last_column=False)
    verdict = decide(*pre, refuting_points(*pre, seed=5))
    assert verdict.refuted, verdict


# ---- numeric: whole networks at 110 digits ------------------------------------------------------
D, M, DEPTH, HEAD = 8, 3, 3, 2
NUMERIC_EPS = 1e-5


class Networks:
    """Pre-LN, Pre-RMSNorm and Pre-CRMSNorm networks of DEPTH GELU blocks and a linear head, each
    lambdified to mpmath from the symbolic blocks; the conversions happen inside the expressions,
    so all of them take the same (original) parameter values. `switches` build a wrong conversion."""

    def __init__(self, kinds=("layernorm", "rmsnorm", "crmsnorm"), **switches):
        x = norms.vector_symbols("x", D)
        z = x[: D - 1]
        branch = blocks.branch_symbols(D, M)
        head = blocks.branch_symbols(D, HEAD, tag="head")  # only A (the head) and a are used
        self.parameters = list(branch.A) + list(branch.a) + list(branch.W) + list(branch.b)
        self.head_parameters = list(head.A) + list(head.a)
        recentring = {k: v for k, v in switches.items() if k in ("recentre_W", "recentre_b")}
        subtract = switches.get("subtract_last_column", True)
        builders = {  # kind: (stream symbols, converted branch, normalizer, head projection)
            "layernorm": lambda: (x, branch, lambda v: norms.layernorm_vector(v, EPS), head.A),
            "rmsnorm": lambda: (x, blocks.to_rmsnorm_branch(branch, **recentring),
                                lambda v: norms.rmsnorm_vector(v, EPS), head.A),
            "crmsnorm": lambda: (z, blocks.to_crmsnorm_branch(branch, **switches),
                                 lambda v: norms.crmsnorm_vector(v, EPS),
                                 blocks.compress_input_projection(head.A, subtract)),
        }
        self.block, self.head = {}, {}
        for kind in kinds:
            stream, converted, norm, head_A = builders[kind]()
            self.block[kind] = mp_function(stream + self.parameters + [EPS], list(converted.apply(stream, norm, gelu)))
            self.head[kind] = mp_function(stream + self.head_parameters + [EPS],
                                          list(head_A * sp.Matrix(norm(stream)) + head.a))

    def logits(self, kind, embedding, block_parameters, head_parameters):
        with mpmath.workdps(SPOT_DIGITS):
            stream = [mpmath.mpf(float(v)) for v in embedding]
            if kind != "layernorm":  # the recentred embedding
                mean = mpmath.fsum(stream) / D
                stream = [v - mean for v in stream]
            if kind == "crmsnorm":
                stream = stream[: D - 1]
            for parameters in block_parameters:
                stream = evaluate_at(self.block[kind], *stream, *parameters, NUMERIC_EPS)
            return evaluate_at(self.head[kind], *stream, *head_parameters, NUMERIC_EPS)


def numeric_parameters(networks, seed=0):
    rng = np.random.default_rng(seed)
    embedding = rng.standard_normal(D) + 2.0  # a mean the Pre-LN model does not see
    blocks_ = [rng.standard_normal(len(networks.parameters)) for _ in range(DEPTH)]
    return embedding, blocks_, rng.standard_normal(len(networks.head_parameters))


@pytest.fixture(scope="module")
def correct_networks():
    return Networks()


def test_networks_compute_the_same_logits(correct_networks):
    embedding, block_parameters, head_parameters = numeric_parameters(correct_networks)
    pre_ln = correct_networks.logits("layernorm", embedding, block_parameters, head_parameters)
    for kind in ("rmsnorm", "crmsnorm"):
        assert agrees(correct_networks.logits(kind, embedding, block_parameters, head_parameters), pre_ln), kind


@pytest.mark.parametrize(("kind", "forgotten"), [("rmsnorm", "recentre_W"), ("rmsnorm", "recentre_b"),
                                                 ("crmsnorm", "recentre_W"), ("crmsnorm", "subtract_last_column")])
def test_networks_with_a_wrong_conversion_disagree(kind, forgotten):
    wrong = Networks(("layernorm", kind), **{forgotten: False})
    embedding, block_parameters, head_parameters = numeric_parameters(wrong)
    pre_ln = wrong.logits("layernorm", embedding, block_parameters, head_parameters)
    assert not agrees(wrong.logits(kind, embedding, block_parameters, head_parameters), pre_ln)


def test_first_normalisation_against_reference():
    """A dyadic embedding whose mean and centred copy are exact in binary64: the reference's LN of
    x, RMSNorm of Cx and CRMSNorm of (Cx)[:−1] agree with the symbolic ones and with each other."""
    x = norms.vector_symbols("x", D)
    embedding = np.array([3.0, -1.5, 0.25, 7.0, 2.0, -4.0, 1.0, 0.5])
    centred = embedding - embedding.mean()  # exact: the mean is a multiple of 1/32
    assert centred.sum() == 0.0 and np.all(centred + embedding.mean() == embedding)
    layernorm = mp_function(x + [EPS], norms.layernorm_vector(x, EPS))
    expected = reference("layernorm", embedding, eps=NUMERIC_EPS, affine="none")["y"]
    assert agrees(evaluate_at(layernorm, *embedding, NUMERIC_EPS), expected)
    assert agrees(reference("rmsnorm", centred, eps=NUMERIC_EPS, affine="none")["y"], expected)
    assert agrees(reference("crmsnorm", centred[:-1], eps=NUMERIC_EPS, affine="none")["y"], expected[:-1])
    # the same path rejects RMSNorm of the uncentred embedding
    assert not agrees(reference("rmsnorm", embedding, eps=NUMERIC_EPS, affine="none")["y"], expected)
