"""`certify(config)`: run a kernel over the certified domain and judge it.

Order of work (each step spends part of the row budget): structured families → NaN/inf
propagation probe → determinism (one rerun per family batch, bit for bit) → safe-domain bisection →
hypothesis-guided search. A kernel fault (raise, wrong shape/dtype, no gradient) ends the run
with a `fail` certificate naming the fault.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normtheory.certify import domain, search
from normtheory.certify import inputs as input_gen
from normtheory.certify.explain import explain_all
from normtheory.certify.inputs import CapturedInputs
from normtheory.certify.judge import hidden_mismatches, judge_batch, normalized_input, reference
from normtheory.certify.metrics import Comparison, Summary
from normtheory.certify.runner import Batch, CallSpec, KernelFault, run_kernel
from normtheory.certify.setting import Setting, scaling_name
from normtheory.errors import UsageError
from normtheory.formats import FloatFormat, get_format
from normtheory.kernels.catalog import Kernel

FAMILY_SHARE, SEARCH_SHARE = 0.7, 0.2  # of the row budget; the rest goes to the domain probes
NAN_PROBE_ROWS = 2
WORKERS_ENV = "NORMTHEORY_WORKERS"  # processes judging family batches (default: every core)
PARALLEL_FROM = 2**20  # family elements below which judging stays in this process (a pool costs seconds)


@dataclass
class Config:
    kernel: Kernel
    setting: Setting
    d: int
    n: int  # entries per kernel row (d − 1 for crmsnorm)
    max_abs: float
    seed: int = 0
    budget: int = 512
    device: str = "cpu"
    autocast: bool = False
    backward: bool = True
    search: bool = True
    captured: CapturedInputs | None = None  # --inputs, loaded and checked before any kernel runs
    families: tuple[str, ...] = ()
    backward_note: str | None = None  # why the backward pass is not certified, when it is not
    workers: int | None = None  # judging processes (None: NORMTHEORY_WORKERS, else every core)


@dataclass
class RunState:
    """Everything measured so far; the certificate and the report are built from it."""

    forward: Summary = field(default_factory=Summary)
    backward: dict = field(default_factory=dict)  # quantity -> Summary
    rows_tested: int = 0
    faults: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    row_log: list = field(default_factory=list)  # (label, |mean|/std, forward max ratio, max ulp)
    worst: dict = field(default_factory=dict)  # "forward"/"backward" -> (ratio, batch, outputs)
    hidden_mismatch: int = 0
    deterministic: bool | None = None
    domain: dict = field(default_factory=dict)
    domain_probes: list = field(default_factory=list)  # (magnitude, ratio, finite)
    search: dict = field(default_factory=dict)
    kernel_seconds: float = 0.0
    out_fmt: FloatFormat | None = None
    explanations: dict | None = None  # {quantity: [(model, max error/bound)]} once explain ran
    domain_failures: int = 0  # safe-domain bisection found the contract broken inside the domain
    backward_skipped: str | None = None  # why the backward pass is not certified, when it is not


class Certifier:
    def __init__(self, config: Config, progress: Any = None) -> None:
        self.config = config
        self.state = RunState()
        self.progress = progress
        self.judged: list = []  # family batches with outputs and reference, for explain.py
        self.last_outputs: dict = {}
        s = config.setting
        self.call_spec = CallSpec(s.fmt, s.w_fmt, s.out_fmt, s.eps, s.p, s.fused, config.device, config.autocast,
                                  None if s.scaling is None else scaling_name(s.scaling))

    # -- one batch -------------------------------------------------------------------------
    def run_batch(self, batch: Batch, *, backward: bool | None = None, keep: bool = False) -> dict:
        """Run and judge a batch; returns {quantity: Comparison}. KernelFault propagates.
        `keep` stores (batch, outputs, reference) for explaining a failure afterwards."""
        outputs, out_fmt = self._run_kernel(batch, backward)
        ref = reference(batch, self.config.setting)
        comparisons = judge_batch(batch, outputs, self.config.setting, out_fmt, ref=ref)
        return self._judged(batch, outputs, ref, comparisons, keep)

    def _run_kernel(self, batch: Batch, backward: bool | None = None) -> tuple[dict[str, np.ndarray | str], FloatFormat]:
        backward = self.config.backward if backward is None else backward
        start = time.perf_counter()
        outputs = run_kernel(self.config.kernel.fn, batch, self.call_spec, backward=backward)
        self.state.kernel_seconds += time.perf_counter() - start
        return outputs, self._output_format(outputs)

    def _judged(self, batch: Batch, outputs: dict, ref: dict[str, np.ndarray], comparisons: dict[str, Comparison],
                keep: bool) -> dict[str, Comparison]:
        self.last_outputs = outputs  # the search keeps its worst row's outputs
        if keep:
            self.judged.append((batch, outputs, ref))
        self._record(batch, outputs, comparisons)
        if self.progress is not None:
            self.progress.update(batch.x.shape[0])
        return comparisons

    def run_batches(self, batches: list) -> None:
        """Family batches (kept for explain.py): every kernel call here, in order; with several
        workers their judging (reference and bounds) runs in other processes, and the results
        are recorded in the same order — the certificate does not depend on the worker count."""
        workers = min(judging_workers(self.config), len(batches))
        if workers <= 1 or sum(b.x.size for b in batches) < PARALLEL_FROM:
            for batch in batches:
                self.run_batch(batch, keep=True)
            return
        ran, fault = [], None
        for batch in batches:
            try:
                ran.append((batch, *self._run_kernel(batch)))
            except KernelFault as exc:  # the batches before it are judged, as in the sequential order
                fault = exc
                break
        pool = _judging_pool(workers)
        futures = [pool.submit(_judge, batch, outputs, self.config.setting, out_fmt) for batch, outputs, out_fmt in ran]
        for (batch, outputs, _), future in zip(ran, futures):
            ref, comparisons = future.result()
            self._judged(batch, outputs, ref, comparisons, keep=True)
        if fault is not None:
            raise fault

    def _output_format(self, outputs: dict) -> FloatFormat:
        """The output format: the requested one, or under autocast whatever dtype autocast
        gave the first call (layer_norm, for one, may run in fp32)."""
        returned = outputs.pop("y_format", None)
        if self.state.out_fmt is None:
            self.state.out_fmt = get_format(returned) if returned else self.config.setting.out_fmt
        return self.state.out_fmt

    def _record(self, batch: Batch, outputs: dict, comparisons: dict[str, Comparison]) -> None:
        state = self.state
        state.rows_tested += batch.x.shape[0]
        state.hidden_mismatch += hidden_mismatches(batch, outputs, self.config.setting)
        forward = comparisons["y"]
        state.forward.add(forward, batch.label, {"rows": batch.x.shape[0]})
        x = normalized_input(batch, self.config.setting)
        with np.errstate(all="ignore"):
            offset = np.abs(x.mean(axis=1)) / np.maximum(x.std(axis=1), np.finfo(float).tiny)
        row_ratio = np.max(np.where(np.isnan(forward.ratio), 0, forward.ratio), axis=1)
        row_ulp = np.max(np.where(np.isnan(forward.ulps), 0, forward.ulps), axis=1)
        state.row_log.extend(zip([batch.label] * len(offset), offset.tolist(), row_ratio.tolist(), row_ulp.tolist()))
        self._keep_worst("forward", float(row_ratio.max()) if row_ratio.size else 0.0, batch, outputs)
        grad_ratio = 0.0
        for quantity, cmp in comparisons.items():
            if quantity == "y":
                continue
            state.backward.setdefault(quantity, Summary()).add(cmp, batch.label, {"rows": batch.x.shape[0]})
            grad_ratio = max(grad_ratio, float(np.nanmax(cmp.ratio)) if cmp.ratio.size else 0.0)
        if len(comparisons) > 1:
            self._keep_worst("backward", grad_ratio, batch, outputs)

    def _keep_worst(self, key: str, ratio: float, batch: Batch, outputs: dict) -> None:
        if key not in self.state.worst or ratio > self.state.worst[key][0]:
            self.state.worst[key] = (ratio, batch, outputs)

    # -- the steps ---------------------------------------------------------------------------
    def budget_split(self) -> tuple[int, int, int]:
        """(rows per family, search examples, domain probes): together with the 2-row NaN probe
        and captured inputs (which share the families' part) at most the budget, except that a
        tiny budget still gets one row per family and the 3 domain probes that anchor bisection."""
        budget = max(self.config.budget, 1)
        groups = len(self.config.families) + (4 if self.config.captured else 0)
        families = max(1, int(budget * FAMILY_SHARE) // max(groups, 1))
        search = int(budget * SEARCH_SHARE) if self.config.search else 0
        spent = families * groups + search + NAN_PROBE_ROWS
        return families, search, max(0, budget - spent)

    def run_families(self, rows_per_family: int) -> None:
        c = self.config
        batches = list(input_gen.family_batches(
            c.families, rows_per_family=rows_per_family, n=c.n, fmt=c.setting.fmt, w_fmt=c.setting.w_fmt,
            affine=c.setting.affine, max_abs=c.max_abs, seed=c.seed, fused=c.setting.fused, backward=c.backward))
        if c.captured:
            batches += list(input_gen.captured_batches(
                c.captured, fmt=c.setting.fmt, w_fmt=c.setting.w_fmt, affine=c.setting.affine,
                seed=c.seed, max_rows=rows_per_family * 4, backward=c.backward, fused=c.setting.fused))
        self.run_batches(batches)

    def run_nan_probe(self) -> None:
        """A NaN in a row must make that whole row NaN: NaN in → NaN out. (An inf input is not
        judged: 0 for the other entries of an RMSNorm row is the IEEE-natural answer.)"""
        c = self.config
        rng = np.random.default_rng([c.seed, 20_000])
        x = c.setting.fmt.round_to_float64(rng.standard_normal((NAN_PROBE_ROWS, c.n)), saturate=True)
        x[0, c.n // 2] = np.nan
        x[1, 0] = np.nan
        w, b = input_gen.draw_affine(rng, c.n, c.setting.w_fmt, c.setting.affine)
        residual = np.zeros_like(x) if c.setting.fused else None
        self.run_batch(Batch(x, w, b, None, residual, label="nan_probe"), backward=False)

    def run_determinism(self) -> None:
        """The same inputs twice must give identical bits (forward and backward): every family
        batch is run once more (kernel only, no reference) and compared with its judged run."""
        deterministic = True
        for batch, first, _ in self.judged:
            second = run_kernel(self.config.kernel.fn, batch, self.call_spec, backward=self.config.backward)
            differing = [key for key, value in first.items()
                         if isinstance(value, np.ndarray) and not _same_bits(value, second[key])]
            if differing:
                deterministic = False
                self.state.findings.append(
                    f"not deterministic: {', '.join(differing)} differ between two runs on the same "
                    f"{batch.label} inputs (output changes run to run)")
                break
        self.state.deterministic = deterministic


def _same_bits(first: np.ndarray, second: np.ndarray | str) -> bool:
    """Whether two runs gave the same float64 array bit for bit (NaN payloads included)."""
    if not isinstance(second, np.ndarray):
        raise TypeError(f"run_kernel gave {type(second).__name__} where the first run gave an array")
    return np.array_equal(first.view(np.uint64), second.view(np.uint64))


def judging_workers(config: Config) -> int:

    if config.workers is not None:
        return max(1, int(config.workers))
    value = os.environ.get(WORKERS_ENV)
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{WORKERS_ENV}={value!r}: the number of workers must be a positive integer")
    return int(value)


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _judging_pool(workers: int) -> ProcessPoolExecutor:
    """One pool per size for the life of the process ("spawn": numba's OpenMP threads do not
    survive a fork); each worker's reference runs one thread, so the workers share the cores."""
    if workers not in _POOLS:
        import multiprocessing

        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_one_thread_each)
    return _POOLS[workers]


