"""The mirrors against kernel outputs recorded elsewhere (runs on any machine, no torch needed).

tests/data/mirrors/ holds x, w, b and y (raw bits) of `normtheory record` runs, d = 64, 88 rows
of the structured families: cpu_* from torch 2.13.0+cpu on x86-64, cuda_* from torch
2.11.0+cu130 (and Liger with Triton 3.6.0) on an H200. Each file's `meta` names its source.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from normtheory.formats import FORMATS
from normtheory.precision.emulation.arith import Arith
from normtheory.precision.mirrors import cpu as mirrors
from normtheory.precision.mirrors import cuda as mirrors_cuda

DATA = Path(__file__).parent / "data" / "mirrors"
CPU = sorted(DATA.glob("cpu_*.npz"))
CUDA = sorted(DATA.glob("cuda_*.npz"))


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        fmt = FORMATS[meta["format"]]
        arrays = {k: fmt.from_bits(z[k]) for k in ("x", "w", "b", "y") if k in z.files}
    return arrays, meta


def test_the_recordings_are_there():
    assert len(CPU) == 9 and len(CUDA) == 9


@pytest.mark.parametrize("path", CPU, ids=lambda p: p.stem)
def test_cpu_mirrors_reproduce_recorded_torch_cpu_outputs(path):
    a, meta = _load(path)
    assert meta["environment"]["torch"] == mirrors.TORCH_VERSION
    kw = dict(eps=meta["eps"], format=meta["format"])
    if meta["kernel"] == "torch.layer_norm":
        y = mirrors.torch_layer_norm(a["x"], a["w"], a["b"], **kw)
    elif meta["kernel"] == "torch.rms_norm":
        y = mirrors.torch_rms_norm(a["x"], a["w"], **kw)
    else:
        assert meta["kernel"] == "hf.llama_rms_norm"
        y = mirrors.hf_llama_rms_norm(a["x"], a["w"], **kw)
    differ = np.float32(y).view(np.int32) != np.float32(a["y"]).view(np.int32)
    assert not differ.any(), f"{differ.sum()} of {differ.size} outputs differ, first at {np.argwhere(differ)[0]}"


def _offsets(a, meta):
    kernel = "liger" if meta["kernel"].startswith("liger.") else "torch"
    return mirrors_cuda.rsqrt_offsets(a["x"], a["w"], a.get("b"), a["y"], op=meta["op"], eps=meta["eps"],
                                      format=meta["format"], kernel=kernel)


@pytest.mark.parametrize("path", CUDA, ids=lambda p: p.stem)
def test_cuda_near_mirror_reproduces_every_recorded_row_given_its_rsqrt(path):
    """Every row is bit-identical for some rsqrt within CUDA's documented 2 ulps (the only
    operation the near-mirror does not emulate)."""
    a, meta = _load(path)
    assert meta["environment"]["torch"] == mirrors_cuda.TORCH_VERSION
    assert meta["affine"] == mirrors_cuda.AFFINES[meta["op"]]
    assert meta["kernel"] in ("torch.layer_norm", "torch.rms_norm", "liger.layer_norm")
    offsets = _offsets(a, meta)
    assert np.isfinite(offsets).all(), f"rows not reproduced: {np.flatnonzero(~np.isfinite(offsets))}"


def _sequential_stats(x, op):
    """One thread, elements in order: the same update and merge formulas, another order."""
    ar = Arith("fp32")
    mean, m2 = np.zeros(x.shape[0]), np.zeros(x.shape[0])
    for j in range(x.shape[1]):
        v = x[:, j]
        if op == "rmsnorm":
            m2 = ar.fma(v, v, m2)
        else:
            delta = ar.sub(v, mean)
            mean = ar.fma(delta, ar.div(1.0, j + 1.0), mean)
            m2 = ar.fma(delta, ar.sub(v, mean), m2)
    return mean, ar.div(m2, float(x.shape[1]))


@pytest.mark.parametrize("path", [p for p in CUDA if "fp32" in p.stem and "torch" in p.stem], ids=lambda p: p.stem)
def test_the_cuda_check_rejects_another_reduction_order(path, monkeypatch):
    """The per-row rsqrt freedom does not make the check vacuous: a sequential order, with
    the same freedom, fails to reproduce some recorded fp32 rows."""
    a, meta = _load(path)
    monkeypatch.setattr(mirrors_cuda, "torch_cuda_stats", _sequential_stats)
    assert np.isnan(_offsets(a, meta)).any()


def _sequential_sum(values):
    ar = Arith("fp32")
    total = np.zeros(values.shape[0])
    for j in range(values.shape[1]):
        total = ar.add(total, values[:, j])
    return total


def test_the_liger_check_rejects_a_sequential_sum(monkeypatch):
    a, meta = _load(DATA / "cuda_liger_layer_norm_fp32_d64.npz")
    monkeypatch.setattr(mirrors_cuda, "_triton_block_sum", _sequential_sum)
    assert np.isnan(_offsets(a, meta)).any()
