"""Hypothesis-guided search for the input that maximizes error / bound.

Each example is one row built from continuous knobs — scale, |mean|/std offset, relative
spread (near-constant rows), outliers, sparsity, weight magnitude — that the structured
families only sample at a few fixed points. `hypothesis.target` steers the search towards
large error/bound (forward and backward). No example database (a certificate must not
depend on earlier runs) and a fixed seed: the same seed gives the same search.
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings, target
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from hypothesis.internal.conjecture import providers  # the source-constants pool: see _isolated_hypothesis

try:
    from hypothesis.internal.constants_ast import Constants
except ImportError:  # a hypothesis without source constants
    Constants = None  # type: ignore[assignment,misc]

from normtheory.certify import inputs as input_gen
from normtheory.certify.runner import Batch, KernelFault


def _row(knobs, c) -> tuple[np.ndarray, np.random.Generator]:
    fmt = c.setting.fmt
    rng = np.random.default_rng([c.seed, 40_000, knobs["rng"]])
    z = rng.standard_normal(c.n)
    z = np.where(rng.random(c.n) < knobs["sparsity"], 0.0, z)
    row = 10.0 ** knobs["offset_log10"] * knobs["sign"] + z * 2.0 ** knobs["spread_log2"]
    for position, magnitude in knobs["outliers"]:
        row[position % c.n] = magnitude * np.sign(row[position % c.n] or 1.0)
    peak = np.max(np.abs(row))
    if peak > 0:
        if knobs["eps_relative_log2"] is not None and c.setting.eps > 0:
            rms = math.sqrt(np.mean(row**2)) / peak
            row = row / peak / rms * math.sqrt(c.setting.eps) * 2.0 ** (knobs["eps_relative_log2"] + knobs["scale_fraction"])
        else:
            row = row / peak * 2.0 ** (knobs["scale_log2"] + knobs["scale_fraction"])
    return input_gen.clip_to_domain(fmt.round_to_float64(row[None, :], saturate=True), c.max_abs, fmt), rng


def _knobs(c):
    fmt = c.setting.fmt
    k_top = math.floor(math.log2(c.max_abs))
    return st.fixed_dictionaries({
        "rng": st.integers(0, 2**32 - 1),
        # log-scale knobs as integer binades plus a fraction: hypothesis spreads integers
        # evenly over a range, while its float draws crowd the end points
        "scale_log2": st.integers(fmt.emin - 2, k_top),
        "scale_fraction": st.floats(0, 1),
        # or a scale relative to √eps: the crossover where eps starts to dominate the statistic
        "eps_relative_log2": st.one_of(st.none(), st.integers(-12, 12)),
        "offset_log10": st.integers(-3, 7),
        "sign": st.sampled_from([-1.0, 1.0]),
        "spread_log2": st.integers(-40, 4),
        "sparsity": st.floats(0, 1),
        "outliers": st.lists(st.tuples(st.integers(0, 2**16), st.floats(10, 1e4)), max_size=3),
        "weight_log2": st.floats(-3, 6),
    })


def hypothesis_search(certifier, examples: int) -> None:
    """Two seeded runs: broad exploration (generation only) with 60% of the examples, then
    targeted hill-climbing on error/bound with the rest. (Targeting alone spends half its
    examples climbing from the first good-looking row, and error/bound of a correct-looking
    output is flat — about the final rounding's half ulp — so it needs a broad start.)"""
    found: dict = {"worst": 0.0, "quantity": None, "batch": None, "outputs": None, "fault": None, "examples": 0}
    explore_examples = max(1, int(examples * 0.6))
    with _isolated_hypothesis():
        _run(certifier, found, explore_examples, (Phase.generate,))
        if examples - explore_examples > 0 and found["fault"] is None:
            _run(certifier, found, examples - explore_examples, (Phase.generate, Phase.target), salt=1)
    state = certifier.state
    state.search = {"examples": found["examples"], "max_err_over_bound": found["worst"], "quantity": found["quantity"],
                    "worst_row": None if found["batch"] is None else describe_row(found["batch"], certifier.config)}
    if found["batch"] is not None:
        state.worst["search"] = (found["worst"], found["batch"], found["outputs"])
    if found["fault"] is not None:
        raise found["fault"]


@contextmanager
def _isolated_hypothesis():
    """The search depends on the seed alone, and leaves nothing behind.

    Hypothesis (6.13x on) also draws, now and then, numbers it found in the source of the
    "local" modules loaded in the process — normtheory's own files, the user's kernel module,
    whatever a test session imported — and caches them under ./.hypothesis. A certificate would
    then change with any edit of a number anywhere in normtheory, and differ between the command
    line and a test session with the same seed. So, for the search only, that pool is emptied
    (and hypothesis' cache of it cleared), and hypothesis' storage is a temporary directory; the
    previous state is restored afterwards. Hypothesis versions without the pool are left as
    they are."""
    try:
        previous_home = storage_directory(intent_to_write=False).home_directory
    except TypeError:  # a hypothesis older than its source-constants cache
        previous_home = None
    pool = getattr(providers, "_get_local_constants", None) if Constants is not None else None
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    with tempfile.TemporaryDirectory(prefix="normtheory-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        if pool is not None:
            providers._get_local_constants = Constants  # an empty pool
        if cache is not None:
            cache.clear()
        try:
            yield
        finally:
            if pool is not None:
                providers._get_local_constants = pool
            if cache is not None:
                cache.clear()
            set_hypothesis_home_dir(previous_home)


def describe_row(batch: Batch, config) -> dict:
    """The search's worst row in real numbers (what a reader can act on; the knobs that made it
    are hypothesis' business)."""
    x = batch.x[0]
    peak = float(np.max(np.abs(x)))
    rms = float(np.sqrt(np.mean(x**2)))
    spread = float(np.std(x))
    return {"max_abs": peak, "mean_over_std": abs(float(np.mean(x))) / spread if spread > 0 else float("inf"),
            "peak_over_rms": peak / rms if rms > 0 else 0.0, "zero_fraction": float(np.mean(x == 0)),
            "max_abs_weight": float(np.max(np.abs(batch.w))) if batch.w is not None else 1.0}


def _run(certifier, found, examples, phases, salt=0):
    c = certifier.config

    @seed(c.seed * 2 + salt)
    @settings(max_examples=max(examples, 1), database=None, deadline=None, derandomize=False,
              phases=phases, suppress_health_check=list(HealthCheck))
    @given(knobs=_knobs(c))
    def explore(knobs):
        if found["fault"] is not None:
            return
        batch = _batch(knobs, c)
        try:
            comparisons = certifier.run_batch(batch)
        except KernelFault as fault:
            found["fault"] = fault
            return
        found["examples"] += 1
        ratios = {q: float(np.max(np.where(np.isnan(cmp.ratio), 0.0, cmp.ratio))) for q, cmp in comparisons.items()}
        quantity = max(ratios, key=lambda q: ratios[q])
        target(min(ratios[quantity], 1e300), label="error/bound")  # hypothesis needs a finite target
        if ratios[quantity] > found["worst"]:
            found.update(worst=ratios[quantity], quantity="forward" if quantity == "y" else f"backward {quantity}",
                         batch=batch, outputs=certifier.last_outputs)

    explore()


def _batch(knobs, c) -> Batch:
    x, rng = _row(knobs, c)
    w, b = input_gen.draw_affine(rng, c.n, c.setting.w_fmt, c.setting.affine)
    if w is not None:
        w = c.setting.w_fmt.round_to_float64(w / 64 * 2.0 ** knobs["weight_log2"], saturate=True)
    gy = c.setting.fmt.round_to_float64(rng.standard_normal(x.shape), saturate=True) if c.backward else None
    residual = np.zeros_like(x) if c.setting.fused else None
    return Batch(x, w, b, gy, residual, label="search")
