"""The CUDA accumulation recording (tests/data/accumulation_cuda.npz: an H200, torch 2.11, made by
`STEPS=accumulation benchmarks/gpu_session.sh`), re-analysed on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from normtheory.precision.lowprecision.accumulation import analyse, load_recording

RECORDING = Path(__file__).parent / "data" / "accumulation_cuda.npz"


@pytest.mark.skipif(not RECORDING.exists(), reason="no CUDA accumulation recording committed")
def test_recorded_products_are_consistent_with_an_accumulator():
    cases, environment = load_recording(str(RECORDING))
    assert "name" in environment and cases
    for estimate in analyse(str(RECORDING)):
        # an error beyond what a 6-bit accumulator makes means a broken recording, not a measurement
        assert not estimate.at_most, estimate
        assert 6 <= estimate.bits <= 32, estimate


def _rms_error_by_k(label: str) -> dict[int, float]:
    return {e.k: e.rms_rel_err for e in analyse(str(RECORDING)) if e.label == label}


@pytest.mark.skipif(not RECORDING.exists(), reason="no CUDA accumulation recording committed")
def test_fp8_partial_sums_are_promoted_to_fp32_unless_fast_accum():
    """Hopper's fp8 tensor cores keep a short accumulator (about 14 bits: DeepSeek-V3 technical report, §3.3);
    cuBLAS without use_fast_accum adds each K-chunk's partial sum into fp32, so the relative error
    of these all-positive products stays flat in K, while fast accumulation keeps one short
    accumulator for the whole sum and its truncation error grows about linearly with K."""
    promoted = _rms_error_by_k("scaled_mm_e4m3fn")
    fast = _rms_error_by_k("scaled_mm_e4m3fn_fast_accum")
    k_small, k_large = min(promoted), max(promoted)
    assert k_large >= 16 * k_small
    assert promoted[k_large] < 2 * promoted[k_small], promoted
    assert fast[k_large] > 8 * fast[k_small], fast
