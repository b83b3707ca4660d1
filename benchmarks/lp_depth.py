"""Depth Monte Carlo of Pre-Lp Transformers against Pre-LN and Pre-RMSNorm (theory/lp/depth.py).

    PYTHONPATH=. python benchmarks/lp_depth.py            # CPU, xiong setup, d = 64, L up to 48

Writes docs/figures/lp_depth.png (hidden mean square per layer with the predicted bands,
per-layer W2 gradient norms of the deepest model, last-layer W2 gradient against depth) and
docs/figures/lp_depth.json (the table), and prints the table as markdown. Exit 1 when a
measured hidden mean square leaves its predicted band (Bonferroni over the whole table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

P_VALUES = (1.0, 1.5, 2.0, 3.0, 4.0, math.inf)


def run(d: int, depths: tuple[int, ...], seeds: int, tokens: int, setup: str = "xiong"):
    import torch

    from normtheory.theory.meanfield.montecarlo import StackConfig, lp_arch, measure

    torch.manual_seed(0)
    cfg = StackConfig(setup=setup, d=d, depths=depths, n_tokens=tokens)
    archs = ["pre_ln", "pre_rms"] + [lp_arch(p) for p in P_VALUES]
    start = time.perf_counter()
    measured = measure(archs, cfg, list(range(seeds)))
    return cfg, archs, measured, time.perf_counter() - start


def analyse(cfg, archs, measured):
    import numpy as np

    from normtheory.theory.lp.depth import (
        hidden_band_lp,
        judge_hidden,
        large_d_shape_constant,
        last_w2_grad_sq_lp,
        shape_constants,
    )
    from normtheory.theory.meanfield.montecarlo import lp_exponent
    from normtheory.theory.meanfield.predictions import block_gains

    g = block_gains(cfg.setup, cfg.d, cfg.activation, 0.0)
    rows, checks = [], []
    n_checks = len(archs) * len(cfg.depths)
    for arch in archs:
        p = lp_exponent(arch)
        shape = shape_constants(2.0 if p is None else p, cfg.d)  # LN and RMSNorm outputs: ‖y‖² = d
        if arch == "pre_ln":  # LN: ‖y‖² = d, ‖J‖_F² = (d − 2)/σ² (two projections)
            shape = type(shape)(shape.p, shape.d, 1.0, 0.0, cfg.d - 2.0, 0.0)
        hidden = np.asarray(measured[arch]["hidden_ms"])
        checks += judge_hidden(arch, hidden, g, shape, cfg.depths, n_checks)
        for depth in cfg.depths:
            w2 = np.asarray(measured[arch]["grad_sq"][depth]["w2"])  # (seeds, depth)
            last = w2[:, depth - 1]
            hidden_ms = float(hidden[:, depth].mean())
            lower, upper = hidden_band_lp(g, depth, shape.c)
            rows.append({
                "arch": arch, "p": None if p is None else ("inf" if math.isinf(p) else p), "L": depth,
                "c_p": shape.c, "c_p_large_d": 1.0 if p is None else large_d_shape_constant(p),
                "hidden_ms": hidden_ms, "hidden_ms_se": float(hidden[:, depth].std(ddof=1) / math.sqrt(len(hidden))),
                "band_lower": lower, "band_upper": upper,
                "last_w2_grad": float(math.sqrt(last.mean())),
                "last_w2_grad_predicted": math.sqrt(last_w2_grad_sq_lp(g, cfg.n_tokens, hidden_ms, shape)),
                "first_over_last_w2_grad": float(math.sqrt(w2[:, 0].mean() / last.mean())),
                # growth of the residual stream relative to Pre-RMSNorm on the same weights;
                # c_p would be the ratio if the attention branch's share scaled like the FFN's
                "growth_vs_pre_rms": float((hidden[:, depth].mean() - 1)
                                           / (np.asarray(measured["pre_rms"]["hidden_ms"])[:, depth].mean() - 1)),
            })
    return rows, checks


def markdown(rows, checks) -> str:
    ok = {(c.arch, c.depth): c.passed for c in checks}
    lines = ["| arch | c_p(d) | L | E‖h_L‖²/d | band | in band | growth vs Pre-RMS | last W2 grad | predicted "
             "| first/last W2 grad |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['c_p']:.4f} | {r['L']} | {r['hidden_ms']:.3f} ± {r['hidden_ms_se']:.3f} | "
                     f"[{r['band_lower']:.3f}, {r['band_upper']:.3f}] | {'yes' if ok[(r['arch'], r['L'])] else 'NO'} | "
                     f"{r['growth_vs_pre_rms']:.3f} | "
                     f"{r['last_w2_grad']:.4f} | {r['last_w2_grad_predicted']:.4f} | {r['first_over_last_w2_grad']:.3f} |")
    return "\n".join(lines)


def plot(cfg, archs, measured, rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    deepest = max(cfg.depths)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(archs) - 2))
    styles = {"pre_ln": ("black", "--"), "pre_rms": ("tab:red", ":")}
    styles.update({a: (colours[i], "-") for i, a in enumerate(archs[2:])})
    for arch in archs:
        colour, ls = styles[arch]
        hidden = np.asarray(measured[arch]["hidden_ms"]).mean(axis=0)
        axes[0].plot(np.arange(hidden.size), hidden, color=colour, ls=ls, label=arch)
        band = [(r["L"], r["band_lower"], r["band_upper"]) for r in rows if r["arch"] == arch]
        axes[0].vlines([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=colour, lw=4, alpha=0.35)
        w2 = np.sqrt(np.asarray(measured[arch]["grad_sq"][deepest]["w2"]).mean(axis=0))
        axes[1].plot(np.arange(1, w2.size + 1), w2, color=colour, ls=ls, label=arch)
        last = [(r["L"], r["last_w2_grad"], r["last_w2_grad_predicted"]) for r in rows if r["arch"] == arch]
        axes[2].plot([x[0] for x in last], [x[1] for x in last], color=colour, ls=ls, marker="o", ms=3, label=arch)
        axes[2].plot([x[0] for x in last], [x[2] for x in last], color=colour, ls="none", marker="x", ms=6)
    axes[0].set(xlabel="layer l", ylabel="E||h_l||^2 / d", yscale="log",
                title=f"hidden mean square, L={deepest} (bars: predicted bands)")
    axes[1].set(xlabel="layer l", ylabel="||dLoss/dW2 of block l||_F", yscale="log",
                title=f"per-layer W2 gradient, L={deepest}")
    axes[2].set(xlabel="depth L", ylabel="last-layer W2 gradient", xscale="log", yscale="log",
                title="last W2 gradient vs depth (x: ratio-of-means prediction)")
    for ax in axes:
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Pre-Lp vs Pre-LN / Pre-RMSNorm at init ({cfg.setup} setup, d={cfg.d}, {cfg.n_tokens} tokens)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--L", default="6,12,24,48")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args(argv)
    depths = tuple(sorted({int(x) for x in args.L.split(",")}))
    cfg, archs, measured, elapsed = run(args.d, depths, args.seeds, args.tokens)
    rows, checks = analyse(cfg, archs, measured)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(cfg, archs, measured, rows, args.out / "lp_depth.png")
    (args.out / "lp_depth.json").write_text(json.dumps(
        {"config": {"setup": cfg.setup, "d": cfg.d, "depths": list(depths), "seeds": args.seeds,
                    "tokens": cfg.n_tokens}, "elapsed_s": elapsed, "rows": rows,
         "hidden_band_checks": [c.__dict__ for c in checks]}, indent=1))
    print(markdown(rows, checks))
    print(f"measured in {elapsed:.1f} s; {sum(c.passed for c in checks)}/{len(checks)} hidden-band checks pass")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
