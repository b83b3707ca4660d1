"""Markdown report of a certification, with three plots written next to it:
error/bound vs |mean|/std per row, the histogram of per-row max ulps, and the safe-domain
probes (error/bound vs input scale)."""

from __future__ import annotations

import os

import numpy as np

from normtheory.output_files import check_outputs, replacing, write_text_file

ZERO_FLOOR = 1e-6  # rows with no error at all are drawn at this error/bound, and labelled so
ULP_FLOOR = 1e-3
HOW_TO_READ = """\
## How to read these numbers

- **error/bound** is what the verdict rests on: the error of the kernel's output against the
  exact result (correctly rounded to fp32), divided by what the contract allows at that very
  input. At most 1 everywhere is a pass. For a bf16, fp16 or fp8 output most of the bound is
  the final rounding's half ulp, so a correct kernel shows error/bound close to 1 wherever the
  exact value lies near the middle between two representable numbers: **error/bound ≈ 1 on a
  pass is the output rounding's half ulp**, not a warning.
- **ulps** measure the error against the output's own spacing. They are large where the exact
  value is tiny next to the rest of its row (cancellation) or where the input is
  ill-conditioned (|mean|/std ≥ 1e4 for LayerNorm): there the bound allows many ulps, and the
  table says how many at the element with the largest ulp error.
- **normwise rel** is max |error| / max |exact| per row (per vector for gw and gb). The
  certificate's componentwise `max_rel` is 1 whenever a kernel returns 0 for a tiny exact value,
  which a correct kernel may do; it is in the JSON, not here.
- **SQNR** sums signal and error energy over every row, ill-conditioned families included;
  the per-family table shows where it is low.
"""


def _markers(labels):
    """(colour, marker) per label: 10 colours × 3 markers, so 13 families never share a look."""
    import matplotlib.pyplot as plt  # heavy: only when a report is written

    colours = plt.get_cmap("tab10").colors
    return {label: (colours[i % 10], "osD^v"[i // 10 % 5]) for i, label in enumerate(labels)}


def _error_vs_offset(plt, log, path: str) -> None:
    labels = sorted({entry[0] for entry in log})
    looks = _markers(labels)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in labels:
        points = np.array([(off, ratio) for lab, off, ratio, _ in log if lab == label])
        colour, marker = looks[label]
        ax.scatter(np.clip(points[:, 0], 1e-3, 1e12), np.clip(points[:, 1], ZERO_FLOOR, 1e6), s=10, color=colour,
                   marker=marker, label=label)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="bound (error/bound = 1)")
    ax.axhline(ZERO_FLOOR, color="0.6", lw=0.8, ls=":", label=f"error 0 (drawn at {ZERO_FLOOR:g})")
    ax.set(xscale="log", yscale="log", xlabel="|mean| / std of the row", ylabel="max error / bound in the row",
           title="forward error against the contract")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(plt, fig, path)


def _ulp_histogram(plt, log, path: str) -> None:
    ulps = np.array([min(entry[3], 1e9) for entry in log])
    exact = int(np.count_nonzero(ulps == 0))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.log10(ulps[ulps > 0]) if exact < ulps.size else [], bins=40, label="rows with an error")
    if exact:
        ax.bar([np.log10(ULP_FLOOR)], [exact], width=0.15, color="0.5", label=f"{exact} rows with no error (at 1e-3)")
    ax.set(xlabel="log10(max ulps in the row)", ylabel="rows", title="forward error in ulps of the output format")
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def _safe_domain(plt, probes, path: str) -> None:
    probes = sorted(probes)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    mags = [p[0] for p in probes]
    ratios = [min(max(p[1], ZERO_FLOOR), 1e6) if p[2] else 1e6 for p in probes]
    colours = ["tab:green" if (p[2] and p[1] <= 1) else "tab:red" for p in probes]
    ax.scatter(mags, ratios, c=colours)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="max |x| of the probe row",
           ylabel=f"error / bound (1e6: non-finite, {ZERO_FLOOR:g}: error 0)", title="safe-domain bisection")
    _save(plt, fig, path)


def _save(plt, fig, path: str) -> None:
    fig.tight_layout()
    try:
        with replacing(path) as tmp:  # same suffix (.png): savefig picks the format from it
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


# the plots beside a report REPORT.md: REPORT<suffix>.png (the names _plots gives them)
PLOT_SUFFIXES = ("_error_vs_offset", "_ulp_histogram", "_safe_domain")


def report_paths(path: str) -> list[str]:
    """Every file `write_report(path, ...)` may write: the report and its plots (checked
    before a certification runs, like the report itself)."""
    stem = os.path.splitext(path)[0]
    return [path] + [f"{stem}{suffix}.png" for suffix in PLOT_SUFFIXES]


