"""Streaming (non-temporal) stores for large outputs, as Numba intrinsics.

An ordinary store to a line that is not in cache first reads the line from
memory ("read for ownership"), so writing an output of ``S`` bytes moves
``2S`` bytes. A non-temporal store writes whole 64-byte lines straight to
memory without reading them and without evicting the input from cache.
LLVM emits one for a ``store`` carrying ``!nontemporal`` metadata, but its
loop vectorizer refuses to vectorize such a store unless it is aligned to
the vector, which Numba cannot promise. The intrinsics here therefore copy
whole, aligned 64-byte lines from a small scratch buffer (filled by an
ordinary vectorized loop, so the arithmetic and its rounding are exactly
those of the plain kernels) to the output.

Non-temporal stores are weakly ordered: :func:`store_fence` (``sfence``)
must run after the last one and before another thread may read the output.

On processors other than x86-64 the same intrinsics emit ordinary stores
and no fence, so the kernels stay correct everywhere.

Functions
---------
stream_lines(dst, src, n_lines)
    Copy ``n_lines`` 64-byte lines from address ``src`` (any alignment) to
    address ``dst`` (64-byte aligned) with non-temporal stores.
store_fence()
    Order the preceding non-temporal stores before later stores.
flush_row(row, buf, n)
    Write ``buf[:n]`` to the contiguous 1-D view ``row`` (``len(row) == n``):
    the unaligned head and tail with ordinary stores, the aligned middle with
    :func:`stream_lines`.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import _config
from ._config import jit

#: Bytes per cache line (and per non-temporal store group).
LINE = 64

#: Whether non-temporal stores and ``sfence`` are emitted (x86-64 only).
X86 = platform.machine().lower() in {"x86_64", "amd64"}


@intrinsic
def stream_lines(typingctx, dst, src, n_lines):
    """Copy ``n_lines`` 64-byte lines ``src`` -> ``dst`` (``dst`` 64-byte aligned)."""
    sig = types.void(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        dst, src, n = args
        line = ir.VectorType(ir.IntType(32), LINE // 4)
        dst_p = builder.inttoptr(dst, line.as_pointer())
        src_p = builder.inttoptr(src, line.as_pointer())
        entry = builder.block
        loop = builder.append_basic_block("stream.loop")
        done = builder.append_basic_block("stream.done")
        zero = ir.Constant(n.type, 0)
        builder.cbranch(builder.icmp_unsigned("!=", n, zero), loop, done)
        builder.position_at_end(loop)
        i = builder.phi(n.type)
        i.add_incoming(zero, entry)
        value = builder.load(builder.gep(src_p, [i]), align=4)
        store = builder.store(value, builder.gep(dst_p, [i]), align=LINE)
        if X86:
            store.set_metadata(
                "nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
            )
        nxt = builder.add(i, ir.Constant(n.type, 1))
        i.add_incoming(nxt, loop)
        builder.cbranch(builder.icmp_unsigned("<", nxt, n), loop, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """``sfence`` on x86-64 (orders non-temporal stores); nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=fnty), [])
        return context.get_dummy_value()

    return sig, codegen


@jit()
def flush_row(row, buf, n):
    """Write ``buf[:n]`` into the contiguous 1-D view ``row`` of length ``n``.

    Only whole 64-byte lines inside ``row`` are streamed; the head before
    the first aligned line and the tail after the last are stored normally,
    so nothing outside ``row`` is touched.
    """
    size = row.itemsize
    addr = row.ctypes.data
    if row.strides[0] != size or addr % size != 0:
        # strided or misaligned view: no aligned line lies inside it, store normally
        for j in range(n):
            row[j] = buf[j]
        return
    head = min(n, ((LINE - addr % LINE) % LINE) // size)
    n_lines = (n - head) * size // LINE
    body = n_lines * LINE // size
    for j in range(head):
        row[np.uint64(j)] = buf[np.uint64(j)]
    stream_lines(np.uint64(addr + head * size), np.uint64(buf.ctypes.data + head * size),
                 np.uint64(n_lines))
    for j in range(head + body, n):
        row[np.uint64(j)] = buf[np.uint64(j)]


_config.drop_stale_caches(globals(), [_config])
