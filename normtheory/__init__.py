"""normtheory: numerics and theory checks for Transformer normalization layers."""
