"""Error metrics of a kernel's output against the reference, judged by a bound.

The reference value y_R is the exact result correctly rounded to fp32 (`REFERENCE_FORMAT`):
|y_R − y| ≤ ½ulp₃₂(y_R) =: r. The error reported is |ŷ − y_R|; a bound is judged *proven
exceeded* only when |ŷ − y_R| − r > bound, so a failure is never an artefact of the
reference. For fp16/bf16/fp8 outputs r is 2^-13 ulp of the output or less; for fp32 outputs
it is half an ulp, which the certificate states (`reference_resolution_ulps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from normtheory.formats import FloatFormat, get_format

REFERENCE_FORMAT = get_format("fp32")


@dataclass
class Comparison:
    """Elementwise comparison of one quantity (y, gx, gw or gb) of one batch."""

    error: np.ndarray  # |ŷ − y_R| (0 where both agree, NaN-for-NaN included)
    ulps: np.ndarray  # error in ulps of the output format at y_R
    ratio: np.ndarray  # proven error lower bound / allowed bound
    signed_ulps: np.ndarray
    reference: np.ndarray
    got: np.ndarray
    nonfinite: np.ndarray  # kernel non-finite where the reference is finite in the output format
    nan_mismatch: np.ndarray  # reference NaN (non-finite input reaches it) but kernel a number
    wrong_scale: np.ndarray | None = None  # fp8 outputs: elements whose group scale the recipe cannot give
    unbounded: np.ndarray | None = None  # finite exact value, but the contract gives no finite bound
    bound_ulps: np.ndarray | None = None  # the bound in ulps of the output format at y_R: what the contract allows


def compare(got: np.ndarray, reference: np.ndarray, bound: np.ndarray, out_fmt: FloatFormat,
            entry_scale: np.ndarray | None = None) -> Comparison:
    """`entry_scale`: for a scaled (fp8) output, got is the dequantized q/s and an ulp is the
    output format's ulp at y·s, divided by s."""
    got = np.asarray(got, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    ref_nan = np.isnan(reference)
    scale = np.ones_like(reference) if entry_scale is None else np.asarray(entry_scale, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        # a saturating or scaled format: only the reference's own finiteness matters
        expected_out = (out_fmt.round_to_float64(np.where(ref_nan, 0.0, reference)) if entry_scale is None
                        else np.where(ref_nan, 0.0, reference))
    finite_both = np.isfinite(got) & np.isfinite(reference)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.where(finite_both, got - reference, 0.0)
        error = np.abs(diff)
        safe_ref = np.where(np.isfinite(reference), reference, 0.0)
        ulp = out_fmt.ulp(safe_ref * scale) / scale
        ulps = error / ulp
        bound_ulps = np.broadcast_to(np.asarray(bound, dtype=np.float64), ulp.shape) / ulp
        signed = diff / ulp
        resolution = 0.5 * REFERENCE_FORMAT.ulp(safe_ref)
        proven = np.maximum(error - resolution, 0.0)
        ratio = np.where(proven == 0, 0.0, proven / np.where(bound > 0, bound, 0.0))
    # finite in the output format, but the kernel gave inf/NaN (where the exact value overflows
    # the output format, inf — or NaN for formats without inf — is the right answer)
    nonfinite = ~np.isfinite(got) & np.isfinite(expected_out) & ~ref_nan
    ratio = np.where(nonfinite, np.inf, ratio)
    ulps = np.where(nonfinite, np.inf, ulps)
    nan_mismatch = ref_nan & ~np.isnan(got)
    unbounded = np.isfinite(reference) & ~np.isfinite(np.asarray(bound, dtype=np.float64))
    return Comparison(error, ulps, ratio, signed, reference, got, nonfinite, nan_mismatch, unbounded=unbounded,
                      bound_ulps=bound_ulps)


@dataclass
class Summary:
    """Running summary of one quantity over all batches (the certificate's forward/backward block).

    max error/bound is what the verdict rests on. Ulps, relative error and SQNR describe the
    error against the output itself: they are large where the exact value is tiny next to its
    row (cancellation) or where the input is ill-conditioned, and the bound allows that, so the
    block also says where the largest ulp error is and how many ulps the bound allows there."""

    max_ulp: float = 0.0
    max_rel: float = 0.0
    max_rel_normwise: float = 0.0  # max |error| / max |exact| per row (per vector for gw, gb)
    max_err_over_bound: float = 0.0
    elements: int = 0
    over_bound: int = 0
    nonfinite: int = 0
    nan_mismatch: int = 0
    signed_ulps_sum: float = 0.0
    signal_energy: float = 0.0
    noise_energy: float = 0.0
    wrong_scale: int = 0
    unbounded: int = 0
    unbounded_by_label: dict = field(default_factory=dict)
    worst_case: dict = field(default_factory=dict)
    max_ulp_case: dict = field(default_factory=dict)  # where max_ulp is, and the bound in ulps there
    per_label: dict = field(default_factory=dict)  # label -> max ratio
    energy_by_label: dict = field(default_factory=dict)  # label -> [signal, noise]

    def add(self, cmp: Comparison, label: str, where: dict) -> None:
        finite = np.isfinite(cmp.reference) & np.isfinite(cmp.got)
        self.elements += int(cmp.reference.size)
        self.nonfinite += int(cmp.nonfinite.sum())
        self.nan_mismatch += int(cmp.nan_mismatch.sum())
        self.over_bound += int((cmp.ratio > 1).sum())
        self.wrong_scale += 0 if cmp.wrong_scale is None else int(np.count_nonzero(cmp.wrong_scale))
        unbounded = 0 if cmp.unbounded is None else int(np.count_nonzero(cmp.unbounded))
        if unbounded:
            self.unbounded += unbounded
            self.unbounded_by_label[label] = self.unbounded_by_label.get(label, 0) + unbounded
        if finite.any():
            self._add_error_measures(cmp, finite, label, where)
        if cmp.nonfinite.any():
            self.max_ulp = float("inf")
        ratio = np.where(np.isnan(cmp.ratio), 0.0, cmp.ratio)
        worst = float(np.max(ratio)) if ratio.size else 0.0
        self.per_label[label] = max(self.per_label.get(label, 0.0), worst)
        if worst > self.max_err_over_bound or not self.worst_case:
            index = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            self.max_err_over_bound = max(self.max_err_over_bound, worst)
            self.worst_case = {"label": label, "index": [int(i) for i in index],
                               "got": float(cmp.got[index]), "reference_fp32": float(cmp.reference[index]),
                               "err_over_bound": worst, "ulps": float(cmp.ulps[index]), **where}

    def _add_error_measures(self, cmp: Comparison, finite: np.ndarray, label: str, where: dict) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(cmp.reference != 0, cmp.error / np.abs(cmp.reference), np.where(cmp.error > 0, np.inf, 0.0))
            error = np.atleast_2d(np.where(finite, cmp.error, 0.0))
            scale = np.atleast_2d(np.where(finite, np.abs(cmp.reference), 0.0)).max(axis=1)
            row_error = error.max(axis=1)
            normwise = np.where(scale > 0, row_error / scale, np.where(row_error > 0, np.inf, 0.0))
        self.max_rel = max(self.max_rel, float(np.max(rel[finite])))
        self.max_rel_normwise = max(self.max_rel_normwise, float(np.max(normwise)))
        ulps = np.where(finite, cmp.ulps, -1.0)
        index = np.unravel_index(int(np.argmax(ulps)), ulps.shape)
        if float(ulps[index]) > self.max_ulp or not self.max_ulp_case:
            allowed = float(cmp.bound_ulps[index]) if cmp.bound_ulps is not None else float("nan")
            self.max_ulp_case = {"label": label, "index": [int(i) for i in index], "ulps": float(ulps[index]),
                                 "bound_ulps": allowed, "got": float(cmp.got[index]),
                                 "reference_fp32": float(cmp.reference[index]), **where}
        self.max_ulp = max(self.max_ulp, float(ulps[index]))
        signal, noise = float(np.sum(cmp.reference[finite] ** 2)), float(np.sum(cmp.error[finite] ** 2))
        self.signed_ulps_sum += float(np.sum(cmp.signed_ulps[finite]))
        self.signal_energy += signal
        self.noise_energy += noise
        energy = self.energy_by_label.setdefault(label, [0.0, 0.0])
        energy[0] += signal
        energy[1] += noise

    def as_dict(self) -> dict:
        """The block; measures of the error are None when no element was judged (a kernel that
        raised on its first call), not a perfect-looking 0 ulps and infinite SQNR."""
        judged = self.elements > 0
        return {
            "max_ulp": self.max_ulp if judged else None,
            "max_ulp_case": self.max_ulp_case,
            "max_rel": self.max_rel if judged else None,
            "max_rel_normwise": self.max_rel_normwise if judged else None,
            "max_err_over_bound": self.max_err_over_bound,
            "mean_signed_err": self.signed_ulps_sum / self.elements if judged else None,
            "mean_signed_err_unit": "ulps of the output format",
            "sqnr_db": sqnr_db(self.signal_energy, self.noise_energy) if judged else None,
            "sqnr_db_by_family": {label: sqnr_db(*energy) for label, energy in self.energy_by_label.items()},
            "elements": self.elements,
            "over_bound": self.over_bound,
            "nonfinite": self.nonfinite,
            "nan_not_propagated": self.nan_mismatch,
            "wrong_scale_elements": self.wrong_scale,
            "unbounded_elements": self.unbounded,
            "unbounded_elements_by_family": self.unbounded_by_label,
            "worst_case": self.worst_case,
            "max_err_over_bound_by_family": self.per_label,
        }


def sqnr_db(signal: float, noise: float) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when there is no error at all)."""
    if not noise > 0:
        return float("inf")
    with np.errstate(divide="ignore"):  # no signal at all: -inf dB
        return float(10 * np.log10(signal / noise))
