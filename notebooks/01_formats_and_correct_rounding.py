# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — Formats and correct rounding
#
# Every format in normtheory is defined by four numbers (precision p, emin, emax, whether it
# has infinities); everything else is derived. This notebook shows where each format rounds,
# saturates and overflows, and why a reference must be *correctly rounded* rather than
# "computed in float64, then rounded".

# %%
import matplotlib

matplotlib.use("Agg")  # headless: figures are saved as PNG
import matplotlib.pyplot as plt
import ml_dtypes
import numpy as np

from normtheory.formats import FORMATS
from normtheory.output_files import figures_dir
from normtheory.reference import correctly_rounded
from normtheory.upstream.compare import observe

FIGURES = figures_dir()  # $NORMTHEORY_FIGURES, else a temporary folder (README: Notebooks)

# %% [markdown]
# ## The formats

# %%
print(f"{'format':11} {'p':>3} {'emin':>6} {'emax':>5} {'largest finite':>15} {'u = 2^-p':>10}  inf")
for name, fmt in FORMATS.items():
    print(f"{name:11} {fmt.precision:3d} {fmt.emin:6d} {fmt.emax:5d} {fmt.max_finite:15.6g} "
          f"{fmt.unit_roundoff:10.3g}  {fmt.has_inf}")

# %% [markdown]
# ## Relative spacing of each format across magnitudes
# The relative gap between neighbours is flat (≈ 2u) in the normal range and grows in the
# subnormal range; fp8 e4m3fn covers only 2^-9 … 448.

# %%
magnitudes = np.logspace(-12, 6, 2000)
fig, ax = plt.subplots(figsize=(7, 4))
for name in ("fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"):
    fmt = FORMATS[name]
    inside = magnitudes <= fmt.max_finite
    ax.loglog(magnitudes[inside], fmt.ulp(magnitudes[inside]) / magnitudes[inside], label=name)
ax.set_xlabel("|x|")
ax.set_ylabel("ulp(x) / |x|")
ax.set_title("Relative spacing of each format")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "01_relative_spacing.png", dpi=100)

# %% [markdown]
# ## fp8 boundaries: rounding, overflow and saturation

# %%
e4, e5 = FORMATS["fp8_e4m3fn"], FORMATS["fp8_e5m2"]
probe = np.array([440.0, 464.0, 470.0, 480.0, 2.0**-10, 1e6, np.inf])
print("e4m3fn           ", e4.round_to_float64(probe))
print("e4m3fn saturating", e4.round_to_float64(probe, saturate=True))
print("e5m2             ", e5.round_to_float64(np.array([57344.0, 61439.0, 61440.0, np.inf])))

# %% [markdown]
# ## Does ml_dtypes round float64 → bf16 once or twice? It depends on the version
# Up to 0.6.0 its cast went through float32: a float64 value just above a bf16 midpoint first
# rounded *onto* the midpoint in float32, then tied to even — the wrong way. 0.7.0 rounds once.
# A library's numerics are a fact with a version range (docs/upstream.md), so this cell probes
# the installed version and looks it up in the table instead of asserting one answer.

# %%
rng = np.random.default_rng(0)
bf16 = FORMATS["bf16"]
base = bf16.round_to_float64(rng.standard_normal(100_000))
just_above_midpoints = np.nextafter(base + bf16.ulp(base) / 2, np.inf)
ours = bf16.round_to_float64(just_above_midpoints)
theirs = just_above_midpoints.astype(ml_dtypes.bfloat16).astype(np.float64)
disagreement = np.mean(ours != theirs)
observed = observe("ml_dtypes.float64_to_bf16")
print(f"ml_dtypes {observed.version}: {observed.probed} (the table says {observed.expected}, {observed.status}); "
      f"it disagrees with correct rounding on {disagreement:.1%} of these values")

# %% [markdown]
# ## A correctly rounded LayerNorm vs float64-then-round
# fp32 inputs with |mean|/std = 1e6 at d = 3000: plain float64 LayerNorm, rounded to fp32,
# lands on the wrong neighbour for some elements.

# %%
fp32 = FORMATS["fp32"]
x = fp32.round_to_float64(1e6 + rng.standard_normal((32, 3000)))
exact = fp32.to_float64(correctly_rounded("layernorm", x, format="fp32", eps=1e-5, affine="none")["y"])
centred = x - x.mean(axis=1, keepdims=True)
naive = fp32.round_to_float64(centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + 1e-5))
error_ulps = np.abs(naive - exact) / fp32.ulp(exact)
print(f"float64-then-round is off on {np.count_nonzero(error_ulps):,} of {exact.size:,} elements "
      f"(max {error_ulps.max():.0f} ulp)")

# %% [markdown]
# How often float64-then-round misrounds, as the offset |mean|/std grows:

# %%
ratios = [1e0, 1e2, 1e4, 1e5, 1e6, 1e7]
misround_fraction = []
for ratio in ratios:
    rows = fp32.round_to_float64(ratio + rng.standard_normal((8, 3000)))
    right = fp32.to_float64(correctly_rounded("layernorm", rows, format="fp32", eps=1e-5, affine="none")["y"])
    c = rows - rows.mean(axis=1, keepdims=True)
    plain = fp32.round_to_float64(c / np.sqrt((c**2).mean(axis=1, keepdims=True) + 1e-5))
    misround_fraction.append(np.mean(plain != right))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(ratios, np.maximum(misround_fraction, 1e-6), "o-")
ax.set_xlabel("|mean| / std of the row")
ax.set_ylabel("fraction misrounded (floor 1e-6)")
ax.set_title("fp32 LayerNorm, d = 3000: float64-then-round vs correct")
fig.tight_layout()
fig.savefig(FIGURES / "01_naive_vs_correct.png", dpi=100)
print(dict(zip(ratios, misround_fraction)))

# %% [markdown]
# ## The story, as assertions

# %%
assert e4.round_to_float64(np.array([464.0]))[0] == 448.0 and np.isnan(e4.round_to_float64(np.array([480.0]))[0])
assert e4.round_to_float64(np.array([1e6]), saturate=True)[0] == 448.0
assert not observed.failed, "the installed ml_dtypes contradicts docs/upstream.md"
assert (disagreement > 0.1) == (observed.probed == "double-rounds via float32"), "the probe and the sample agree"
above = base > 0  # there nextafter(midpoint, inf) lies above the midpoint, so the correct result is the upper neighbour
assert np.all(ours[above] == base[above] + bf16.ulp(base[above])), "ours rounds once"
assert np.count_nonzero(error_ulps) > 0, "float64-then-round misrounds here"
assert error_ulps.max() <= 1, "...but never by more than one ulp"
assert misround_fraction[-1] > misround_fraction[0], "misrounding grows with the offset"