def _one_thread_each() -> None:
    os.environ["NORMTHEORY_THREADS"] = "1"


def _judge(batch: Batch, outputs: dict, setting: Setting,
           out_fmt: FloatFormat) -> tuple[dict[str, np.ndarray], dict[str, Comparison]]:
    """(reference, comparisons) of one batch, in a worker process."""
    ref = reference(batch, setting)
    return ref, judge_batch(batch, outputs, setting, out_fmt, ref=ref)


def certify(config: Config, progress: Any = None) -> RunState:
    certifier = Certifier(config, progress)
    family_rows, search_rows, domain_rows = certifier.budget_split()
    try:
        certifier.run_families(family_rows)
        certifier.run_nan_probe()
        certifier.run_determinism()
        domain.bisect_safe_domain(certifier, domain_rows)
        # the bisection usually needs fewer probes than it was given: what is left to run is the search
        _expect_rows(progress, certifier.state.rows_tested + search_rows)
        if search_rows:
            search.hypothesis_search(certifier, search_rows)
    except KernelFault as fault:
        certifier.state.faults.append(str(fault))
    _expect_rows(progress, certifier.state.rows_tested)  # the bar ends where the certificate's count is
    state = certifier.state
    # the named models are of LN/RMS/CRMS kernels with a plain output
    explainable = (config.setting.contract.kind == "default" and not config.setting.spec.takes_p
                   and config.setting.scaling is None and not state.faults)
    failing = [q for q, summary in [("y", state.forward)] + list(state.backward.items())
               if summary.max_err_over_bound > 1]
    if explainable and failing:
        if state.out_fmt is None:  # set by the first judged batch, and a failing quantity was judged
            raise RuntimeError("a failing quantity but no output format: no batch was judged")
        state.explanations = explain_all(certifier.judged, config.setting, state.out_fmt, failing)
    return state


def _expect_rows(progress: Any, total: int) -> None:
    if progress is not None:
        progress.total = total
        progress.refresh()
