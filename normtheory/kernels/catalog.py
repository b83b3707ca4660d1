"""The kernel catalog: names → callables with the docs/design.md signature.

`resolve_kernel(name)` returns a `Kernel`: a catalog entry, or a user's `module:callable`
(imported with the current directory on sys.path, as `python -m` would). Unknown names and
modules that do not import are usage errors (exit 2); what the kernel then does when called
is the certifier's business (a fault is a failed certificate, exit 1).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from normtheory.errors import UsageError


@dataclass
class Kernel:
    name: str
    fn: Callable
    ops: tuple[str, ...] | None  # ops it implements; None: any (a user callable)
    fused: bool = False  # fn(x, residual, weight, bias, eps) -> (y, x + residual)
    affines: tuple[str, ...] | None = None  # affine modes it implements; None: any
    needs_cuda: bool = False
    description: str = ""
    source_hash: str = field(default="")
    scaled_output: bool | None = None  # fp8 output (y, scale); None: unknown (a user callable)

    @property
    def compile_seconds(self) -> float | None:
        return getattr(self.fn, "compile_seconds", None)


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[], Callable]
    ops: tuple[str, ...]
    fused: bool = False
    affines: tuple[str, ...] | None = None
    needs_cuda: bool = False
    description: str = ""
    scaled_output: bool = False
    default_affine: str | None = None  # when the op's registry default does not fit the kernel


def _lazy_fn(module: str, attr: str) -> Callable[[], Callable]:
    """A factory returning module.attr, imported only when the kernel is asked for."""
    def factory() -> Callable:
        return getattr(importlib.import_module(module), attr)

    return factory


def _lazy(module: str, attr: str) -> Callable[[], Callable]:
    """A factory calling module.attr() (kernels built at resolution, e.g. compiled ones)."""
    make = _lazy_fn(module, attr)
    return lambda: make()()


def _eager(attr: str) -> Callable[[], Callable]:
    return _lazy_fn("normtheory.kernels.eager", attr)


_PLAIN = ("none", "weight", "weight_bias")
CATALOG: dict[str, _Entry] = {
    "torch.layer_norm": _Entry(_eager("torch_layer_norm"), ("layernorm",), affines=_PLAIN,
                               description="torch.nn.functional.layer_norm (ATen)"),
    "torch.rms_norm": _Entry(_eager("torch_rms_norm"), ("rmsnorm",), affines=_PLAIN,
                             description="torch.nn.functional.rms_norm (ATen)"),
    "torch.crms_norm": _Entry(_eager("crms_norm"), ("crmsnorm",), affines=_PLAIN,
                              description="CRMSNorm as a torch composition in fp32"),
    "torch.normalize": _Entry(_eager("torch_normalize"), ("l2normalize",), affines=("none",),
                              description="torch.nn.functional.normalize over the last dimension (p = 2)"),
    "hf.llama_rms_norm": _Entry(_eager("llama_rms_norm"), ("rmsnorm",), affines=_PLAIN,
                                description="HF LlamaRMSNorm cast placement (fp32, cast, then * w)"),
    "hf.gemma_rms_norm": _Entry(_eager("gemma_rms_norm"), ("rmsnorm",), affines=("offset_weight", "none"),
                                default_affine="offset_weight",
                                description="HF Gemma RMSNorm: (1 + w), fp32 throughout, one rounding"),
    "compiled.layer_norm": _Entry(_lazy("normtheory.kernels.compiled", "compiled_layer_norm"), ("layernorm",),
                                  affines=_PLAIN, description="torch.compile(layer_norm), shapes and eps pinned"),
    "compiled.rms_norm": _Entry(_lazy("normtheory.kernels.compiled", "compiled_rms_norm"), ("rmsnorm",),
                                affines=_PLAIN, description="torch.compile(rms_norm), shapes and eps pinned"),
    "liger.rms_norm": _Entry(_lazy("normtheory.kernels.liger", "liger_rms_norm"), ("rmsnorm",), affines=_PLAIN,
                             needs_cuda=True, description="Liger Triton RMSNorm (in_place=False)"),
    "liger.layer_norm": _Entry(_lazy("normtheory.kernels.liger", "liger_layer_norm"), ("layernorm",),
                               affines=_PLAIN, needs_cuda=True, description="Liger Triton LayerNorm"),
    "lp.naive": _Entry(_lazy_fn("normtheory.kernels.lp", "lp_norm_naive"), ("lpnorm",), affines=_PLAIN,
                       description="Lp norm: power, mean, root in fp32 (overflows for large |x|^p)"),
    "lp.stable": _Entry(_lazy_fn("normtheory.kernels.lp", "lp_norm_stable"), ("lpnorm",), affines=_PLAIN,
                        description="Lp norm rescaled by max|x| before powering, fp32 accumulation; closed-form backward"),
    "fp8.rms_norm": _Entry(_lazy_fn("normtheory.kernels.fp8_output", "rms_norm_fp8"), ("rmsnorm",), affines=_PLAIN,
                           scaled_output=True, description="RMSNorm in fp32, then a scaled fp8 cast (y, scale)"),
    "fp8.layer_norm": _Entry(_lazy_fn("normtheory.kernels.fp8_output", "layer_norm_fp8"), ("layernorm",),
                             affines=_PLAIN, scaled_output=True,
                             description="LayerNorm in fp32, then a scaled fp8 cast (y, scale)"),
    "add_rmsnorm": _Entry(_eager("add_rms_norm"), ("add_rmsnorm",), fused=True, affines=_PLAIN,
                          description="residual add then torch rms_norm (returns y, x + residual)"),
    "add_layernorm": _Entry(_eager("add_layer_norm"), ("add_layernorm",), fused=True, affines=_PLAIN,
                            description="residual add then torch layer_norm (returns y, x + residual)"),
}


def _hash_source(fn: Callable) -> str:
    target = getattr(fn, "eager_fn", fn)  # a compiled kernel: hash what was compiled
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        source = repr(target)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _import_user_callable(spec: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"kernel {spec!r}: expected a catalog name or module:callable")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the user's input error
        raise UsageError(f"kernel {spec!r}: module {module_name!r} does not import ({type(exc).__name__}: {exc})") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"kernel {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"kernel {spec!r}: {attr!r} is not callable")
    return target


def resolve_kernel(name: str, *, op: str, affine: str | None = None, fused: bool = False) -> Kernel:
    """The kernel called `name`, checked to implement `op` (and `affine` when given); `fused`
    says what a user's module:callable is (a catalog entry knows)."""
    if name in CATALOG:
        entry = CATALOG[name]
        if op not in entry.ops:
            raise UsageError(f"kernel {name} implements {', '.join(entry.ops)}, not --op {op}")
        if affine is not None and entry.affines is not None and affine not in entry.affines:
            raise UsageError(f"kernel {name} implements affine {', '.join(entry.affines)}, not {affine}")
        fn = entry.factory()
        return Kernel(name, fn, entry.ops, entry.fused, entry.affines, entry.needs_cuda, entry.description,
                      _hash_source(fn), entry.scaled_output)
    if ":" not in name:
        raise UsageError(f"unknown kernel {name!r}; catalog: {', '.join(CATALOG)}; or give module:callable")
    return callable_kernel(_import_user_callable(name), fused=fused, name=name, description="user callable")


def callable_kernel(fn: Callable, *, fused: bool, name: str | None = None, description: str = "python callable") -> Kernel:
    """A user's function as a Kernel (what it implements and returns is found out by calling it)."""
    qualname: str = getattr(fn, "__qualname__", "callable")
    return Kernel(name or qualname, fn, None, fused, None, False, description, _hash_source(fn))


def catalog_defaults(name: str) -> dict:
    """Affine default of a catalog kernel (e.g. gemma's offset_weight); {} for user kernels."""
    entry = CATALOG.get(name)
    return {"affine": entry.default_affine} if entry is not None and entry.default_affine else {}
