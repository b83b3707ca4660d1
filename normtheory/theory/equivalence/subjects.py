"""A model family as the equivalence checks see it: how to run it functionally, convert it,
and which reference decoder carries its rounding-error model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normtheory.theory.equivalence.convert import Anatomy, convert_state
from normtheory.theory.equivalence.models import PreNormDecoder

Params = dict[str, torch.Tensor]


@dataclass
class Subject:
    """One original Pre-LN model (fp64, untouched) and what is needed to convert and run it."""

    name: str
    original: nn.Module
    anatomy: Anatomy
    skeleton: Callable[[str], nn.Module]  # target -> module with the converted shapes (fp64)
    # module output -> logits. Any: the output is what torch.func.functional_call returns (untyped),
    # a tensor for the reference decoder, a transformers ModelOutput for GPT-2
    output: Callable[[Any], torch.Tensor]
    # The error model runs on a reference decoder with the same function; its parameter
    # names map to the original's by `to_original_name`.
    reference: PreNormDecoder
    reference_anatomy: Anatomy
    to_original_name: Callable[[str], str]

    def params(self, dtype=torch.float64) -> Params:
        return {k: v.detach().to(dtype).clone() for k, v in self.original.named_parameters()}

    def logits(self, module: nn.Module, params: Mapping[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        return self.output(torch.func.functional_call(module, dict(params), (idx,), tie_weights=True))

    def converted_logits(self, target: str, module: nn.Module, params: Mapping[str, torch.Tensor], idx: torch.Tensor, *,
                         skip_recentre: frozenset[str] = frozenset()) -> torch.Tensor:
        """The paper's training-time graph: the conversion runs inside the forward."""
        state = convert_state(params, self.anatomy, target, skip_recentre=skip_recentre)
        with_zero_head_bias(state, module)
        return self.logits(module, state, idx)


def with_zero_head_bias(state: Params, module: nn.Module) -> None:
    """A zero `lm_head.bias` in `state` where `module` has that parameter and the conversion gave
    none (no affine on the last norm and no head bias)."""
    params = dict(module.named_parameters())
    if "lm_head.bias" in params and "lm_head.bias" not in state:
        state["lm_head.bias"] = torch.zeros_like(params["lm_head.bias"])


def reference_subject(model: PreNormDecoder) -> Subject:
    from normtheory.theory.equivalence.convert import converted_reference_config, reference_anatomy

    def skeleton(target):
        return PreNormDecoder(converted_reference_config(model.cfg, target)).double().eval()

    anatomy = reference_anatomy(model.cfg)
    reference = model.double().eval()
    return Subject("reference", reference, anatomy, skeleton, lambda out: out, reference, anatomy, lambda n: n)


def gpt2_subject(model) -> Subject:
    from normtheory.theory.equivalence.convert import reference_anatomy
    from normtheory.theory.equivalence.gpt2 import gpt2_anatomy, gpt2_as_reference, gpt2_skeleton, reference_name

    model = model.double().eval()
    anatomy = gpt2_anatomy(model)
    reference = gpt2_as_reference(model)
    back = {reference_name(n)[0]: n for n, _ in model.named_parameters()}
    return Subject(
        "gpt2", model, anatomy, lambda target: gpt2_skeleton(model, target).eval(),
        lambda out: out.logits, reference, reference_anatomy(reference.cfg), back.__getitem__,
    )
