#!/usr/bin/env bash
# The fp8 device checks of issue 9, as one short script for a CUDA host (H100), run from the
# repository root. Nothing here was run yet: the session that wrote it had no GPU.
#   1. the cast probe on CUDA (saturating or not, NaN bytes) -> $OUT/fp8_probe_cuda.json
#   2. emulated casts vs torch CUDA, bit for bit, every fp16/bf16 value + 2^20 random fp32
#   3. the accumulation probe: _scaled_mm (fp8) and bf16/fp16 mm, K = 128 … 16384
#      -> $OUT/accumulation_h100.npz (commit it as tests/data/accumulation_h100.npz: CPU CI then
#         re-analyses it in tests/test_fp8_accumulation_recorded.py)
set -euo pipefail
OUT="${OUT:-.}"
export PYTHONPATH=.
python -c "from normtheory.kernels.fp8_probe import probe_all; import json; \
print(json.dumps({k: v.__dict__ for k, v in probe_all('cuda').items()}, indent=1))" | tee "$OUT/fp8_probe_cuda.json"
python -m pytest -p no:cacheprovider -q -m gpu tests/test_fp8_casts.py tests/test_formats.py 2>&1 | tail -5
python benchmarks/accumulation_probe.py --device cuda --out "$OUT/accumulation_h100.npz" | tee "$OUT/accumulation_h100.md"
