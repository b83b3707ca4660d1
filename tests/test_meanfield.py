"""Closed forms and statistics of normtheory.theory.meanfield.predictions (no Monte Carlo of whole
models here; see test_meanfield_montecarlo.py; the judge is tests/test_meanfield_claims.py)."""

import math

import numpy as np
import pytest
import torch

from normtheory.theory.meanfield import predictions as mf

# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    "prob, dof, table",
    [(0.975, 7, 2.3646), (0.995, 1, 63.657), (0.95, 30, 1.6973), (0.975, 100000, 1.95996)],
)
def test_student_t_quantile_matches_printed_tables(prob, dof, table):
    # values from standard printed t tables (4-5 significant digits)
    assert mf.student_t_quantile(prob, dof) == pytest.approx(table, rel=2e-4)


def test_student_t_quantile_rejects_bad_arguments():
    with pytest.raises(ValueError):
        mf.student_t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        mf.student_t_quantile(0.9, 0)


def test_estimate_needs_two_samples():
    with pytest.raises(ValueError):
        mf.estimate([1.0])
    e = mf.estimate([1.0, 2.0, 3.0, 4.0])
    assert (e.mean, e.n) == (2.5, 4)
    assert e.se == pytest.approx(math.sqrt(5 / 3) / 2)


def test_ols_weights_recover_a_known_slope():
    x = np.log([6, 12, 24, 48, 96])
    assert float(np.dot(mf.ols_weights(x), 3.0 - 0.5 * x)) == pytest.approx(-0.5)


# ---------------------------------------------------------------- variance rules vs sampling


def _agrees(samples, predicted, z=5.0):
    """Mean of samples within z standard errors of predicted (z = 5: a false alarm ~ 6e-7)."""
    samples = np.asarray(samples, dtype=np.float64)
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    return abs(samples.mean() - predicted) <= z * se


GEN = np.random.default_rng(20240607)


@pytest.mark.parametrize("var", [0.4, 1.0, 3.0])
def test_gelu_second_moment_integral_matches_sampling_and_a_wrong_one_does_not(var):
    x = torch.from_numpy(GEN.standard_normal(400_000) * math.sqrt(var))
    squares = torch.nn.functional.gelu(x).pow(2).numpy()
    assert _agrees(squares, mf.gelu_second_moment(var))
    # GELU is not homogeneous: the ReLU rule var/2 is a different number, and is rejected
    assert not _agrees(squares, mf.relu_second_moment(var))


def test_relu_rules_match_sampling():
    var = 2.0
    x = GEN.standard_normal(400_000) * math.sqrt(var)
    r = np.maximum(x, 0)
    assert _agrees(r * r, mf.relu_second_moment(var))
    assert _agrees(r, mf.relu_mean(var))
    assert _agrees((r - mf.relu_mean(var)) ** 2, mf.relu_var(var))
    assert not _agrees(r * r, var)  # "ReLU keeps the second moment" is wrong


def test_linear_and_dropout_rules_match_sampling():
    fan_in, weight_var, mu, var = 32, 0.05, 0.7, 1.3
    x = mu + math.sqrt(var) * GEN.standard_normal((20_000, fan_in))
    w = math.sqrt(weight_var) * GEN.standard_normal((fan_in, 20_000))
    y = np.einsum("ij,ji->i", x, w)  # one independent weight column per sample
    assert _agrees(y * y, mf.linear_forward_second_moment(fan_in, weight_var, var + mu * mu))
    p = 0.3
    z = mu + math.sqrt(var) * GEN.standard_normal(400_000)
    kept = (GEN.random(400_000) >= p) * z / (1 - p)
    centred = kept - mu
    assert _agrees(centred * centred, mf.dropout_second_moment(var, mu, p))
    assert not _agrees(centred * centred, var / (1 - p))  # forgetting the p mu^2 term is rejected


def test_layernorm_rules_match_torch():
    d = 16
    x = torch.from_numpy(3.0 + 2.0 * GEN.standard_normal((50_000, d)))
    y = torch.nn.functional.layer_norm(x, (d,), eps=1e-5).numpy()
    assert _agrees(y[:, 0] ** 2, mf.layernorm_output_second_moment(4.0 * (d - 1) / d, 1e-5), z=5)
    assert _agrees(y[:, 0] * y[:, 1], mf.layernorm_cross_covariance(d))
    assert not _agrees(y[:, 0] * y[:, 1], 0.0)  # "independent coordinates" is rejected


def test_scaled_residual_keeps_unit_variance_over_many_layers():
    lam2, beta2, d = 0.995, 0.005, 64
    x = GEN.standard_normal((2000, d))
    for _ in range(192):  # the authors' 192-layer setting; branch = fresh unit-variance noise
        x = math.sqrt(lam2) * x + math.sqrt(beta2) * GEN.standard_normal(x.shape)
    assert mf.scaled_residual_var(1.0, 1.0, math.sqrt(lam2), math.sqrt(beta2)) == pytest.approx(1.0)
    assert _agrees((x * x).ravel()[::d], 1.0)


# ---------------------------------------------------------------- block gains and closed forms


def test_block_gains_in_the_proof_setup_are_xiongs_numbers():
    g = mf.block_gains("xiong", 512)
    assert g.ffn_gain == pytest.approx(0.5)  # Lemma 1 through W2: d/2 out of d
    assert g.attention_gain_max == pytest.approx(1.0)
    # Lemma 2: (1 + l/2) d <= E||x_l||^2 <= (1 + 3 l / 2) d
    for layer in (1, 6, 96):
        assert mf.hidden_band("pre_ln", g, layer) == pytest.approx((1 + layer / 2, 1 + 3 * layer / 2))


def test_block_gains_in_the_standard_setup():
    g = mf.block_gains("standard", 512)
    # FFN d -> 4d -> d, Xavier Var 2/(5d): pre-activation var 2/5, E[ReLU^2] 1/5, out 4d * 2/(5d) / 5
    assert g.preact_var == pytest.approx(0.4)
    assert g.ffn_gain == pytest.approx(0.32)
    gelu = mf.block_gains("standard", 512, "gelu")
    assert gelu.ffn_gain == pytest.approx(1.6 * mf.gelu_second_moment(0.4))


def test_lns_band_grows_like_the_harmonic_number():
    g = mf.block_gains("xiong", 256)
    lower, upper = mf.hidden_band("lns", g, 96)
    harmonic = sum(1 / k for k in range(1, 97))
    assert (lower, upper) == pytest.approx((1 + harmonic / 2, 1 + 3 * harmonic / 2))


def test_post_ln_last_gradient_closed_form():
    d, n = 512, 16
    g = mf.block_gains("xiong", d)
    # ||r||^2 = d/2, ||J||_F^2 = d (d-2) / (3d/2), n tokens of 1/n^2 each: d (d - 2) / (3 n)
    assert mf.last_w2_grad_sq("post_ln", g, 6, n, 1.5) == pytest.approx(d * (d - 2) / (3 * n))
