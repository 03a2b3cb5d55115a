"""LLVM intrinsics the OGM kernel calls from numba code: popcount, trailing zeros, prefetch hints
and an atomic add.

Why by hand: numba exposes none of them as functions, and each replaces a loop or a lock on the hot
path (one ``popcnt`` averages a ring of 5, one ``tzcnt`` finds the next queue bucket, prefetching pulls
the next flood's records in while this one runs, the atomic add hands floods out to cores). They are
compiled into their callers, so they have no state and no effect on results beyond what they compute.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _popcnt(typingctx, x):
    """Number of set bits of a uint64 (llvm.ctpop: one popcnt instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return sig, codegen


def _prefetch_intrinsic(name: str, locality: int, doc: str):
    """An intrinsic ``name(arr, idx)`` hinting the CPU to pull arr[idx]'s cache line in (llvm.prefetch with
    this locality: 3 keeps it in L1, 2 in L2). Hints only: no effect on results."""

    def impl(typingctx, arr, idx):
        sig = types.void(arr, idx)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(locality), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

    impl.__name__ = impl.__qualname__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


_prefetch = _prefetch_intrinsic("_prefetch", 2, "Pull arr[idx]'s cache line into L2 (the next flood's slab).")
_prefetch0 = _prefetch_intrinsic("_prefetch0", 3, "Pull arr[idx]'s cache line into L1 (the next neighbour's records).")


@intrinsic
def _fetch_add(typingctx, arr, val):
    """Atomically add val to arr[0] and return the old value (llvm atomicrmw add, sequentially
    consistent): the floods of a batch are handed out to cores through it."""
    sig = types.int64(arr, types.int64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [ir.Constant(ir.IntType(64), 0)],
                                       wraparound=False)
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return sig, codegen


@intrinsic
def _cttz0(typingctx, x):
    """Trailing zeros of a uint64, 64 for 0 (tzcnt)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), [ir.IntType(64),
                                            ir.IntType(1)]), "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(0)])

    return sig, codegen


@intrinsic
def _cttz(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64 (llvm.cttz: one tzcnt instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]),
                                            "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(1)])

    return sig, codegen
