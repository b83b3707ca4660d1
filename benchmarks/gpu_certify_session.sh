#!/usr/bin/env bash
# One device-tool call's worth of GPU work for the certifier (issue 5), never run yet: no GPU
# was lent to the session that wrote it. On the GPU host (repository root, PYTHONPATH=.):
#   OUT=$OUT bash benchmarks/gpu_certify_session.sh
# Writes $OUT/h100/ (recordings, a few MB) and $OUT/gpu_tests.txt. Copy $OUT/h100 to
# tests/data/certify/h100/, run `python benchmarks/record_catalog.py --check-only --out
# tests/data/certify/h100` on CPU (the manifest), commit: CPU CI then re-judges every recording
# (tests/test_certify_recorded.py). liger-kernel must travel with `carry` (a wheel) for the
# liger.* kernels; without it their entries are marked recorded: false with exit code 2.
set -u
export PYTHONPATH=.
mkdir -p "$OUT"
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" | tee "$OUT/device.txt"
timeout 300 python benchmarks/record_catalog.py --device cuda --no-check --out "$OUT/h100" 2>&1 | tail -80 | tee "$OUT/record.txt"
timeout 200 python -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -30 > "$OUT/gpu_tests.txt"
du -sh "$OUT/h100"
