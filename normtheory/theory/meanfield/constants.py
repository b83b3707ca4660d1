"""Every constant the mean-field harness is built with, in one place (no torch here).

The Monte Carlo harness (meanfield/montecarlo.py), the closed forms (meanfield/predictions.py),
the recursion (meanfield/recursion.py) and the claims all read eps, d_ff, the head width and
the protocol defaults from this module, and every recording stores the values it was made
with (`recorded_constants`). Recordings made before constants were stored load with
`constants_of_record`, which fills in the values those runs used (they are the defaults
below; the record is then marked `"constants_source": "defaults"`).

Setups (Xiong et al. 2020, arXiv 2002.04745; see docs/claims.md):
* xiong: W^Q = W^K = 0 (uniform attention), d_ff = d, no output projection, no biases,
  normalisers without eps or affine parameters, ReLU FFN.
* standard: softmax attention with d/64 heads, W^O, d_ff = 4d, LayerNorm eps 1e-5 and
  RMSNorm eps 1e-6 with identity affine parameters.
All weights are Xavier-normal: Var = 2 / (fan_in + fan_out).

Protocol (what the loss reads; the issue 17 review found the fitted Theorem 1 exponent moves
by ~0.07 with the readout on identical weights, so it is part of every report):
* n_tokens: tokens per sequence, default 16 (the CLI's --tokens).
* readout: "token" — L = (1/n) Σ_i <u_i, out_i>, u_i ~ N(0, I_d) i.i.d. per token (default);
  "shared" — one u for every token of a sequence.
* loss: "linear" — the readout above (default); "xent" — mean cross-entropy of a random
  N(0, 1/d) head of XENT_VOCAB classes against uniformly random labels.
"""

from __future__ import annotations

SETUPS = ("xiong", "standard")
READOUTS = ("token", "shared")
LOSSES = ("linear", "xent")

HEAD_DIM = 64
DEFAULT_TOKENS = 16
DEFAULT_READOUT = "token"
DEFAULT_LOSS = "linear"
XENT_VOCAB = 64

LAYERNORM_EPS = 1e-5  # the standard setup's LayerNorm (torch's default)
RMSNORM_EPS = 1e-6  # the standard setup's RMSNorm and Lp normalisers
FFN_RATIO = {"xiong": 1, "standard": 4}
INIT = "xavier_normal"

# Architecture parameters at initialisation (sources in normtheory/theory/archs).
MIX_LN_POST_FRACTION = 0.25  # Mix-LN: Post-LN for the first floor(0.25 L) layers (Li et al. 2024)
NGPT_ALPHA_INIT = 0.05  # nGPT: eigen learning rates alpha_A = alpha_M = 0.05 at initialisation
NORMFORMER_HEAD_SCALE_INIT = 1.0  # NormFormer: head-wise scales start at 1

RMS_FAMILY = ("pre_rms", "qk_norm", "hybrid_norm", "ngpt")  # archs whose normalisers are RMSNorm


def d_ff(setup: str, d: int) -> int:
    return FFN_RATIO[setup] * d


def n_heads(d: int) -> int:
    return max(1, d // HEAD_DIM)


def eps(setup: str, arch: str) -> float:
    """The normalisers' eps of one (setup, arch): 0 in Xiong's proof setup; RMSNorm's and the
    Lp normalisers' 1e-6, LayerNorm's 1e-5 in the standard setup."""
    if setup == "xiong":
        return 0.0
    if arch in RMS_FAMILY or arch.startswith("pre_lp:"):
        return RMSNORM_EPS
    return LAYERNORM_EPS


def recorded_constants(setup: str, d: int, archs, *, n_tokens: int, readout: str, loss: str) -> dict:
    """What a recording stores next to its measurements, so it can be re-judged as made."""
    return {
        "eps": {arch: eps(setup, arch) for arch in archs},
        "d_ff": d_ff(setup, d),
        "n_heads": n_heads(d) if setup == "standard" else None,
        "head_dim": HEAD_DIM if setup == "standard" else None,
        "init": INIT,
        "n_tokens": n_tokens,
        "readout": readout,
        "loss": loss,
        "xent_vocab": XENT_VOCAB if loss == "xent" else None,
        "mix_ln_post_fraction": MIX_LN_POST_FRACTION,
        "ngpt_alpha_init": NGPT_ALPHA_INIT,
    }


def constants_of_record(record: dict) -> dict:
    """The constants a recording was made with: stored ones, else the defaults that every run
    before constants were stored used (eps, d_ff, head width, token readout, linear loss)."""
    cfg = record["config"]
    stored = record.get("constants")
    if stored is not None:
        return dict(stored, constants_source="recorded")
    defaults = recorded_constants(cfg["setup"], int(cfg["d"]), record["archs"], n_tokens=int(cfg["n_tokens"]),
                                  readout=cfg.get("readout", DEFAULT_READOUT), loss=cfg.get("loss", DEFAULT_LOSS))
    return dict(defaults, constants_source="defaults")
