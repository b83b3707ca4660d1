"""Markdown report of a certification, with three plots written next to it:
error/bound vs |mean|/std per row, the histogram of per-row max ulps, and the safe-domain
probes (error/bound vs input scale)."""

from __future__ import annotations

import os

import numpy as np


def _plots(stem: str, state) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    log = [(label, off, ratio, ulp) for label, off, ratio, ulp in state.row_log if np.isfinite(off)]
    if log:
        labels = sorted({entry[0] for entry in log})
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in labels:
            pts = np.array([(off, max(ratio, 1e-6)) for lab, off, ratio, _ in log if lab == label])
            ax.scatter(np.clip(pts[:, 0], 1e-3, 1e12), np.minimum(pts[:, 1], 1e6), s=8, label=label)
        ax.axhline(1.0, color="k", lw=1, ls="--")
        ax.set(xscale="log", yscale="log", xlabel="|mean| / std of the row", ylabel="max error / bound in the row",
               title="forward error against the contract")
        ax.legend(fontsize=6, ncol=2)
        path = f"{stem}_error_vs_offset.png"
        fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
        written.append(("Error vs |mean|/std", path))
        ulps = np.array([min(entry[3], 1e9) for entry in log])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(np.log10(np.maximum(ulps, 1e-3)), bins=40)
        ax.set(xlabel="log10(max ulps in the row)", ylabel="rows", title="forward error in ulps of the output format")
        path = f"{stem}_ulp_histogram.png"
        fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
        written.append(("Error histogram", path))
    if state.domain_probes:
        probes = sorted(state.domain_probes)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        mags = [p[0] for p in probes]
        ratios = [min(max(p[1], 1e-6), 1e6) if p[2] else 1e6 for p in probes]
        colors = ["tab:green" if (p[2] and p[1] <= 1) else "tab:red" for p in probes]
        ax.scatter(mags, ratios, c=colors)
        ax.axhline(1.0, color="k", lw=1, ls="--")
        ax.set(xscale="log", yscale="log", xlabel="max |x| of the probe row", ylabel="error / bound (1e6: non-finite)",
               title="safe-domain bisection")
        path = f"{stem}_safe_domain.png"
        fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
        written.append(("Safe domain", path))
    return written


def render(cert: dict, figures: list[tuple[str, str]], report_dir: str) -> str:
    fwd = cert["forward"]
    lines = [
        f"# Certificate: `{cert['kernel']}` — **{cert['verdict'].upper()}**", "",
        f"{cert['op']}, format {cert['format']} (weights {cert['w_format']}, output {cert['out_format']}), "
        f"d = {cert['d']}, eps = {cert['eps']:g} ({cert['eps_mode']}), affine {cert['affine']}, "
        f"contract `{cert['contract']}`, seed {cert['seed']}, {cert['inputs_tested']} rows, "
        f"domain |x| ≤ {cert['max_abs']:g}.", "",
        "## Findings", "", *[f"- {f}" for f in cert["findings"]], "",
        "## Metrics", "",
        "| quantity | max ulp | max rel | max error/bound | bias (ulps) | SQNR dB | non-finite |",
        "|---|---|---|---|---|---|---|",
        f"| y | {fwd['max_ulp']:.3g} | {fwd['max_rel']:.3g} | {fwd['max_err_over_bound']:.3g} | "
        f"{fwd['mean_signed_err']:+.3g} | {fwd['sqnr_db']:.1f} | {fwd['nonfinite']} |",
    ]
    for quantity, block in cert.get("backward", {}).items():
        lines.append(f"| {quantity} | {block['max_ulp']:.3g} | {block['max_rel']:.3g} | "
                     f"{block['max_err_over_bound']:.3g} | {block['mean_signed_err']:+.3g} | "
                     f"{block['sqnr_db']:.1f} | {block['nonfinite']} |")
    lines += ["", "Per family (forward max error/bound):", "",
              "| family | max error/bound |", "|---|---|",
              *[f"| {k} | {v:.3g} |" for k, v in fwd["max_err_over_bound_by_family"].items() if not k.startswith("domain_")],
              "", "## Safe domain", "", f"`{cert['safe_domain']}`", "",
              f"Worst forward case: `{fwd['worst_case']}`", ""]
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(path, report_dir)})", ""]
    lines += ["## Environment", "", "```", *[f"{k}: {v}" for k, v in cert["environment"].items()], "```", ""]
    return "\n".join(lines)


def write_report(path: str, cert: dict, state) -> None:
    report_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(report_dir):
        from normtheory.errors import UsageError

        raise UsageError(f"{path}: directory {report_dir} does not exist")
    stem = os.path.splitext(os.path.abspath(path))[0]
    figures = _plots(stem, state)
    with open(path, "w") as handle:
        handle.write(render(cert, figures, report_dir))
