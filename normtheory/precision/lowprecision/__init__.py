"""Low-precision outputs: fp8/MX scaling recipes and their bound, stochastic rounding, accumulator bits."""
