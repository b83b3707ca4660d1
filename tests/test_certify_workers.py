"""The certifier's family batches judged in worker processes give the certificate a single
process gives (timings apart), and the worker count is validated."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")

from normtheory.certify import engine  # noqa: E402
from normtheory.certify.api import certify_kernel, prepare  # noqa: E402
from normtheory.errors import UsageError  # noqa: E402


def _without_timing(cert: dict) -> dict:
    return {k: v for k, v in cert.items() if k not in ("timing", "environment")}


@pytest.mark.parametrize("kernel, op", [("torch.rms_norm", "rmsnorm"),
                                        ("normtheory.kernels.defective:one_pass_layer_norm", "layernorm")])
def test_parallel_judging_gives_the_same_certificate(monkeypatch, kernel, op):
    monkeypatch.setattr(engine, "PARALLEL_FROM", 0)  # use the pool even for this small run
    base = prepare(kernel, op=op, format="bf16", d=256, budget=96)
    certificates = []
    for workers in (1, 2):
        config = dataclasses.replace(base, workers=workers)
        cert, state = certify_kernel(config, op=op)
        certificates.append(_without_timing(cert))
    assert certificates[0] == certificates[1]
    assert engine._POOLS  # the two-worker run did use a pool


def test_worker_count_comes_from_the_environment(monkeypatch):
    config = prepare("torch.rms_norm", op="rmsnorm", format="bf16", d=8, budget=8)
    monkeypatch.setenv(engine.WORKERS_ENV, "3")
    assert engine.judging_workers(config) == 3
    assert engine.judging_workers(dataclasses.replace(config, workers=1)) == 1
    monkeypatch.setenv(engine.WORKERS_ENV, "many")
    with pytest.raises(UsageError, match=engine.WORKERS_ENV):
        engine.judging_workers(config)
