"""Shared pytest setup for tests/ and proofs/: hypothesis profiles and the `gpu` skip."""

from __future__ import annotations

import pytest

from normtheory._hypothesis_profiles import register_profiles


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def skip_gpu_tests_without_cuda(items) -> None:
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


__all__ = ["register_profiles", "skip_gpu_tests_without_cuda"]
