"""`normtheory sweep GRID.toml`: `normtheory record` over a grid of kernels and settings, one
recording per cell, on a local process pool, on Slurm job arrays (submitit), or one after the
other. Recordings move between machines; `normtheory check` re-judges them anywhere.

grid.py reads the grid file into cells, cell.py runs one cell (the record command itself, and
optionally the check command), executors.py spreads cells over processes or a cluster.
"""
