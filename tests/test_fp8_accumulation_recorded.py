"""The H100 accumulation recording, re-analysed on CPU. Skips until the recording exists: it is
made by benchmarks/fp8_device_check.sh on a GPU host and committed as
tests/data/accumulation_h100.npz (no GPU was available when this test was written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from normtheory.precision.accumulation import analyse, load_recording

RECORDING = Path(__file__).parent / "data" / "accumulation_h100.npz"


@pytest.mark.skipif(not RECORDING.exists(), reason="no H100 accumulation recording committed yet")
def test_recorded_products_are_consistent_with_an_accumulator():
    cases, environment = load_recording(str(RECORDING))
    assert "name" in environment and cases
    for estimate in analyse(str(RECORDING)):
        # an error beyond what a 6-bit accumulator makes means a broken recording, not a measurement
        assert not estimate.at_most, estimate
        assert 6 <= estimate.bits <= 32, estimate
