"""A priori rounding-error bounds: forward, backward, Welford, Lp, overflow domains."""
