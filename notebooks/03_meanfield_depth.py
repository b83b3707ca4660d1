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
# # 03 — Depth at initialisation: mean-field predictions vs Monte Carlo
#
# How do the hidden states and the last layer's gradient of a Transformer scale with depth L,
# for Post-LN, Pre-LN, Peri-LN and LayerNorm-Scaling (LNS)? `normtheory.theory.meanfield.predictions`
# turns the papers' statements into predictions of a declared kind — *exact* (a value),
# *band* (an interval) or *scaling* (a law known up to a constant, fitted at one reference
# point) — each with a tolerance of t·SE plus a stated model error, Bonferroni-corrected over
# the whole report (family level 5%). `normtheory.theory.meanfield.montecarlo` measures real PyTorch
# stacks at initialisation. This notebook runs small stacks live on the CPU, then re-judges
# the sweep recorded on an H100 (tests/data/meanfield/) with the same code.

# %%
import json
import math
import time
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved as PNG
import matplotlib.pyplot as plt
import numpy as np
import torch

import normtheory
from normtheory.cli.meanfield import plot_records, print_report
from normtheory.output_files import figures_dir
from normtheory.theory.meanfield import predictions as mf
from normtheory.theory.meanfield.montecarlo import StackConfig, run_record

# run from notebooks/ (Jupyter) or from the repository root (scripts, CI)
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
FIGURES = figures_dir()  # $NORMTHEORY_FIGURES, else a temporary folder (README: Notebooks)
# the recorded GPU sweep: in this checkout, else in the one the package is imported from
REPO = ROOT if (ROOT / "tests" / "data" / "meanfield").is_dir() else Path(normtheory.__file__).resolve().parent.parent
RECORDED = REPO / "tests" / "data" / "meanfield"
torch.set_num_threads(1)  # small batched matmuls; a shared machine gains nothing from more threads

# %% [markdown]
# ## The predictions
# Xiong et al.'s proof setup (`xiong`: uniform attention, d×d Xavier weights, ReLU, LN without
# ε) gives Lemma 1 (E‖ReLU(X)‖² = σ²d/2) and Lemma 2 (Post-LN: E‖x + FFN(x)‖² = 3d/2; Pre-LN:
# (1 + l/2)d ≤ E‖h_l‖² ≤ (1 + 3l/2)d). The `standard` setup (softmax attention, W^O, FFN 4d,
# LN with ε) gets the same statements with gains composed from Kedia et al.'s variance rules.
# Here are the per-block gains behind the bands, and every prediction the judge knows:

# %%
for setup in ("xiong", "standard"):
    g = mf.block_gains(setup, 512)
    print(f"{setup:8} d=512: FFN gain {g.ffn_gain:.4f}, attention gain in [0, {g.attention_gain_max:.4f}] "
          f"-> Pre-LN E||h_L||^2/d in {tuple(round(v, 2) for v in mf.hidden_band('pre_ln', g, 12))} at L=12")
print()
for p in mf.EXACT_AND_BAND + tuple(law.prediction for law in mf.SCALING_LAWS):
    print(f"{p.name:28} {p.kind:7} {p.statement}")

# %% [markdown]
# ## Live on the CPU: small stacks
# Widths 64 and 128, depths 6–48, 16 random models per point, both setups. The depth-L model is
# the first L blocks of the deepest one (one forward pass serves every depth); every
# architecture sees the same weights.

# %%
ARCHS = ["post_ln", "pre_ln", "peri_ln", "lns"]
started = time.perf_counter()
cpu_records = [
    run_record(ARCHS, StackConfig(setup=setup, d=d, depths=(6, 12, 24, 48), n_tokens=16), list(range(16)), "cpu")
    for setup in ("xiong", "standard") for d in (64, 128)
]
cpu_seconds = time.perf_counter() - started
cpu_comparisons = mf.analyse(cpu_records)
print(f"measured in {cpu_seconds:.1f} s on the CPU; {len(cpu_comparisons)} comparisons")


def summary(comparisons):
    """Per prediction: how many comparisons, how many passed."""
    counts = Counter((c.prediction, c.verdict) for c in comparisons)
    names = sorted({c.prediction for c in comparisons}, key=[c.prediction for c in comparisons].index)
    for name in names:
        passed, failed = counts[name, "PASS"], counts[name, "FAIL"]
        print(f"  {name:28} {passed:3d} PASS {failed:3d} FAIL")


summary(cpu_comparisons)

# %% [markdown]
# Every exact and band prediction holds. Two scaling laws from the Curse-of-Depth paper do not:
# its LNS recursion σ²_{l+1} = σ²_l(1 + 1/(√l σ_l)) predicts E‖h_L‖²/d = L (linear), but the
# measured growth exponent is about 0.25 — at initialisation each branch is positively
# homogeneous, so scaling its input by 1/√l scales its output variance by 1/l and the stream
# grows like Σ1/l ≈ ln L (THEORY_NOTES.md). Its Pre-LN recursion σ²_{l+1} = σ²_l(1 + k/σ_l), with k
# fitted at the smallest depth, overshoots the deeper points. The fitted LNS exponents:

