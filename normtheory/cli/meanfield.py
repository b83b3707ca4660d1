"""`normtheory meanfield`: mean-field predictions against Monte Carlo measurements.

Runs real torch stacks at initialisation (or re-judges recorded runs with --from), compares
every prediction of meanfield.py with its declared kind and tolerance, prints the table and
the fitted exponents, and exits 0 when every comparison passes, 1 otherwise.
torch and matplotlib are imported inside run(): `normtheory --help` must stay fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from normtheory.errors import UsageError

ARCH_CHOICES = ("post_ln", "pre_ln", "peri_ln", "lns", "pre_rms")
SETUP_CHOICES = ("xiong", "standard")
SCHEMA = "normtheory.meanfield/1"


def configure(parser) -> None:
    parser.add_argument("--arch", default=None,
                        help="comma list of post_ln, pre_ln, peri_ln, lns, pre_rms "
                             "(default post_ln,pre_ln; with --from: every arch recorded)")
    parser.add_argument("--setup", default="xiong",
                        help="comma list of xiong (Xiong et al.'s proof setup), standard (softmax attention)")
    parser.add_argument("--d", default="64", help="comma list of model widths (default 64)")
    parser.add_argument("--L", default="6,12,24,48", help="comma list of depths (default 6,12,24,48)")
    parser.add_argument("--seeds", type=int, default=8, help="independent models per point (>= 2; default 8)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens per sequence (default 16)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--memory-gb", type=float, default=4.0, help="weights + gradients per chunk of seeds")
    parser.add_argument("--from", dest="records", action="append", default=[], metavar="RECORD.json",
                        help="judge recorded measurements instead of running (repeatable; "
                             "--d, --L, --seeds, --setup, --tokens and --device are then not used)")
    parser.add_argument("--record", metavar="OUT.json", help="also save the raw measurements")
    parser.add_argument("--json", metavar="OUT.json", help="write the judged report as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="plot per-layer hidden mean squares and gradients")


def _int_list(text: str, flag: str, minimum: int) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < minimum:
        raise UsageError(f"{flag} values must be integers >= {minimum}, got {text!r}")
    return sorted(set(values))


def _name_list(text: str, flag: str, choices) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in choices]
    if not names or bad:
        raise UsageError(f"{flag}: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(choices)}")
    return names


def _load_records(paths: list[str], archs: list[str] | None) -> list[dict]:
    records = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read record {path}: {exc.__class__.__name__}") from None
        for record in data if isinstance(data, list) else [data]:
            _check_record(record, path)
            if archs is not None:
                kept = [a for a in record["archs"] if a in archs]
                if not kept:
                    continue
                record = dict(record, archs=kept)
            records.append(record)
    if not records:
        raise UsageError("no recorded measurements match --arch")
    return records


def _check_record(record, path: str) -> None:
    try:
        cfg = record["config"]
        ok = (cfg["setup"] in SETUP_CHOICES and int(cfg["d"]) >= 4 and len(record["seeds"]) >= 2
              and all(a in ARCH_CHOICES and a in record["measurements"] for a in record["archs"])
              and all(int(L) >= 1 for L in cfg["depths"]) and int(cfg["n_tokens"]) >= 2)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"{path} is not a normtheory meanfield record")


def _measure(args, archs, setups, widths, depths) -> list[dict]:
    import torch
    from tqdm import tqdm

    from normtheory.theory.meanfield.montecarlo import StackConfig, run_record

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if args.seeds < 2:
        raise UsageError("--seeds must be at least 2 (a standard error needs two samples)")
    if args.tokens < 2:
        raise UsageError("--tokens must be at least 2")
    records = []
    jobs = [(s, d) for s in setups for d in widths]
    with tqdm(total=len(jobs) * len(archs) * args.seeds, file=sys.stderr, desc="meanfield") as bar:
        for setup, d in jobs:
            cfg = StackConfig(setup=setup, d=d, depths=tuple(depths), n_tokens=args.tokens)

            def progress(message, _bar=bar):
                first, last = message.rsplit(" seeds ", 1)[1].split("..")
                _bar.set_postfix_str(message.rsplit(" seeds ", 1)[0])
                _bar.update(int(last) - int(first) + 1)

            records.append(run_record(archs, cfg, list(range(args.seeds)), args.device,
                                      args.memory_gb * 1e9, progress))
    return records


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else ("-inf" if x == -math.inf else f"{x:.4g}")


def print_report(comparisons, out=None) -> None:
    out = out if out is not None else sys.stdout
    header = f"{'verdict':7} {'prediction':28} {'kind':7} {'setup':8} {'arch':7} {'d':>5} {'L':>4}  " \
             f"{'quantity':34} {'measured':>11} {'+-se':>9} {'predicted':>22} {'tol':>9}"
    print(header, file=out)
    for c in comparisons:
        predicted = _fmt(c.lower) if c.lower == c.upper else f"[{_fmt(c.lower)}, {_fmt(c.upper)}]"
        print(f"{c.verdict:7} {c.prediction:28} {c.kind:7} {c.setup:8} {c.arch:7} {c.d:>5} "
              f"{'' if c.L is None else c.L:>4}  {c.quantity:34} {c.measured:>11.5g} {c.se:>9.2g} "
              f"{predicted:>22} {c.tolerance:>9.3g}", file=out)
    exponents = [c for c in comparisons if c.quantity.startswith("exponent")]
    if exponents:
        print("\nfitted exponents in L (interval: +- t*se, t as judged):", file=out)
        seen = set()
        for c in exponents:
            key = (c.setup, c.arch, c.d, c.quantity)
            if key in seen:
                continue
            seen.add(key)
            print(f"  {c.setup:8} {c.arch:7} d={c.d:<5} {c.quantity:34} {c.measured:+.4f} "
                  f"[{c.measured - c.t * c.se:+.4f}, {c.measured + c.t * c.se:+.4f}]", file=out)
    failed = sorted({c.prediction for c in comparisons if c.verdict != "PASS"})
    t = comparisons[0].t if comparisons else float("nan")
    print(f"\n{len(comparisons)} comparisons, Bonferroni family level 5% (t = {t:.3g} at the "
          f"smallest dof); {sum(c.verdict != 'PASS' for c in comparisons)} FAIL"
          + (f" in: {', '.join(failed)}" if failed else ""), file=out)


def run(args) -> int:
    archs = _name_list(args.arch, "--arch", ARCH_CHOICES) if args.arch else None
    if args.records:
        records = _load_records(args.records, archs)
    else:
        setups = _name_list(args.setup, "--setup", SETUP_CHOICES)
        widths = _int_list(args.d, "--d", 4)
        depths = _int_list(args.L, "--L", 1)
        records = _measure(args, archs or ["post_ln", "pre_ln"], setups, widths, depths)
        if args.record:
            _write(args.record, records)

    from normtheory.theory.meanfield.predictions import analyse, comparisons_to_json, verdict

    try:
        comparisons = analyse(records)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if not args.records:
            raise  # our own measurements: a bug, not the user's input
        raise UsageError(f"malformed record ({exc.__class__.__name__}: {exc})") from None
    print_report(comparisons)
    result = verdict(comparisons)
    if args.json:
        _write(args.json, {
            "schema": SCHEMA,
            "verdict": result,
            "family_alpha": 0.05,
            "records": [{"config": r["config"], "archs": r["archs"], "seeds": r["seeds"],
                         "environment": r["environment"], "elapsed_s": r["elapsed_s"]} for r in records],
            "comparisons": comparisons_to_json(comparisons),
        })
    if args.plot:
        plot_records(records, args.plot)
    return 0 if result == "pass" else 1


def _write(path: str, payload) -> None:
    try:
        Path(path).write_text(json.dumps(payload, indent=1, allow_nan=False))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None


def plot_records(records: list[dict], path: str) -> None:
    """Per setup: hidden mean square per layer (widest d, deepest model) with the Pre-LN band;
    last-layer W2 gradient norm against depth, log-log, with the mean-field range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from normtheory.theory.meanfield.predictions import RecordView, hidden_band, last_w2_grad_sq

    views = [RecordView(r) for r in records]
    setups = sorted({v.setup for v in views}, key=SETUP_CHOICES.index)
    fig, axes = plt.subplots(len(setups), 2, figsize=(10, 3.6 * len(setups)), squeeze=False)
    colours = dict(zip(ARCH_CHOICES, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")))
    for row, setup in enumerate(setups):
        mine = [v for v in views if v.setup == setup]
        widest = max(mine, key=lambda v: v.d)
        ax = axes[row][0]
        for arch in widest.archs:
            ms = widest.array(arch, "hidden_ms")
            layers = np.arange(ms.shape[1])
            if arch == "post_ln":  # its h_l is an LN output (exactly 1): show x + FFN(x) instead
                ax.plot(layers[1:], widest.array(arch, "residual_sum_ms").mean(axis=0), color=colours[arch],
                        label="post_ln: x + FFN(x)")
            else:
                ax.plot(layers, ms.mean(axis=0), color=colours[arch], label=arch)
            if arch in ("pre_ln", "lns"):
                g = widest.gains(arch)
                band = np.array([hidden_band(arch, g, int(l)) for l in layers])
                ax.fill_between(layers, band[:, 0], band[:, 1], color=colours[arch], alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
        ax.set_ylabel("E||h_l||^2 / d")
        ax.set_title(f"{setup}, d={widest.d}: hidden mean square (band shaded)", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[row][1]
        for view in mine:
            for arch in view.archs:
                depths = np.array(view.depths)
                sq = np.array([view.grad_sq(arch, L, "w2")[:, L - 1] for L in depths])
                mean = sq.mean(axis=1)
                se = sq.std(axis=1, ddof=1) / np.sqrt(sq.shape[1])
                norm = np.sqrt(mean)
                ax.errorbar(depths, norm, yerr=0.5 * se / norm, color=colours[arch], marker="o", ms=3,
                            label=f"{arch} d={view.d}", alpha=0.5 + 0.5 * (view.d == widest.d))
                if arch == "pre_ln":
                    g = view.gains(arch)
                    lo = [last_w2_grad_sq(arch, g, L, view.n_tokens, hidden_band(arch, g, L)[1]) for L in depths]
                    hi = [last_w2_grad_sq(arch, g, L, view.n_tokens, hidden_band(arch, g, L)[0]) for L in depths]
                    ax.fill_between(depths, np.sqrt(lo), np.sqrt(hi), color=colours[arch], alpha=0.12)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("depth L")
        ax.set_ylabel("||dLoss/dW2 of block L||_F")
        ax.set_title(f"{setup}: last W2 gradient (Pre-LN mean-field range shaded)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=80)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)
