"""Adapters for real normalization kernels (torch eager, HF cast placements, torch.compile,
Liger, user callables). This package never imports `normtheory.reference`: the comparison
layer (`normtheory.certify`) is the only place where kernels and references meet."""
