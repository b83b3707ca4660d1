"""`normtheory meanfield`: mean-field claims judged against Monte Carlo measurements.

Runs real torch stacks at initialisation (or re-judges recorded runs with --from), judges
every registered claim the run holds evidence for (theory/claims/registry.py) and prints one
verdict per claim — HOLDS, REFUTED or INCONCLUSIVE (underpowered) — beside its registered
expectation and its minimum detectable effect. Exit 0 when every verdict matches its
expectation, 1 when one differs, 2 on bad input. torch and matplotlib are imported inside
run(): `normtheory --help` must stay fast.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from normtheory.errors import UsageError
from normtheory.output_files import check_outputs, replacing, write_text_file
from normtheory.theory.claims.core import exit_code, judge_all
from normtheory.theory.claims.evidence import Evidence
from normtheory.theory.claims.registry import all_claims
from normtheory.theory.claims.report import format_mde, print_registry, results_to_json
from normtheory.theory.meanfield import recursion
from normtheory.theory.meanfield.constants import constants_of_record
from normtheory.theory.meanfield.predictions import RecordView

ARCH_CHOICES = ("post_ln", "pre_ln", "peri_ln", "lns", "pre_rms", "mix_ln", "hybrid_norm", "normformer", "ngpt",
                "qk_norm")
SETUP_CHOICES = ("xiong", "standard")
READOUT_CHOICES = ("token", "shared")
LOSS_CHOICES = ("linear", "xent")
SCHEMA = "normtheory.meanfield/2"
DEFAULT_TOKENS = 16  # = meanfield.constants.DEFAULT_TOKENS (not imported: --help stays light)


def configure(parser) -> None:
    parser.add_argument("--arch", default=None,
                        help=f"comma list of {', '.join(ARCH_CHOICES)} (default post_ln,pre_ln; with --from: every "
                             "arch recorded)")
    parser.add_argument("--setup", default="xiong",
                        help="comma list of xiong (Xiong et al.'s proof setup), standard (softmax attention)")
    parser.add_argument("--d", default="256", help="comma list of model widths (default 256)")
    parser.add_argument("--L", default="6,12,24,48", help="comma list of depths (default 6,12,24,48)")
    parser.add_argument("--seeds", type=int, default=16,
                        help="independent models per point (>= 2; default 16: per-seed mean squares are skewed, and "
                             "8 seeds give t intervals that undercover)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                        help=f"tokens per sequence (default {DEFAULT_TOKENS}; every report states it)")
    parser.add_argument("--readout", choices=READOUT_CHOICES, default="token",
                        help="loss readout: one u_i per token (default) or one u shared by the tokens")
    parser.add_argument("--loss", choices=LOSS_CHOICES, default="linear",
                        help="linear readout (default) or cross-entropy of a random head against random labels")
    parser.add_argument("--qk-gain", type=float, default=1.0, help="scale W^Q and W^K (sharper attention; default 1)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--memory-gb", type=float, default=4.0, help="weights + gradients per chunk of seeds")
    parser.add_argument("--from", dest="records", action="append", default=[], metavar="RECORD.json",
                        help="judge recorded measurements instead of running (repeatable; the run flags are then "
                             "not used)")
    parser.add_argument("--trained", metavar="EVIDENCE.json",
                        help="trained-model evidence (schema normtheory.trained-evidence/1) for the trained claims")
    parser.add_argument("--record", metavar="OUT.json", help="also save the raw measurements")
    parser.add_argument("--json", metavar="OUT.json", help="write the judged claims as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="plot per-layer hidden mean squares and gradients")
    parser.add_argument("--claims", action="store_true", help="list the registered claims and exit")
    parser.add_argument("--detail", action="store_true", help="print every comparison of every claim")
    parser.add_argument("--allow-underpowered", action="store_true",
                        help="an INCONCLUSIVE (underpowered) verdict does not count as a difference")


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


def _read_json(path: str, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None


def _load_records(paths: list[str], archs: list[str] | None) -> list[dict]:
    records = []
    for path in paths:
        data = _read_json(path, "record")
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
              and all(int(L) >= 1 for L in cfg["depths"]) and int(cfg["n_tokens"]) >= 2
              and cfg.get("readout", "token") in READOUT_CHOICES and cfg.get("loss", "linear") in LOSS_CHOICES)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"{path} is not a normtheory meanfield record")


def _load_trained(path: str | None) -> dict:
    if path is None:
        return {}
    data = _read_json(path, "trained evidence")
    if not isinstance(data, dict) or data.get("schema") != "normtheory.trained-evidence/1" \
            or not isinstance(data.get("claims"), dict):
        raise UsageError(f"{path} is not normtheory.trained-evidence/1")
    return data["claims"]


def _validate_run(args, archs, setups) -> None:
    if args.seeds < 2:
        raise UsageError("--seeds must be at least 2 (a standard error needs two samples)")
    if args.first_seed < 0:
        raise UsageError("--first-seed must be >= 0")
    if args.tokens < 2:
        raise UsageError("--tokens must be at least 2")
    if not args.qk_gain > 0 or not math.isfinite(args.qk_gain):
        raise UsageError("--qk-gain must be a positive number")
    softmax_only = {"ngpt", "qk_norm"} & set(archs)
    if softmax_only and "xiong" in setups:
        raise UsageError(f"--arch {', '.join(sorted(softmax_only))} needs softmax attention: use --setup standard")


def _measure(args, archs, setups, widths, depths) -> list[dict]:
    import torch
    from tqdm import tqdm

    from normtheory.theory.meanfield.montecarlo import StackConfig, run_record

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    _validate_run(args, archs, setups)
    records = []
    jobs = [(s, d) for s in setups for d in widths]
    with tqdm(total=len(jobs) * len(archs) * args.seeds, file=sys.stderr, desc="meanfield") as bar:
        for setup, d in jobs:
            cfg = StackConfig(setup=setup, d=d, depths=tuple(depths), n_tokens=args.tokens, readout=args.readout,
                              loss=args.loss, qk_gain=args.qk_gain)

            def progress(message, _bar=bar):
                first, last = message.rsplit(" seeds ", 1)[1].split("..")
                _bar.set_postfix_str(message.rsplit(" seeds ", 1)[0])
                _bar.update(int(last) - int(first) + 1)

            seeds = list(range(args.first_seed, args.first_seed + args.seeds))
            records.append(run_record(archs, cfg, seeds, args.device,
                                      args.memory_gb * 1e9, progress))
    return records


def print_protocols(records, out=None) -> None:
    """What every record was made with: setup, width, depths, seeds and the protocol."""

    out = out if out is not None else sys.stdout
    for r in records:
        cfg, const = r["config"], constants_of_record(r)
        print(f"record: {cfg['setup']} d={cfg['d']} L={','.join(str(x) for x in cfg['depths'])} seeds={len(r['seeds'])} "
              f"tokens={cfg['n_tokens']} readout={cfg.get('readout', 'token')} loss={cfg.get('loss', 'linear')} "
              f"qk_gain={cfg.get('qk_gain', 1.0):g} d_ff={const['d_ff']} eps={sorted(set(const['eps'].values()))} "
              f"[constants {const['constants_source']}] archs={','.join(r['archs'])}", file=out)


def print_results(results, *, detail: bool = False, out=None) -> None:

    out = out if out is not None else sys.stdout
    print(f"\n{'claim':38} {'verdict':13} {'expected':13} {'':5} {'MDE':>7} {'tests':>7}  reason", file=out)
    for r in results:
        if not r.tests:
            continue
        mark = "ok" if r.matches else ("UNDER" if r.underpowered else "DIFF")
        rejected = sum(t.rejected for t in r.tests)
        print(f"{r.claim.id:38} {r.verdict:13} {r.claim.expectation.upper():13} {mark:5} {format_mde(r):>7} "
              f"{rejected:>3}/{len(r.tests):<3}  {r.reason}", file=out)
        if detail:
            for t in r.tests:
                interval = f"[{t.lower:.4g}, {t.upper:.4g}]" if t.lower != t.upper else f"{t.lower:.4g}"
                print(f"    {'REJECT' if t.rejected else 'ok':6} {t.label:58} {t.quantity:36} {t.measured:.5g} "
                      f"+- {t.se:.2g} vs {interval} (+- {t.model_error + t.systematic:.2g}) p={t.p_value:.2g}", file=out)
    skipped = [r.claim.id for r in results if not r.tests]
    if skipped:
        print(f"\n{len(skipped)} registered claims have no evidence in this run (--claims lists every claim)", file=out)


def run(args) -> int:
    if args.claims:

        print_registry()
        return 0
    _check_outputs(args)
    archs = _name_list(args.arch, "--arch", ARCH_CHOICES) if args.arch else None
    trained = _load_trained(args.trained)
    if args.records:
        records = _load_records(args.records, archs)
    else:
        setups = _name_list(args.setup, "--setup", SETUP_CHOICES)
        records = _measure(args, archs or ["post_ln", "pre_ln"], setups, _int_list(args.d, "--d", 4),
                           _int_list(args.L, "--L", 1))
        if args.record:
            _write(args.record, records)
    results = _judge(records, trained, from_user=bool(args.records))
    print_protocols(records)
    print_results(results, detail=args.detail)

    code = exit_code(results, allow_underpowered=args.allow_underpowered)
    judged = [r for r in results if r.tests]
    differ = [r.claim.id for r in judged if not r.matches and not r.underpowered]
    under = [r.claim.id for r in judged if not r.matches and r.underpowered]
    print(f"\n{len(judged)} claims judged (Holm within each claim, 5%): "
          + ("every verdict matches its expectation" if not differ and not under else "")
          + (f"{len(differ)} differ: {', '.join(differ)}" if differ else "")
          + ("; " if differ and under else "")
          + (f"{len(under)} underpowered (INCONCLUSIVE where a verdict is expected): {', '.join(under)}" if under else "")
          + f" -> exit {code}")
    if args.json:

        _write(args.json, {"schema": SCHEMA, "exit": code, "records": [_record_meta(r) for r in records],
                           "claims": results_to_json(results)})
    if args.plot:
        plot_records(records, args.plot)
    return code


def _judge(records, trained, *, from_user: bool):

    try:
        evidence = Evidence.from_records(records, trained=trained)
        return judge_all(all_claims(), evidence)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if not from_user:
            raise  # our own measurements: a bug, not the user's input
        raise UsageError(f"malformed record ({exc.__class__.__name__}: {exc})") from None


def _record_meta(record: dict) -> dict:

    return {"config": record["config"], "archs": record["archs"], "seeds": record["seeds"],
            "constants": constants_of_record(record), "environment": record["environment"],
            "elapsed_s": record["elapsed_s"]}


def _check_outputs(args) -> None:
    """--json, --record and --plot before any measurement or judging: writable, none of the
    --from or --trained files, and a plot format matplotlib can write."""
    check_outputs([("--json", args.json), ("--record", args.record), ("--plot", args.plot)],
                  inputs=[*args.records, args.trained])
    if args.plot:
        plot_format(args.plot)


def plot_format(path: str) -> str:
    """The image format of --plot, from its extension (png when it has none)."""
    from matplotlib.backend_bases import FigureCanvasBase  # heavy: only with --plot

    chosen = os.path.splitext(path)[1][1:].lower() or "png"
    known = FigureCanvasBase.get_supported_filetypes()
    if chosen not in known:
        raise UsageError(f"--plot {path}: matplotlib cannot write .{chosen}; use one of {', '.join(sorted(known))}")
    return chosen


def _write(path: str, payload) -> None:
    try:
        text = json.dumps(payload, indent=1, allow_nan=False)
    except ValueError as exc:  # a NaN or inf in a record: strict JSON has no such number
        raise UsageError(f"cannot write {path}: {exc}") from None
    write_text_file(path, text)


def plot_records(records: list[dict], path: str) -> None:
    """Per setup: hidden mean square per layer (widest d, deepest model) with the recursion;
    last-layer W2 gradient norm against depth, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    views = [RecordView(r) for r in records]
    setups = sorted({v.setup for v in views}, key=SETUP_CHOICES.index)
    fig, axes = plt.subplots(len(setups), 2, figsize=(10, 3.6 * len(setups)), squeeze=False)
    palette = plt.get_cmap("tab10")
    # the stubs type get_cmap's result as any Colormap and .colors as any ArrayLike: tab10's is a tuple
    if not (isinstance(palette, ListedColormap) and isinstance(palette.colors, tuple)):
        raise TypeError("matplotlib's tab10 is not a ListedColormap with a tuple of colours")
    colours = dict(zip(ARCH_CHOICES, palette.colors))
    for row, setup in enumerate(setups):
        mine = [v for v in views if v.setup == setup]
        _plot_hidden(axes[row][0], max(mine, key=lambda v: v.d), colours)
        _plot_gradients(axes[row][1], mine, colours)
    fig.tight_layout()
    try:
        # the format named: the temporary's suffix is --plot's, and matplotlib would append .png
        # to a name without one
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=80, format=plot_format(path))
    finally:
        plt.close(fig)


