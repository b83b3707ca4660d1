"""The table: each row a behaviour of one package over a version range, and how it was probed.

`versions` is a PEP 440 specifier set (`packaging.specifiers`); a behaviour id may have several
rows with disjoint ranges (the behaviour changed between them). Values are short strings so a
row reads the same in the table, in a test's message and in the drift report. Every row was
obtained by running the named probe against that version (the `probed_on` column says where).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    behaviour: str  # probe id, `normtheory.upstream.probes.PROBES`
    package: str  # distribution name, as `importlib.metadata` knows it
    versions: str  # PEP 440 specifier set the value holds for
    value: str
    description: str
    probed_on: str  # which versions were actually run to fill this row


FACTS: tuple[Fact, ...] = (
    # ---- ml_dtypes -------------------------------------------------------------------------
    Fact("ml_dtypes.float64_to_bf16", "ml_dtypes", ">=0.5,<0.7", "double-rounds via float32",
         "astype(bfloat16) of a float64 one ulp above a bf16 midpoint (nextafter(1 + 2^-8, 2)) "
         "gives 1.0: the value is first rounded to float32 (onto the midpoint), then ties to even",
         "0.5.0, 0.5.4, 0.6.0"),
    Fact("ml_dtypes.float64_to_bf16", "ml_dtypes", ">=0.7", "rounds once",
         "the same value gives 1 + 2^-7, the correctly rounded bf16", "0.7.0"),
    Fact("ml_dtypes.float64_to_fp8", "ml_dtypes", ">=0.5,<0.7", "double-rounds via float32",
         "astype(float8_e4m3fn) of nextafter(1 + 2^-4, 2) gives 1.0 (through float32)",
         "0.5.0, 0.5.4, 0.6.0"),
    Fact("ml_dtypes.float64_to_fp8", "ml_dtypes", ">=0.7", "rounds once",
         "the same value gives 1.125, the correctly rounded e4m3fn", "0.7.0"),
    Fact("ml_dtypes.float32_to_narrow", "ml_dtypes", ">=0.5", "correctly rounded",
         "float32 -> fp16/bf16/fp8/fp6/fp4 casts of every fp16 and bf16 value and 2^16 random "
         "fp32 values agree with exact round-to-nearest-even (NaN/overflow by the format's rules)",
         "0.5.0, 0.5.4, 0.6.0, 0.7.0"),
    Fact("ml_dtypes.e8m0_subnormal_fp32", "ml_dtypes", ">=0.5,<0.7", "rounds up to 2^-126",
         "astype(float8_e8m0fnu) of fp32 values strictly between 2^-127 and 2^-126 (1.03·2^-127 "
         "probed) gives 2^-126, not the nearest power of two", "0.5.0, 0.5.4, 0.6.0"),
    Fact("ml_dtypes.e8m0_subnormal_fp32", "ml_dtypes", ">=0.7", "nearest",
         "the same value gives 2^-127, the nearest power of two", "0.7.0"),
    Fact("ml_dtypes.e8m0_cast_rule", "ml_dtypes", ">=0.5,<0.5.1",
         "nearest power of two, ties to the even code; 1.5·2^127 -> 2^127",
         "astype(float8_e8m0fnu) from float32 of 1.5·2^k and 1.49·2^k (k = -120..126), 1.5·2^127, "
         "0, -1, inf and NaN", "0.5.0"),
    Fact("ml_dtypes.e8m0_cast_rule", "ml_dtypes", ">=0.5.1", "nearest power of two, ties up; 0, <0, inf, NaN -> NaN",
         "the same inputs", "0.5.1, 0.5.4, 0.6.0, 0.7.0"),
    # ---- torch (CPU) -------------------------------------------------------------------------
    Fact("torch.cpu.fp8_e4m3fn_overflow", "torch", ">=2.13,<2.14", "saturate",
         "torch.tensor(fp32 max).to(float8_e4m3fn) on CPU: ±448 (also for ±inf)",
         "2.13.0+cpu"),
    Fact("torch.cpu.fp8_e5m2_overflow", "torch", ">=2.13,<2.14", "inf",
         "fp32 max -> float8_e5m2 on CPU gives ±inf", "2.13.0+cpu"),
    Fact("torch.cpu.fp8_e4m3fnuz_conventions", "torch", ">=2.13,<2.14", "overflow nan, NaN bytes 0x80/0x80, -0 -> 0x00",
         "fp32 max, +NaN, -NaN and -0.0 -> float8_e4m3fnuz on CPU (one zero, NaN is the -0 pattern)",
         "2.13.0+cpu"),
    Fact("torch.cpu.e8m0_zero_and_negative", "torch", ">=2.13,<2.14", "0 -> 0x00, -1 -> 0x7f",
         "torch.tensor([0., -1.]).to(float8_e8m0fnu) bytes on CPU (ml_dtypes writes NaN, 0xff)",
         "2.13.0+cpu"),
    Fact("torch.cpu.norm_kernels_match_mirrors", "torch", "==2.13.0", "bit-identical",
         "torch.nn.functional.rms_norm and layer_norm on CPU (AVX2/AVX512 builds), fp32/bf16/fp16, "
         "equal normtheory.precision.mirrors.cpu bit for bit on fixed rows of every family",
         "2.13.0+cpu"),
    # ---- torch (CUDA) and Liger: recorded on an H200, probed only where CUDA is present -------
    Fact("torch.cuda.fp8_e4m3fn_overflow", "torch", ">=2.11,<2.12", "nan",
         "fp32 max -> float8_e4m3fn on CUDA gives NaN (the CPU saturates)", "2.11.0+cu130 (H200)"),
    Fact("torch.cuda.fp8_e5m2_overflow", "torch", ">=2.11,<2.12", "inf",
         "fp32 max -> float8_e5m2 on CUDA gives ±inf", "2.11.0+cu130 (H200)"),
    Fact("liger.rms_norm_default_casting", "liger-kernel", ">=0.8.5,<0.9", "llama",
         "the default casting_mode of LigerRMSNorm: normalise in fp32, cast to the input dtype, "
         "then multiply by the weight (HF Llama's placement)", "0.8.5"),
)


def rows_for(behaviour: str) -> list[Fact]:
    return [fact for fact in FACTS if fact.behaviour == behaviour]
