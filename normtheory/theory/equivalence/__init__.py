"""Pre-LN ≡ Pre-RMSNorm ≡ Pre-CRMSNorm: converters, reference decoder, rounding-error bound, checks."""
