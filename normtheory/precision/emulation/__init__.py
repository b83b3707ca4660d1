"""White-box emulated kernels: every operation rounded in a stated order."""
