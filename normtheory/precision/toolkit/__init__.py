"""The rounding-error toolkit every bound in precision/bounds is built from.

- `rounding`: one rounding — γ_k and γ̃_k(λ), half an ulp as u·binade, η, the scaling by fl(1/d),
  the SAFETY factor of every bound;
- `tree`: the layout of a model's reductions (lanes, steps, butterfly) and the exact operand
  sums each of its roundings sees — the same layout emulation/reductions.py runs;
- `martingale`: the Azuma–Hoeffding statement and the verified stopping level, once;
- `sums`: the probabilistic error bounds of a tree sum built on them (exact terms; computed terms
  with their own errors);
- `context`: `BoundContext`, what one bound evaluation shares (model, accumulator, kind, λ).
"""
