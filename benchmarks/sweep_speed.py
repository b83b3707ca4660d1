"""Wall time of `normtheory sweep` on one grid, one executor after another, as ratios to the
sequential run measured in this same run (recordings written to a temporary directory).

    PYTHONPATH=. python benchmarks/sweep_speed.py [--d 1024,4096] [--rows-per-family 8]
        [--executors sequential,local,submitit] [--check]

The grid: torch.rms_norm and torch.layer_norm × bf16, fp16, fp32 × the widths given. Each
executor starts its own processes (spawn, or submitit's local jobs), so their start-up is part
of what is timed; machines are shared, read the ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

GRID = """out = "{out}"
check = {check}

[[kernel]]
name = "torch.rms_norm"
op = "rmsnorm"

[[kernel]]
name = "torch.layer_norm"
op = "layernorm"

[grid]
format = ["bf16", "fp16", "fp32"]
d = [{widths}]

[options]
rows_per_family = {rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", default="1024,4096")
    parser.add_argument("--rows-per-family", type=int, default=8)
    parser.add_argument("--executors", default="sequential,local,submitit")
    parser.add_argument("--check", action="store_true", help="also judge every recording (normtheory check)")
    args = parser.parse_args()
    from normtheory.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        grid = os.path.join(tmp, "grid.toml")
        with open(grid, "w") as handle:
            handle.write(GRID.format(out="recs", check=str(args.check).lower(), widths=args.d, rows=args.rows_per_family))
        first = None
        print(f"{'executor':12} {'cells':>5} {'wall s':>7} {'vs first':>8} {'exit':>4}")
        for executor in args.executors.split(","):
            extra = ["--cluster", "local"] if executor == "submitit" else []
            start = time.perf_counter()
            code = cli(["sweep", grid, "--executor", executor, "--out", os.path.join(tmp, executor), *extra])
            wall = time.perf_counter() - start
            first = first or wall
            cells = len([n for n in os.listdir(os.path.join(tmp, executor)) if n.endswith(".npz")])
            print(f"{executor:12} {cells:5d} {wall:7.1f} {wall / first:8.2f} {code:4d}", flush=True)


if __name__ == "__main__":
    main()
