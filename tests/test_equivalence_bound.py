"""The statistical constants of the bound and the rounding-error model against real rounding."""

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from normtheory.theory.equivalence.bound import chi2_lower_quantile, gaussian_norm_factor, tail_factor
from normtheory.theory.equivalence.noise import NoiseOps


def test_chi2_quantile_matches_the_closed_form_for_two_degrees_of_freedom():
    # χ²₂ is exponential with mean 2: P(χ²₂ ≤ x) = 1 − exp(−x/2)
    for alpha in (1e-6, 1e-3, 0.5):
        assert chi2_lower_quantile(2, alpha) == pytest.approx(-2 * math.log1p(-alpha), rel=1e-9)


def test_gaussian_factor_has_the_stated_tail():
    t = gaussian_norm_factor(1e-6)
    assert math.erfc(t / math.sqrt(2)) == pytest.approx(1e-6, rel=1e-9)


def test_tail_factor_shrinks_with_more_samples():
    factors = [tail_factor(r) for r in (8, 16, 32, 64, 256)]
    assert factors == sorted(factors, reverse=True)
    assert factors[-1] > gaussian_norm_factor()  # never below the Gaussian factor itself


def test_injected_rounding_error_has_the_size_of_real_bf16_rounding():
    gen = np.random.default_rng(0)
    x = gen.standard_normal(200_000) * np.exp(gen.uniform(-5, 5, 200_000))
    real = x.astype(ml_dtypes.bfloat16).astype(np.float64) - x
    ops = NoiseOps("bf16", torch.Generator().manual_seed(0))
    model = ops.rounding_error(torch.from_numpy(x)).numpy()
    # same bound per element (half an ulp) and the same root-mean-square relative size;
    # 200 000 samples: the rms ratio is known to about 0.3 %
    half_ulp = np.abs(x) * 2.0**-8
    assert np.all(np.abs(model) <= half_ulp) and np.all(np.abs(real) <= half_ulp)
    rms = lambda e: np.sqrt(np.mean((e / np.abs(x)) ** 2))  # noqa: E731
    assert rms(model) == pytest.approx(rms(real), rel=0.03)


def test_accumulation_model_over_estimates_real_fp32_matmuls():
    # the Higham–Mary form assumes no summation order, so it must not be below a real GEMM
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(256, 512, generator=gen, dtype=torch.float64)
    b = torch.randn(512, 64, generator=gen, dtype=torch.float64)
    a32, b32 = a.float().double(), b.float().double()  # the inputs as fp32 holds them
    real = (a32.float() @ b32.float()).double() - a32 @ b32
    ops = NoiseOps("fp32", torch.Generator().manual_seed(2))
    modelled = torch.stack([ops.accumulation_error(a32, b32) + ops.rounding_error(a32 @ b32) for _ in range(4)])
    assert real.pow(2).mean() <= modelled.pow(2).mean()
