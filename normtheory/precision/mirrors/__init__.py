"""Bit-exact mirrors of real kernels (torch CPU; torch/Liger CUDA near-mirrors)."""
