#!/usr/bin/env bash
# Everything still waiting for a GPU, as one device-tool call (about 10 minutes; a session has
# 15 minutes of device time, start-up included). Never run yet: the session that wrote it was
# not lent a GPU. From the repository root on the GPU host:
#   OUT=$OUT bash benchmarks/gpu_session.sh        (carry a liger-kernel wheel to cover liger.*)
# Then, on this CPU machine:
#   - copy $OUT/h100 to tests/data/certify/h100/ and run
#     `PYTHONPATH=. python benchmarks/record_catalog.py --check-only --out tests/data/certify/h100`
#     (issue 5: the manifest CPU CI re-checks; the closing note's verdict table);
#   - commit $OUT/accumulation_h100.npz as tests/data/accumulation_h100.npz (issue 9);
#   - commit $OUT/equivalence_speed_h100.json under tests/data/ (issue 10, notebook 02 finds it).
set -u
OUT="${OUT:-.}"
export PYTHONPATH=.
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/device.txt"
OUT="$OUT" timeout 240 bash benchmarks/gpu_certify_session.sh
OUT="$OUT" timeout 180 bash benchmarks/fp8_device_check.sh
timeout 150 python benchmarks/equivalence_speed.py --device cuda --models reference --budget-s 120 \
    --json "$OUT/equivalence_speed_h100.json" | tail -20
