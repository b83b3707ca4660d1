"""The CUDA near-mirrors (normtheory.precision.mirrors.cuda) against torch's CUDA kernels run
here, on inputs drawn now (`gpu`: skipped without a CUDA device). tests/test_precision_mirrors_recorded.py
checks them on recorded d = 64 rows; this widens the claim to other widths and fresh rows: every
row must be bit-identical for some rsqrt within CUDA's documented 2 ulps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normtheory.formats import FORMATS  # noqa: E402
from normtheory.kernels.dtypes import torch_dtype  # noqa: E402
from normtheory.precision.mirrors import cuda as mirrors_cuda  # noqa: E402

EPS = 1e-5


def _rows(d: int, fmt: str, seed: int) -> np.ndarray:
    """Centred, offset (|mean|/std = 100) and outlier rows, rounded to the format."""
    rng = np.random.default_rng([seed, d])
    normal = rng.standard_normal((6, d))
    offset = 100.0 + rng.standard_normal((3, d))
    outlier = rng.standard_normal((3, d))
    outlier[:, 0] = 3000.0
    return FORMATS[fmt].round_to_float64(np.concatenate([normal, offset, outlier]))


@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 1000, 4096])
@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("op", ["layernorm", "rmsnorm"])
def test_torch_cuda_rows_are_reproduced_given_their_rsqrt(op, fmt, d):
    if torch.__version__.split("+")[0] != mirrors_cuda.TORCH_VERSION.split("+")[0]:
        pytest.skip(f"the near-mirror encodes torch {mirrors_cuda.TORCH_VERSION}")
    x = _rows(d, fmt, seed=1)
    rng = np.random.default_rng([2, d])
    w = FORMATS[fmt].round_to_float64(rng.uniform(-4, 4, d))
    b = FORMATS[fmt].round_to_float64(rng.uniform(-4, 4, d)) if op == "layernorm" else None
    dtype = torch_dtype(fmt)
    on_gpu = lambda a: torch.tensor(a, dtype=torch.float64).to(dtype).cuda()  # noqa: E731
    with torch.no_grad():
        if op == "layernorm":
            y = torch.nn.functional.layer_norm(on_gpu(x), (d,), on_gpu(w), on_gpu(b), EPS)
        else:
            y = torch.nn.functional.rms_norm(on_gpu(x), (d,), on_gpu(w), EPS)
    y = y.double().cpu().numpy()
    offsets = mirrors_cuda.rsqrt_offsets(x, w, b, y, op=op, eps=EPS, format=fmt)
    assert np.isfinite(offsets).all(), f"rows not reproduced: {np.flatnonzero(~np.isfinite(offsets))}"
