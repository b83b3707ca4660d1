"""Forward+backward step time of Pre-LN vs its Pre-RMSNorm and Pre-CRMSNorm conversions.

Jiang et al. (2023) report normalised times 0.9699 (Pre-RMS) and 0.9783 (Pre-CRMS) on an
A100, and a 1.5% training speed-up for GPT-3 Small. This script measures the same ratio for
GPT-2-small shapes (d 768, 12 layers, 12 heads, vocab 50257, sequence 1024) on one machine,
in one run: the three variants are timed round-robin (the order rotated every round) so that
clock and thermal drift hit all of them alike, and the ratios are of medians.

Models: normtheory's reference decoder and, when transformers is importable, HF GPT-2 (the
untouched GPT2LMHeadModel vs the converted ones). The converted weights come from the
converter (fp64, then cast), so the three models compute the same function. Each mode:
`eager`, and `compile` (torch.compile of every block, "regional" compilation: one graph
reused by all blocks; embeddings, head and loss stay eager). A step is forward, fp32
cross-entropy, backward; no optimizer step (it costs the same for all variants up to the
absent LayerNorm parameters).

    PYTHONUNBUFFERED=1 python benchmarks/equivalence_speed.py --device cuda --json speed.json
    python benchmarks/equivalence_speed.py --tiny --device cpu --modes eager   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from normtheory.theory.equivalence.convert import convert_reference  # noqa: E402
from normtheory.theory.equivalence.models import DecoderConfig, crms_norm, random_decoder  # noqa: E402

VARIANTS = ("layernorm", "rmsnorm", "crmsnorm")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def reference_models(shapes, device, dtype):
    cfg = DecoderConfig(vocab=shapes["vocab"], d=shapes["d"], n_layers=shapes["layers"], n_heads=shapes["heads"],
                        max_len=shapes["seq"], activation="gelu_tanh", tie_head=True)
    original = random_decoder(cfg, 0)
    models = {"layernorm": original}
    for target in VARIANTS[1:]:
        models[target] = convert_reference(original, target)
    return {k: m.to(device=device, dtype=dtype).train() for k, m in models.items()}, "reference"


def gpt2_models(shapes, device, dtype):
    from normtheory.theory.equivalence.gpt2 import convert_gpt2, random_gpt2

    original = random_gpt2(d=shapes["d"], n_layer=shapes["layers"], n_head=shapes["heads"], vocab=shapes["vocab"],
                           n_positions=shapes["seq"], seed=0)
    models = {"layernorm": original}
    for target in VARIANTS[1:]:
        models[target] = convert_gpt2(original, target)
    return {k: m.to(device=device, dtype=dtype).train() for k, m in models.items()}, "hf-gpt2"


def compile_blocks(model):
    blocks = model.blocks if hasattr(model, "blocks") else model.transformer.h
    for block in blocks:
        block.compile()


def make_step(model, idx, labels):
    def step():
        out = model(idx)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1)).backward()
        for p in model.parameters():
            p.grad = None
    return step


def time_round_robin(steps: dict, rounds: int, warmup: int, device) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    if device == "cuda":
        torch.cuda.synchronize()
    times = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                steps[name]()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    return times


def norm_only(shapes, device, dtype, compiled: bool, rounds: int, warmup: int):
    """The norms alone, forward+backward on (batch·seq, d) rows."""
    rows, d, eps = shapes["batch"] * shapes["seq"], shapes["d"], 1e-5
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(rows, d, generator=gen).to(device=device, dtype=dtype)
    x = x - x.mean(-1, keepdim=True)
    w = torch.ones(d, device=device, dtype=dtype, requires_grad=True)
    b = torch.zeros(d, device=device, dtype=dtype, requires_grad=True)
    fns = {
        "layernorm": (lambda t: F.layer_norm(t, (d,), w, b, eps), x),
        "rmsnorm": (lambda t: F.rms_norm(t, (d,), None, eps), x),
        "crmsnorm": (lambda t: crms_norm(t, d, eps), x[:, :-1].contiguous()),
    }
    gy = {k: torch.randn_like(inp) for k, (_, inp) in fns.items()}
    steps = {}
    for name, (fn, inp) in fns.items():
        fn = torch.compile(fn) if compiled else fn
        leaf = inp.clone().requires_grad_(True)

        def step(fn=fn, leaf=leaf, g=gy[name]):
            fn(leaf).backward(g)
            leaf.grad = None
        steps[name] = step
    return time_round_robin(steps, rounds, warmup, device)


def gemm_alignment(shapes, device, dtype, rounds: int, warmup: int) -> dict:
    """fwd+bwd of each residual-stream linear map with width d and d - 1 (CRMSNorm's width):
    a bf16 row of 767 elements is not 16-byte aligned, which cuBLAS pays for."""
    rows, d = shapes["batch"] * shapes["seq"], shapes["d"]
    maps = {"attn_in": ("r", 3 * d), "attn_out": (d, "r"), "fc_in": ("r", 4 * d), "fc_out": (4 * d, "r"),
            "head": ("r", shapes["vocab"])}
    out = {}
    for name, (fan_in, fan_out) in maps.items():
        steps = {}
        for label, r in (("layernorm", d), ("crmsnorm", d - 1)):
            i, o = (r if fan_in == "r" else fan_in), (r if fan_out == "r" else fan_out)
            x = torch.randn(rows, i, device=device, dtype=dtype, requires_grad=True)
            w = torch.randn(o, i, device=device, dtype=dtype, requires_grad=True)
            g = torch.randn(rows, o, device=device, dtype=dtype)

            def step(x=x, w=w, g=g):
                F.linear(x, w).backward(g)
                x.grad = w.grad = None
            steps[label] = step
        times = time_round_robin(steps, rounds, warmup, device)
        medians = {k: statistics.median(v) for k, v in times.items()}
        out[name] = {"median_s_width_d": medians["layernorm"], "median_s_width_d_minus_1": medians["crmsnorm"],
                     "ratio": medians["crmsnorm"] / medians["layernorm"]}
    return out


def summarise(times: dict[str, list[float]]) -> dict:
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians["layernorm"]
    return {"median_s": medians, "ratio_to_layernorm": {k: v / base for k, v in medians.items()},
            "rounds": len(times["layernorm"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--models", default="reference,gpt2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="small shapes for a CPU smoke test")
    parser.add_argument("--budget-s", type=float, default=240.0, help="skip what is left after this many seconds")
    parser.add_argument("--gemm-alignment", action="store_true",
                        help="also time each linear map at width d and d - 1 (why CRMSNorm can be slower)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available", file=sys.stderr)
        return 2
    shapes = dict(d=768, layers=12, heads=12, vocab=50257, seq=1024, batch=args.batch)
    if args.tiny:
        shapes = dict(d=64, layers=2, heads=4, vocab=128, seq=32, batch=2)
    dtype = DTYPES[args.dtype]
    started = time.perf_counter()
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "dtype": args.dtype, "shapes": shapes}
    results = {"environment": env, "runs": []}
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, shapes["vocab"], (shapes["batch"], shapes["seq"]), generator=gen).to(args.device)
    labels = torch.randint(0, shapes["vocab"], (shapes["batch"], shapes["seq"]), generator=gen).to(args.device)
    if args.gemm_alignment:
        results["gemm_alignment"] = gemm_alignment(shapes, args.device, dtype, args.rounds, args.warmup)
        for name, r in results["gemm_alignment"].items():
            print(f"gemm {name}: width d {r['median_s_width_d'] * 1e3:.4f} ms, d-1 {r['median_s_width_d_minus_1'] * 1e3:.4f} ms, "
                  f"ratio {r['ratio']:.3f}")
    for mode in filter(None, args.modes.split(",")):
        if time.perf_counter() - started > args.budget_s:
            print(f"budget spent: skipping {mode}")
            break
        t0 = time.perf_counter()
        summary = summarise(norm_only(shapes, args.device, dtype, mode == "compile", args.rounds * 4, args.warmup))
        results["runs"].append({"model": "norm-only", "mode": mode, **summary})
        print(f"norm-only {mode}: {json.dumps(summary['ratio_to_layernorm'])} ({time.perf_counter() - t0:.0f} s)")
        for which in args.models.split(","):
            if time.perf_counter() - started > args.budget_s:
                print(f"budget spent: skipping {which} {mode}")
                continue
            try:
                models, label = (reference_models if which == "reference" else gpt2_models)(shapes, args.device, dtype)
            except ImportError as exc:
                print(f"skipping {which}: {exc}")
                continue
            t0 = time.perf_counter()
            if mode == "compile":
                for m in models.values():
                    compile_blocks(m)
            steps = {k: make_step(m, idx, labels) for k, m in models.items()}
            summary = summarise(time_round_robin(steps, args.rounds, args.warmup, args.device))
            results["runs"].append({"model": label, "mode": mode, **summary})
            print(f"{label} {mode}: medians {json.dumps({k: round(v * 1e3, 3) for k, v in summary['median_s'].items()})} ms; "
                  f"ratios {json.dumps({k: round(v, 4) for k, v in summary['ratio_to_layernorm'].items()})} "
                  f"({time.perf_counter() - t0:.0f} s)")
            del models, steps
            if args.device == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
