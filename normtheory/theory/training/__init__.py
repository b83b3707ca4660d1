"""Trained-model claims about LayerNorm placement, measured on tiny decoders (docs/trained_claims.md).

task.py     the synthetic language (second-order Markov chain, then a copy), its Bayes loss
model.py    TinyDecoder with placements pre_ln, post_ln, peri_ln, mix_ln, lns
train.py    deterministic short AdamW training, warm-up on or off
measure.py  removal costs, angular distances, stream rms, per-block gradient norms
probes.py   the three probes (curse_of_depth, gradient_profile, warmup) and their arms
claims.py   each paper's claim as a signed per-seed effect, with its registered verdict
stats.py    t intervals, the HOLDS / REFUTED / INCONCLUSIVE rule, minimum detectable effect
judge.py    per-seed records -> intervals and verdicts

Everything here imports torch; the command line imports it only when it runs.
"""