# %%
print_report([c for c in cpu_comparisons if c.quantity.startswith("exponent") and c.prediction.startswith(("sun.", "lns."))])


# %% [markdown]
# Per layer, the hidden mean square of the deepest CPU model against the mean-field bands, and
# the last block's W2 gradient norm against depth (`normtheory meanfield --plot` draws the same):

# %%
plot_records(cpu_records, str(FIGURES / "03_cpu_meanfield.png"))

# %% [markdown]
# ## The H100 sweep, re-judged here
# Recorded with `benchmarks/meanfield_sweep.py --device cuda` (fp32, TF32 off): d 512 and 1024,
# L up to 96, 8 seeds, all five architectures, both setups. The judge is the same code as
# above; no GPU is needed to re-run it.

# %%
recorded_files = sorted(RECORDED.glob("*_d*.json"))
h100_records = [json.loads(p.read_text()) for p in recorded_files]
environment = h100_records[0]["environment"]
timing = json.loads((RECORDED / "timing.json").read_text())
print(f"{environment['gpu']}, torch {environment['torch']}, CUDA {environment['cuda']}, TF32 {environment['tf32_matmul']}")
for path, record in zip(recorded_files, h100_records):
    cfg = record["config"]
    print(f"  {path.name:20} setup {cfg['setup']:8} d {cfg['d']:5} L {cfg['depths']} seeds {len(record['seeds'])}"
          f"  {timing[path.name]:5.1f} s on the GPU")
print(f"  the whole sweep: {timing['total_s']:.1f} s on the H100 (the much smaller CPU run above: {cpu_seconds:.1f} s)")
h100_comparisons = mf.analyse(h100_records)
print(f"\n{len(h100_comparisons)} comparisons")
summary(h100_comparisons)

# %% [markdown]
# The same picture at d = 512 and 1024, with one more rejection: Theorem 1 of Xiong et al. is an
# O(·) bound; read as a scaling law it says the last Pre-LN W2 gradient falls like L^(-1/2). The
# measured exponent is −0.54 to −0.57; at d = 1024 (both setups) and in the standard setup at
# d = 512 its interval excludes −1/2, so that reading is rejected there (the xiong setup at
# d = 512, with a wider interval, still admits it). The mean-field evaluation (the Lemma 3
# Jacobian over the Lemma 2 band) gives a range that contains every measured exponent. On the
# small CPU stacks above the intervals were too wide to tell −0.55 from −0.5. The
# Curse-of-Depth recursion for Pre-LN, fitted at L = 6, overshoots at depth.

# %%
exponents = [c for c in h100_comparisons if c.quantity == "exponent of last_w2_grad in L"]
print(f"{'setup':8} {'arch':7} {'d':>5}  measured exponent [± t·se]     prediction                        range")
for c in exponents:
    interval = f"[{c.measured - c.t * c.se:+.3f}, {c.measured + c.t * c.se:+.3f}]"
    print(f"{c.setup:8} {c.arch:7} {c.d:5}  {c.measured:+.3f} {interval}"
          f"   {c.prediction:28} [{c.lower:+.3f}, {c.upper:+.3f}] {c.verdict}")

# %%
plot_records(h100_records, str(FIGURES / "03_h100_meanfield.png"))