def _plot_hidden(ax, view, colours) -> None:
    import numpy as np


    for arch in view.archs:
        ms = view.array(arch, "hidden_ms")
        layers = np.arange(ms.shape[1])
        key = "residual_sum_ms" if arch == "post_ln" else None
        if key:  # its h_l is an LN output (exactly 1): show x + FFN(x) instead
            ax.plot(layers[1:], view.array(arch, key).mean(axis=0), color=colours[arch], label="post_ln: x + FFN(x)")
        else:
            ax.plot(layers, ms.mean(axis=0), color=colours[arch], label=arch)
        if arch in recursion.RECURSION_ARCHS and arch not in ("mix_ln", "post_ln"):
            m = recursion.forward(arch, view.setup, view.d, int(layers[-1]), view.n_tokens, gain=view.qk_gain).m
            ax.plot(layers, m, color=colours[arch], ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("layer l")
    ax.set_ylabel("E||h_l||^2 / d")
    ax.set_title(f"{view.setup}, d={view.d}: hidden mean square (dotted: recursion)", fontsize=9)
    ax.legend(fontsize=7)


def _plot_gradients(ax, views, colours) -> None:
    import numpy as np

    widest = max(v.d for v in views)
    for view in views:
        for arch in view.archs:
            depths = np.array(view.depths)
            sq = np.array([view.grad_sq(arch, L, "w2")[:, L - 1] for L in depths])
            mean = sq.mean(axis=1)
            se = sq.std(axis=1, ddof=1) / np.sqrt(sq.shape[1])
            norm = np.sqrt(mean)
            ax.errorbar(depths, norm, yerr=0.5 * se / norm, color=colours[arch], marker="o", ms=3,
                        label=f"{arch} d={view.d}", alpha=0.5 + 0.5 * (view.d == widest))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel("||dLoss/dW2 of block L||_F")
    ax.set_title(f"{views[0].setup}: last W2 gradient", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