def _plots(stem: str, state) -> list[tuple[str, str]]:
    import matplotlib  # heavy: only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    log = [(label, off, ratio, ulp) for label, off, ratio, ulp in state.row_log if np.isfinite(off)]
    if log:
        _error_vs_offset(plt, log, f"{stem}_error_vs_offset.png")
        written.append(("Error vs |mean|/std", f"{stem}_error_vs_offset.png"))
        _ulp_histogram(plt, log, f"{stem}_ulp_histogram.png")
        written.append(("Error histogram", f"{stem}_ulp_histogram.png"))
    if state.domain_probes:
        _safe_domain(plt, state.domain_probes, f"{stem}_safe_domain.png")
        written.append(("Safe domain", f"{stem}_safe_domain.png"))
    return written


def _number(value: float | None, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _metrics_rows(cert: dict) -> list[str]:
    rows = ["| quantity | max error/bound | max ulps | bound there (ulps) | normwise rel | bias (ulps) | SQNR dB | "
            "non-finite |", "|---|---|---|---|---|---|---|---|"]
    for quantity, block in [("y", cert["forward"])] + list(cert.get("backward", {}).items()):
        case = block.get("max_ulp_case") or {}
        rows.append(f"| {quantity} | {_number(block['max_err_over_bound'])} | {_number(block['max_ulp'])} "
                    f"({case.get('label', '—')}) | {_number(case.get('bound_ulps'))} | "
                    f"{_number(block.get('max_rel_normwise'))} | {_number(block['mean_signed_err'], '+.3g')} | "
                    f"{_number(block['sqnr_db'], '.1f')} | {block['nonfinite']} |")
    return rows


def _family_rows(forward: dict) -> list[str]:
    rows = ["| family | max error/bound | SQNR dB |", "|---|---|---|"]
    sqnr = forward.get("sqnr_db_by_family") or {}
    for family, ratio in forward["max_err_over_bound_by_family"].items():
        if not family.startswith("domain_"):
            rows.append(f"| {family} | {ratio:.3g} | {_number(sqnr.get(family), '.1f')} |")
    return rows


def safe_domain_text(domain: object) -> str:
    """The safe-domain bisection in a sentence."""
    if not isinstance(domain, dict) or not domain:
        return f"Safe domain: {domain or 'not measured'}."
    if domain.get("max_abs") is None:
        return "The kernel fails the contract on normal rows with max |x| = 1: no safe domain."
    top = domain.get("overflow_or_failure_from")
    bottom = domain.get("collapse_below")
    text = (f"Rows whose largest entry lies between {domain['min_abs']:g} and {domain['max_abs']:g} pass "
            f"(certified domain |x| ≤ {domain['certified_max_abs']:g}; {domain['probes']} probe rows).")
    if top is not None:
        text += f" From max |x| = {top:g} up the outputs overflow or break the bound."
    if bottom is not None:
        text += f" Below {bottom:g} the outputs collapse."
    return text


def worst_case_text(name: str, case: dict) -> str:
    if not case:
        return f"Worst {name} case: none judged."
    index = ", ".join(str(i) for i in case.get("index", []))
    return (f"Worst {name} case: {case['label']} rows, element [{index}]: the kernel gave {case['got']!r}, the exact "
            f"value is {case['reference_fp32']!r} ({case['ulps']:.3g} ulps, error/bound {case['err_over_bound']:.3g}).")


def render(cert: dict, figures: list[tuple[str, str]], report_dir: str) -> str:
    fwd = cert["forward"]
    lines = [
        f"# Certificate: `{cert['kernel']}` — **{cert['verdict'].upper()}**", "",
        f"{cert['op']}, format {cert['format']} (weights {cert['w_format']}, output {cert['out_format']}), "
        f"d = {cert['d']}, eps = {cert['eps']:g} ({cert['eps_mode']}), affine {cert['affine']}, "
        f"contract `{cert['contract']}`, seed {cert['seed']}, {cert['inputs_tested']} rows, "
        f"domain |x| ≤ {cert['max_abs']:g}.", "",
        "## Findings", "", *[f"- {f}" for f in cert["findings"]], "",
        "## Metrics", "", *_metrics_rows(cert), "",
        "Per family (forward):", "", *_family_rows(fwd), "",
        "## Safe domain", "", safe_domain_text(cert["safe_domain"]), "",
        worst_case_text("forward", fwd["worst_case"]), "",
        HOW_TO_READ,
    ]
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(path, report_dir)})", ""]
    lines += ["## Environment", "", "```", *[f"{k}: {v}" for k, v in cert["environment"].items()], "```", ""]
    return "\n".join(lines)


def write_report(path: str, cert: dict, state) -> None:
    check_outputs(("--report", p) for p in report_paths(path))
    report_dir = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.abspath(path))[0]
    figures = _plots(stem, state)
    write_text_file(path, render(cert, figures, report_dir))
