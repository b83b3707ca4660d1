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
    return Comparison(error, ulps, ratio, signed, reference, got, nonfinite, nan_mismatch, unbounded=unbounded)


@dataclass
class Summary:
    """Running summary of one quantity over all batches (the certificate's forward/backward block)."""

    max_ulp: float = 0.0
    max_rel: float = 0.0
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
    per_label: dict = field(default_factory=dict)  # label -> max ratio

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
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(cmp.reference != 0, cmp.error / np.abs(cmp.reference), np.where(cmp.error > 0, np.inf, 0.0))
            self.max_rel = max(self.max_rel, float(np.max(rel[finite])))
            self.max_ulp = max(self.max_ulp, float(np.max(cmp.ulps[finite])))
            self.signed_ulps_sum += float(np.sum(cmp.signed_ulps[finite]))
            self.signal_energy += float(np.sum(cmp.reference[finite] ** 2))
            self.noise_energy += float(np.sum(cmp.error[finite] ** 2))
        if cmp.nonfinite.any():
            self.max_ulp = float("inf")
        ratio = np.where(np.isnan(cmp.ratio), 0.0, cmp.ratio)
        worst = float(np.max(ratio)) if ratio.size else 0.0
        self.per_label[label] = max(self.per_label.get(label, 0.0), worst)
        if worst > self.max_err_over_bound or not self.worst_case:
            flat = int(np.argmax(ratio))
            index = np.unravel_index(flat, ratio.shape)
            self.max_err_over_bound = max(self.max_err_over_bound, worst)
            self.worst_case = {"label": label, "index": [int(i) for i in index],
                               "got": float(cmp.got[index]), "reference_fp32": float(cmp.reference[index]),
                               "err_over_bound": worst, "ulps": float(cmp.ulps[index]), **where}

    def as_dict(self) -> dict:
        finite_elements = max(self.elements, 1)
        sqnr = (10 * np.log10(self.signal_energy / self.noise_energy) if self.noise_energy > 0
                else float("inf"))
        return {
            "max_ulp": self.max_ulp,
            "max_rel": self.max_rel,
            "max_err_over_bound": self.max_err_over_bound,
            "mean_signed_err": self.signed_ulps_sum / finite_elements,
            "mean_signed_err_unit": "ulps of the output format",
            "sqnr_db": float(sqnr),
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