fig, axes = plt.subplots(1, 2, figsize=(11, 6.5))
for ax, quantity in zip(axes, ("exponent of last_w2_grad in L", "exponent of final_hidden_ms in L")):
    rows = sorted((c for c in h100_comparisons if c.quantity == quantity),
                  key=lambda c: (c.prediction, c.setup, c.arch, c.d))
    for y, c in enumerate(rows):
        colour = "tab:green" if c.verdict == "PASS" else "tab:red"
        hi = c.upper if math.isfinite(c.upper) else c.measured + 1
        ax.plot([c.lower - c.tolerance, hi + c.tolerance], [y, y], color=colour, lw=5, alpha=0.35, solid_capstyle="butt")
        ax.errorbar(c.measured, y, xerr=c.t * c.se, fmt="ko", ms=2.5, lw=1)
    ax.set_yticks(range(len(rows)), [f"{c.prediction} | {c.setup} {c.arch} d={c.d}" for c in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(quantity, fontsize=8)
axes[0].set_title("H100: measured exponent ± t·se (black) vs predicted range ± tolerance (green PASS, red FAIL)",
                  fontsize=8, loc="left")
fig.tight_layout()
fig.savefig(FIGURES / "03_h100_exponents.png", dpi=100)

# %% [markdown]
# ## Linear or logarithmic? Growth of the hidden state with depth (H100, standard setup, d = 1024)
# The band from positive homogeneity (1 + c·H_L, H_L harmonic) against the Curse-of-Depth
# paper's two recursions, each with its constant fitted at the smallest depth as the judge does.

# %%
laws = {law.prediction.name: law for law in mf.SCALING_LAWS}
view = mf.RecordView(next(r for r in h100_records if r["config"]["setup"] == "standard" and r["config"]["d"] == 1024))
depths = np.array(view.depths)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
growth = {}
for ax, arch, law_name in ((axes[0], "lns", "sun.lns.recursion"), (axes[1], "pre_ln", "sun.cod.recursion")):
    g = view.gains(arch)
    ms = view.array(arch, "hidden_ms")
    mean, se = ms.mean(axis=0), ms.std(axis=0, ddof=1) / math.sqrt(ms.shape[0])
    layers = np.arange(ms.shape[1])
    band = np.array([mf.hidden_band(arch, g, int(l)) for l in layers])
    ax.fill_between(layers, band[:, 0], band[:, 1], alpha=0.2, label="mean-field band")
    ax.errorbar(depths, mean[depths], yerr=se[depths], fmt="ko", ms=3, label="measured (8 seeds)")
    law = laws[law_name]
    k = law.calibrate(mean[depths[0]], int(depths[0])) if law.calibrate else None
    reference_shape = law.shape(arch, g, view.d, int(depths[0]), k)[0]
    fitted = [mean[depths[0]] * law.shape(arch, g, view.d, int(L), k)[0] / reference_shape for L in layers[1:]]
    ax.plot(layers[1:], fitted, "r--", label=f"{law_name} (fitted at L={depths[0]})")
    growth[arch] = (mean[depths], np.array([fitted[L - 1] for L in depths]), band[depths])
    ax.set_xlabel("layer l")
    ax.set_ylabel("E||h_l||^2 / d")
    ax.set_title(f"{arch}: {view.setup}, d={view.d}", fontsize=9)
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIGURES / "03_h100_growth_laws.png", dpi=100)
for arch, (measured, fitted, band) in growth.items():
    print(f"{arch:7} L={depths[-1]}: measured {measured[-1]:.2f}, recursion {fitted[-1]:.2f}, "
          f"band [{band[-1, 0]:.2f}, {band[-1, 1]:.2f}]")

# %% [markdown]
# ## The recorded report still reads the same
# `tests/data/meanfield/h100_report.txt` is the CLI's report written when the sweep was
# recorded. Re-judging the recordings must give the same count and the same failing
# predictions (a change there means the judge changed, and this notebook's story with it).

# %%
last_line = (RECORDED / "h100_report.txt").read_text().strip().splitlines()[-1]
print(last_line)
reported_total = int(last_line.split()[0])
reported_failing = set(last_line.split(" in: ")[1].split(", ")) if " in: " in last_line else set()
failing_now = {c.prediction for c in h100_comparisons if c.verdict != "PASS"}
print(f"re-judged now: {len(h100_comparisons)} comparisons, failing: {', '.join(sorted(failing_now))}")

# %% [markdown]
# ## The story, as assertions

# %%
HOLD = {p.name for p in mf.EXACT_AND_BAND} | {
    "meanfield.grad.pre.scaling", "meanfield.grad.post.scaling", "lns.homogeneity.scaling", "xiong.lemma2.pre.scaling"}
for name, comparisons in (("CPU", cpu_comparisons), ("H100", h100_comparisons)):
    wrong = [(c.prediction, c.setup, c.arch, c.d, c.L) for c in comparisons if c.prediction in HOLD and c.verdict != "PASS"]
    assert not wrong, f"{name}: a prediction that should hold failed: {wrong}"
    lns_exponents = [c for c in comparisons if c.prediction == "sun.lns.recursion" and c.L is None]
    assert lns_exponents and all(c.verdict == "FAIL" and c.measured < 0.5 for c in lns_exponents), \
        f"{name}: LNS grows far slower than linearly at initialisation"
    post = [c for c in comparisons if c.prediction == "meanfield.grad.post.scaling" and c.L is None]
    assert post and all(abs(c.measured) < 0.05 for c in post), f"{name}: Post-LN's last-layer gradient is flat in L"
thm1_exponents = {(c.setup, c.d): c.verdict for c in h100_comparisons if c.prediction == "xiong.thm1.pre" and c.L is None}
assert thm1_exponents[("xiong", 1024)] == thm1_exponents[("standard", 1024)] == "FAIL", \
    "H100: the L^(-1/2) reading of Theorem 1 is rejected at d = 1024"
assert all(c.measured < -0.5 for c in exponents if c.arch == "pre_ln")
assert growth["lns"][0][-1] < growth["lns"][1][-1] / 4, "LNS at L = 96 is far below the linear recursion"
assert growth["pre_ln"][0][-1] < growth["pre_ln"][1][-1], "the Curse-of-Depth recursion overshoots Pre-LN"
assert len(h100_comparisons) == reported_total and failing_now == reported_failing
