"""Sympy derivations shared by proofs/ and notebooks (never imports torch).

Modules: identities (prove-or-refute machinery), powersums (general-width sums),
normalizers (symbolic definitions), spotcheck (lambdify to mpmath, compare with the
reference), jacobians, blocks (Pre-LN -> Pre-(C)RMSNorm algebra), moments, lp.
Import the module you need; this package imports nothing heavy itself.
"""
