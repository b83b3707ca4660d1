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
# # 05 — Certify a kernel
#
# A certificate answers "is this normalization kernel precision-safe in this format, over the
# inputs my model will feed it?" with evidence: every output and gradient is compared with the
# exact result, and judged by an a-priori error bound evaluated at that very input. Here we
# certify a careful RMSNorm and a one-pass-variance LayerNorm, read the certificate and the
# report, and judge a recording offline, as a CPU CI job judges a GPU run.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved as PNG
import matplotlib.pyplot as plt
import numpy as np

import normtheory
from normtheory.certify.api import certify_kernel, prepare
from normtheory.certify.check import check_recording
from normtheory.certify.recording import load
from normtheory.certify.report import write_report
from normtheory.cli import main as normtheory_cli
from normtheory.kernels import defective
from normtheory.output_files import figures_dir

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
FIGURES = figures_dir()  # $NORMTHEORY_FIGURES, else a temporary folder (README: Notebooks)
# committed GPU recordings live in the repository, wherever this notebook is run from
REPO = ROOT if (ROOT / "tests" / "data" / "certify").is_dir() else Path(normtheory.__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="normtheory_nb05_"))


def certify(kernel, op, fmt, d=256, **options):
    config = prepare(kernel, op=op, format=fmt, d=d, budget=options.pop("budget", 256), **options)
    return certify_kernel(config, op=op)


# %% [markdown]
# ## A careful kernel: PyTorch's RMSNorm in bf16
#
# The `default` contract is the error a careful GPU kernel may make: fp32 accumulation over a
# tree, two-pass or Welford statistics, rsqrt within 2 fp32 ulps, one rounding at the output.
# In bf16 the final rounding dominates, so error/bound sits just under 1 for a correct kernel.

# %%
careful_cert, careful_state = certify("torch.rms_norm", "rmsnorm", "bf16")
print(careful_cert["verdict"], "| rows:", careful_cert["inputs_tested"])
print("forward:", {k: careful_cert["forward"][k] for k in ("max_ulp", "max_err_over_bound", "sqnr_db")})
for quantity, block in careful_cert["backward"].items():
    print(f"backward {quantity}:", {k: block[k] for k in ("max_ulp", "max_err_over_bound")})
print("safe domain:", {k: careful_cert["safe_domain"][k] for k in ("max_abs", "min_abs")})

# %% [markdown]
# ## A defective kernel: one-pass variance in fp32
#
# `var = E[x²] − E[x]²` cancels catastrophically when |mean|/std is large. The certificate
# names the families where the bound breaks, and the report plots error/bound against
# |mean|/std.

# %%
onepass_cert, onepass_state = certify(defective.one_pass_layer_norm, "layernorm", "fp32")
print(onepass_cert["verdict"])
for finding in onepass_cert["findings"][:6]:
    print(" -", finding)
report = WORK / "one_pass_report.md"
write_report(str(report), onepass_cert, onepass_state)
print(report.read_text()[:600])

# %%
log = [(label, offset, ratio) for label, offset, ratio, _ in onepass_state.row_log if np.isfinite(offset)]
fig, ax = plt.subplots(figsize=(6, 3.8))
for label in sorted({entry[0] for entry in log if not entry[0].startswith("domain")}):
    pts = np.array([(o, r) for lab, o, r in log if lab == label])
    ax.scatter(np.clip(pts[:, 0], 1e-3, 1e12), np.clip(pts[:, 1], 1e-6, 1e9), s=8, label=label)
ax.axhline(1, color="k", ls="--", lw=1)
ax.set(xscale="log", yscale="log", xlabel="|mean| / std of the row", ylabel="error / default bound",
       title="one-pass LayerNorm, fp32, d = 256")
ax.legend(fontsize=6, ncol=2)
fig.tight_layout()
fig.savefig(FIGURES / "05_one_pass_error_vs_offset.png", dpi=100)

# %% [markdown]
# ## Cast placement: the `llama` model explains a failure
#
# Hugging Face's LlamaRMSNorm rounds the normalized value to bf16 *before* multiplying by the
# weight: two roundings. It fails `default` and meets `model:llama`, the bound of exactly
# that algorithm.

# %%
llama_default, _ = certify("hf.llama_rms_norm", "rmsnorm", "bf16", backward=False)
llama_model, _ = certify("hf.llama_rms_norm", "rmsnorm", "bf16", backward=False, contract="model:llama")
print("default:", llama_default["verdict"], round(llama_default["forward"]["max_err_over_bound"], 3))
print("model:llama:", llama_model["verdict"], round(llama_model["forward"]["max_err_over_bound"], 3))

# %% [markdown]
# ## Record here, check anywhere
#
# `normtheory record` runs a kernel over every family and writes inputs and outputs as raw
# bits; `normtheory check` judges the file on any machine. First a CPU kernel recorded here and
# checked at once, then a recording made on an H200 (tests/data/certify/cuda/, docs/cuda.md):
# Liger's RMSNorm, whose default `casting_mode="llama"` fails `default` and meets `model:llama`
# like the HF module.

# %%
recording = WORK / "rms_bf16.npz"
assert normtheory_cli(["record", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "256",
                       "--rows-per-family", "4", "--out", str(recording)]) == 0
arrays, meta = load(str(recording))
checked = check_recording(arrays, meta, "default", source=str(recording))
print(checked["verdict"], {k: checked["forward"][k] for k in ("max_ulp", "max_err_over_bound")})
print(json.dumps(meta["environment"], indent=1)[:300])

# %%
liger_path = REPO / "tests" / "data" / "certify" / "cuda" / "liger_rms_norm_bf16_d4096.npz"
liger_arrays, liger_meta = load(str(liger_path))
print(liger_meta["environment"]["device_name"], "torch", liger_meta["environment"]["torch"])
liger_default = check_recording(liger_arrays, liger_meta, "default", source=liger_path.name)
liger_llama = check_recording(liger_arrays, liger_meta, "model:llama", source=liger_path.name)
for name, cert in (("default", liger_default), ("model:llama", liger_llama)):
    print(f"{name:12} {cert['verdict']}: forward error/bound {cert['forward']['max_err_over_bound']:.3f}")

# %% [markdown]
# ## The story, as assertions

# %%
assert careful_cert["verdict"] == "pass"
assert careful_cert["forward"]["max_err_over_bound"] <= 1
assert onepass_cert["verdict"] == "fail"
assert onepass_cert["forward"]["max_err_over_bound_by_family"]["offset_1e4"] > 1, "one-pass fails at large offset"
assert onepass_cert["forward"]["max_err_over_bound_by_family"]["normal"] <= 1, "...and is fine on centred rows"
assert llama_default["verdict"] == "fail" and llama_model["verdict"] == "pass"
assert checked["verdict"] == "pass" and checked["determinism"] == "not applicable"
assert liger_default["forward"]["max_err_over_bound"] > 1 >= liger_llama["forward"]["max_err_over_bound"]
