"""Reinterpreting a float64 as its 64 bits and back inside compiled code (one LLVM bitcast,
no trip through memory), for rounding by integer operations on the binary64 pattern."""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def bits_of(typingctx, value):
    """The binary64 pattern of a float64, as uint64."""
    signature = types.uint64(types.float64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint64))

    return signature, codegen


@intrinsic
def float_of(typingctx, bits):
    """The float64 whose binary64 pattern is `bits` (uint64)."""
    signature = types.float64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return signature, codegen
