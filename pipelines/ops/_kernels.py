"""The Numba kernels of :mod:`.fused` and their DALI entry points (imported only when Numba is).

Every function is compiled with ``cache=True``: the first process on a machine compiles
them (about 25 s) and writes the machine code next to this file (or to
``NUMBA_CACHE_DIR``; Numba falls back to a cache folder in the user's home when this
folder is read-only); later processes load it in well under a second.

Written so that LLVM vectorises the pixel loops (``tests/pipelines/test_kernels.py`` counts
the vector operations of the compiled kernels): rows are planar, ``(3, W)`` float32; an
output row is finished in one loop over its pixels (:func:`_finish_row`: the vertical
blend, rounding, the jitter, the blend, the normalisation, each pixel's channels in
registers from the two input rows to the clip); the jitter takes and returns scalars, its
matrices are tuples of float32 scalars, nothing is allocated per row and no float64
enters a pixel loop. Byte loads use unsigned offsets (a signed index wraps negative values
per load, which keeps LLVM from treating the loads as contiguous).

On x86-64 with AVX-512 (:data:`PERMUTE`) two things more: the pixel loops ask LLVM for
512-bit vectors (:func:`_wide_vectors`; it prefers 256 on these CPUs), and the x-pass
picks each output column's taps with a table permute from a planar row (:func:`_permute_block`)
instead of two scalar loads per channel. Elsewhere the same kernels compile without them.

And so that little runs per row outside those loops: rows are resized a band of
``BAND`` at a time, buffers are passed whole with an index rather than as views, and no
per-row call takes a tuple of arrays — each view or array argument costs reference
counting, which at 112² had cost as much as the row's arithmetic. The resize picks its
order per crop (:func:`_geometry`): along x first for a crop no taller than the output
(each input row read is resampled once), rows first for a taller one (one blend and one
resampling per output row).

The DALI entry points are C callbacks with the signatures of DALI's ``NumbaFunc``
operator (``nvidia.dali.plugin.numba``): one run per sample, one setup per batch. They
read their arrays from the pointers DALI passes, as the plugin's own wrappers do; the
plugin is not used to build them because it compiles afresh, without a cache, for every
operator object (seconds per clip size per process).
"""
from __future__ import annotations

import math
import platform

import numpy as np
from numba import carray, cfunc, njit
from numba import types as nt
from numba.extending import intrinsic
from nvidia.dali.plugin.numba import address_as_void_pointer as _ptr

from .colour import RGB_TO_YIQ, YIQ_TO_RGB

_YIQ = RGB_TO_YIQ.astype(np.float64)
_RGB = YIQ_TO_RGB.astype(np.float64)
jit = njit(cache=True, nogil=True, fastmath=True)
f32 = np.float32

# The per-sample parameter pack of every kernel: one float32 vector of these slots (name,
# length), in this order. Each op fills the slots it names (``Op.slots``, :mod:`.fused`); a
# kernel reads the slots of the ops it runs and no other. Kept here so that a change
# recompiles the kernels.
PACK = (("colour", 4), ("mean", 3), ("std", 3), ("lam", 1), ("frame", 1), ("grid", 1))
OFFSETS = {name: sum(n for _, n in PACK[:i]) for i, (name, _) in enumerate(PACK)}
PACK_LENGTH = sum(n for _, n in PACK)
_B, _C, _S, _H = OFFSETS["colour"], OFFSETS["colour"] + 1, OFFSETS["colour"] + 2, OFFSETS["colour"] + 3
_MEAN, _STD, _LAM, _FRAME, _GRID = (OFFSETS["mean"], OFFSETS["std"], OFFSETS["lam"], OFFSETS["frame"],
                                   OFFSETS["grid"])
# What an RGB kernel blends: nothing, a RAD mosaic of the frame it is given, or a frame of the clip itself (BE).
PLAIN, MOSAIC, OWN_FRAME = 0, 1, 2


# --- the x-pass's table permute ---------------------------------------------------------------
LANES, TABLE = 8, 32  # output columns per permute; input columns one permute picks from (two 16-float vectors)
# The planar row and its permute when the columns read are at most this many times the output's: the
# conversion to planar costs per input column, the permute saves per output column.
PLANAR_READ = 1.5


def _target_features() -> str:
    """The CPU features Numba compiles for, as its code generator picks them: NUMBA_CPU_FEATURES, else the host's."""
    from numba.core import config

    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_features().flatten()


def _permute_usable() -> bool:
    """Whether the x-pass compiles its AVX-512 table permute: x86-64 code for a target with AVX-512F."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return "+avx512f" in _target_features().split(",")
    except Exception:  # no feature list: the portable path
        return False


PERMUTE = _permute_usable()


@intrinsic
def _permute_block(typingctx, buf, first, xt, wx, dst, d, c, o):
    """``dst[d, c, o:o+LANES]`` ← ``buf[first + xt[2]]·(1 − wx) + buf[first + xt[3]]·wx`` over the block.

    The ``TABLE`` floats of ``buf`` from ``first`` (a channel's columns, planar) are loaded
    as two vectors and AVX-512's two-table permute (``vpermi2ps``) picks each output
    column's tap from them: two permutes per block where one column at a time takes two
    scalar loads per output column. Compiled only where :data:`PERMUTE` is true (LLVM cannot
    lower the permute for another target). The arrays are C-contiguous float32/int32, as
    the kernels make them.
    """
    arrays = (buf, xt, wx, dst)
    if not all(isinstance(a, nt.Array) and a.layout == "C" for a in arrays) or (
            buf.dtype, xt.dtype, wx.dtype, dst.dtype) != (nt.float32, nt.int32, nt.float32, nt.float32):
        return None
    sig = nt.void(buf, first, xt, wx, dst, d, c, o)

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        from numba.core import cgutils

        tys = signature.args
        i64, i32 = ir.IntType(64), ir.IntType(32)

        def index(k):
            return context.cast(builder, args[k], tys[k], nt.int64)

        def at(k, indices):
            ary = context.make_array(tys[k])(context, builder, args[k])
            return cgutils.get_item_pointer(context, builder, tys[k], ary, indices, wraparound=False)

        def load(ptr, vec):
            return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=4)

        f16, i16 = ir.VectorType(ir.FloatType(), 16), ir.VectorType(i32, 16)
        fl, il = ir.VectorType(ir.FloatType(), LANES), ir.VectorType(i32, LANES)
        widen = ir.Constant(ir.VectorType(i32, 16), [k % LANES for k in range(16)])
        narrow = ir.Constant(ir.VectorType(i32, LANES), list(range(LANES)))
        permute = builder.module.declare_intrinsic("llvm.x86.avx512.vpermi2var.ps.512",
                                                   fnty=ir.FunctionType(f16, [f16, i16, f16]))
        o64 = index(7)
        table = at(0, [index(1)])
        low, high = load(table, f16), load(builder.gep(table, [ir.Constant(i64, 16)]), f16)

        def picked(row):  # the block's taps in row ``row`` of xt, widened to the 16 lanes the permute takes
            tap = load(at(2, [ir.Constant(i64, row), o64]), il)
            v = builder.call(permute, [low, builder.shuffle_vector(tap, tap, widen), high])
            return builder.shuffle_vector(v, v, narrow)

        a, b = picked(2), picked(3)
        weight = load(at(3, [o64]), fl)
        one = ir.Constant(fl, [1.0] * LANES)
        value = builder.fadd(builder.fmul(a, builder.fsub(one, weight)), builder.fmul(b, weight))
        out = at(4, [index(5), index(6), o64])
        builder.store(value, builder.bitcast(out, fl.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _wide_vectors(typingctx):
    """Let LLVM vectorise the calling function's loops with 512-bit vectors (AVX-512), not the 256 it prefers.

    LLVM's tuning for Intel CPUs with AVX-512 prefers 256-bit vectors, for the clock drop
    that 512-bit work once cost. The clip kernels' pixel loops are compute-bound (the
    jitter's four clamped steps): on the development machine the one-pass row loop took
    about a third less CPU with 512-bit vectors. Emits nothing; a no-op where there is
    no permute (:data:`PERMUTE`: no AVX-512F).
    """
    def codegen(context, builder, signature, args):
        if PERMUTE:  # a function attribute (llvmlite's set checks names against a list without it)
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return nt.void(), codegen


# --- colour ------------------------------------------------------------------------------------
@jit
def _nine(a):
    """A (3, 3) float64 matrix as a row-major tuple of nine float32 scalars."""
    return (f32(a[0, 0]), f32(a[0, 1]), f32(a[0, 2]), f32(a[1, 0]), f32(a[1, 1]), f32(a[1, 2]),
            f32(a[2, 0]), f32(a[2, 1]), f32(a[2, 2]))


@jit
def _colour(pack):
    """Brightness, contrast, the contrast pivot, and the saturation and hue matrices (RGB → YIQ → RGB) of ``pack``."""
    s, h = float(pack[_S]), float(pack[_H])
    rad = h * math.pi / 180.0
    co, si = math.cos(rad), math.sin(rad)
    sat = np.zeros((3, 3))
    sat[0, 0], sat[1, 1], sat[2, 2] = 1.0, s, s
    hue = np.zeros((3, 3))
    hue[0, 0] = 1.0
    hue[1, 1], hue[1, 2] = co, si
    hue[2, 1], hue[2, 2] = -si, co
    m = np.zeros((2, 3, 3))
    for i in range(3):  # YIQ→RGB · sat · RGB→YIQ, likewise with hue (no BLAS in compiled code)
        for j in range(3):
            for k in range(3):
                for n in range(3):
                    m[0, i, j] += _RGB[i, k] * sat[k, n] * _YIQ[n, j]
                    m[1, i, j] += _RGB[i, k] * hue[k, n] * _YIQ[n, j]
    ct = pack[_C]
    return pack[_B], ct, f32(128.0) * (f32(1.0) - ct), _nine(m[0]), _nine(m[1])


@jit
def _is_identity(pack):
    """Whether the colour step leaves every pixel as it is (jitter not drawn for the clip): b = c = s = 1, hue 0.

    The resized pixels are uint8 levels, which the clamps keep; skipping the step then differs
    from applying its identity matrices by float rounding only (a few 1e-5 of a level)."""
    return pack[_B] == 1.0 and pack[_C] == 1.0 and pack[_S] == 1.0 and pack[_H] == 0.0


@jit
def _clamp(v):
    return min(max(v, f32(0.0)), f32(255.0))


@jit
def _mix(r, g, b, m):
    """``clamp(m · (r, g, b))`` for a row-major 3 × 3 tuple ``m``."""
    return (_clamp(m[0] * r + m[1] * g + m[2] * b), _clamp(m[3] * r + m[4] * g + m[5] * b),
            _clamp(m[6] * r + m[7] * g + m[8] * b))


@jit
def _jitter(r, g, b, br, ct, pivot, sat, hue):
    """One pixel through brightness, contrast, saturation and hue, each clamped to [0, 255]."""
    r, g, b = _clamp(r * br), _clamp(g * br), _clamp(b * br)
    r, g, b = _clamp(r * ct + pivot), _clamp(g * ct + pivot), _clamp(b * ct + pivot)
    r, g, b = _mix(r, g, b, sat)
    return _mix(r, g, b, hue)


@jit
def _jitter_row(rows, d, br, ct, pivot, sat, hue):
    """The jitter of row ``d`` of ``rows`` (n, 3, W), in place."""
    _wide_vectors()
    for x in range(rows.shape[2]):
        rows[d, 0, x], rows[d, 1, x], rows[d, 2, x] = _jitter(rows[d, 0, x], rows[d, 1, x], rows[d, 2, x], br, ct,
                                                              pivot, sat, hue)


# --- resize ------------------------------------------------------------------------------------
@jit
def _taps(lo, hi, out, limit, first, second, frac):
    """Pixel-centre bilinear taps along one axis, clamped to the image (as the reference)."""
    step = (hi - lo) / out
    for o in range(out):
        src = lo + (o + 0.5) * step - 0.5
        i0 = math.floor(src)
        frac[o] = src - i0
        first[o] = min(max(i0, 0), limit - 1)
        second[o] = min(max(i0 + 1, 0), limit - 1)


@jit
def _geometry(window, roi, oh, ow):
    """The taps of the crop ``roi`` of ``window``'s frames resized to ``oh × ow``, and the order of the two passes.

    ``(ya, yb, wy, xt, wx, blocks, lo, buf, rows_first)``: the input rows of each output row
    and the weight of the second; the x-pass's taps ``xt`` and the number of its permute
    blocks (:func:`_x_taps`), the weight of each output column's second tap; ``lo``, the
    first input column read; ``buf``, float32 room for one row's columns read (``n``) as
    ``3·(n + TABLE)`` values: interleaved, or planar with a channel every ``n + TABLE``
    values when the x-pass permutes (the padding lets a block read a whole table); and the
    order. Along x first every input row that an output row reads is resampled once
    (:func:`_horizontal`); rows first, every output row blends its two input rows, which is
    contiguous and vectorises, and resamples that blend once (:func:`_blended_row`). Rows
    first wins when the crop is taller than the output (more input rows are read than
    there are output rows).
    """
    h, w = window.shape[1], window.shape[2]
    ya, yb, yf = np.empty(oh, np.int64), np.empty(oh, np.int64), np.empty(oh, np.float64)
    xa, xb, xf = np.empty(ow, np.int64), np.empty(ow, np.int64), np.empty(ow, np.float64)
    _taps(float(roi[0]), float(roi[2]), oh, h, ya, yb, yf)
    _taps(float(roi[1]), float(roi[3]), ow, w, xa, xb, xf)
    read = np.zeros(h, np.bool_)
    for o in range(oh):
        read[ya[o]] = True
        read[yb[o]] = True
    lo, hi = min(xa.min(), xb.min()), max(xa.max(), xb.max()) + 1
    xt, blocks = _x_taps(xa - lo, xb - lo, hi - lo <= PLANAR_READ * ow)
    return (ya, yb, yf.astype(np.float32), xt, xf.astype(np.float32), blocks, lo,
            np.zeros(3 * (hi - lo + TABLE), np.float32), read.sum() > oh)


@jit
def _x_taps(a, b, planar):
    """The x-pass's taps from each output column's two input columns ``a``, ``b`` (counted from the first read).

    ``(xt, blocks)``: ``xt`` (5, W) int32 holds ``a`` and ``b`` (their offsets ``3a`` and
    ``3b`` in an interleaved row when ``blocks`` is 0), then per block of ``LANES`` output
    columns the two taps counted from the block's first input column (rows 2 and 3) and
    that column (row 4, at the block's first output column); ``blocks`` is how many leading
    blocks the permute computes: every one whose taps lie within ``TABLE`` columns of its
    first (a crop up to about four times the output's width, flipped or not), and none when
    the row is not ``planar`` or there is no permute (:data:`PERMUTE`): the x-pass then reads
    the interleaved row one column at a time.
    """
    ow = a.shape[0]
    xt = np.zeros((5, ow), np.int32)
    blocks = 0
    if PERMUTE and planar:
        while (blocks + 1) * LANES <= ow:
            o = blocks * LANES
            first = min(a[o:o + LANES].min(), b[o:o + LANES].min())
            if max(a[o:o + LANES].max(), b[o:o + LANES].max()) - first >= TABLE:
                break
            xt[2, o:o + LANES] = a[o:o + LANES] - first
            xt[3, o:o + LANES] = b[o:o + LANES] - first
            xt[4, o] = first
            blocks += 1
    scale = 1 if blocks else 3
    xt[0], xt[1] = scale * a, scale * b
    return xt, blocks


@jit
def _columns(buf, xt, wx, dst, d, first, step):
    """``dst[d]`` (3, W) from output column ``first`` on ← the row ``buf`` resampled along x, one column at a time.

    ``xt[0]``, ``xt[1]`` hold each column's two taps as offsets of their first channel in
    ``buf`` and ``step`` is the distance between channels: 1 in an interleaved row, the
    channel's length in a planar one (the columns after the permute's last block). Unsigned
    offsets: no negative-index wrap-around test per load; float32 taps: the row's bytes were
    converted once each, in a vectorised loop, not once per tap that reads them."""
    one, two = np.uint64(step), np.uint64(2 * step)
    for ox in range(first, dst.shape[2]):
        i, j, t = np.uint64(xt[0, ox]), np.uint64(xt[1, ox]), wx[ox]
        v = f32(1.0) - t
        dst[d, 0, ox] = buf[i] * v + buf[j] * t
        dst[d, 1, ox] = buf[i + one] * v + buf[j + one] * t
        dst[d, 2, ox] = buf[i + two] * v + buf[j + two] * t


if PERMUTE:
    @jit
    def _resample(buf, xt, wx, blocks, dst, d):
        """``dst[d]`` (3, W) ← the row ``buf`` resampled along x (taps ``xt``, weights ``wx``).

        With ``blocks``, ``buf`` is planar and its first blocks of ``LANES`` output columns
        take two table permutes per channel (:func:`_permute_block`) where one column at a
        time takes two scalar loads per channel and column (LLVM emits no gathers for them).
        """
        if blocks == 0:
            _columns(buf, xt, wx, dst, d, 0, 1)
            return
        pitch = buf.shape[0] // 3
        for c in range(3):
            for k in range(blocks):
                o = k * LANES
                _permute_block(buf, c * pitch + xt[4, o], xt, wx, dst, d, c, o)
        _columns(buf, xt, wx, dst, d, blocks * LANES, pitch)
else:
    @jit
    def _resample(buf, xt, wx, blocks, dst, d):
        """``dst[d]`` (3, W) ← the interleaved row ``buf`` resampled along x (no permute here: ``blocks`` is 0)."""
        _columns(buf, xt, wx, dst, d, 0, 1)


@jit
def _horizontal(flat, start, buf, xt, wx, blocks, cache, s):
    """``cache[s]`` (3, W) ← the input row whose columns read begin at byte ``start`` of ``flat`` (the frame's
    bytes), resampled along x (the first pass of the bilinear resize).

    The row's bytes are converted to float32 once each, in a vectorised loop (unsigned
    offsets keep the loads contiguous): as they are, or planar for the permute."""
    _wide_vectors()
    pitch = buf.shape[0] // 3
    if blocks == 0:
        for k in range(3 * (pitch - TABLE)):
            buf[k] = f32(flat[start + np.uint64(k)])
    else:
        for k in range(pitch - TABLE):
            q = start + np.uint64(3 * k)
            buf[k] = f32(flat[q])
            buf[pitch + k] = f32(flat[q + np.uint64(1)])
            buf[2 * pitch + k] = f32(flat[q + np.uint64(2)])
    _resample(buf, xt, wx, blocks, cache, s)


@jit
def _vertical(cache, sa, sb, w, rows, d):
    """``rows[d]`` (3, W) ← ``cache[sa]``·(1 − w) + ``cache[sb]``·w rounded to uint8 levels (floor of x + ½)."""
    _wide_vectors()
    v = f32(1.0) - w
    for c in range(3):
        for ox in range(rows.shape[2]):
            rows[d, c, ox] = np.floor(cache[sa, c, ox] * v + cache[sb, c, ox] * w + f32(0.5))


@jit
def _blended_row(flat, top, bottom, w, buf, xt, wx, blocks, rows, d, rounded=True):
    """``rows[d]`` (3, W) ← the input rows whose columns read begin at bytes ``top`` and ``bottom`` of ``flat``
    blended along y (weight ``w`` on the second) into ``buf`` (as :func:`_horizontal` lays it
    out), then resampled along x and, if ``rounded``, rounded to uint8 levels."""
    _wide_vectors()
    v = f32(1.0) - w
    pitch = buf.shape[0] // 3
    if blocks == 0:
        for k in range(3 * (pitch - TABLE)):
            q = np.uint64(k)
            buf[k] = f32(flat[top + q]) * v + f32(flat[bottom + q]) * w
    else:
        for k in range(pitch - TABLE):
            a, b = top + np.uint64(3 * k), bottom + np.uint64(3 * k)
            buf[k] = f32(flat[a]) * v + f32(flat[b]) * w
            buf[pitch + k] = f32(flat[a + np.uint64(1)]) * v + f32(flat[b + np.uint64(1)]) * w
            buf[2 * pitch + k] = f32(flat[a + np.uint64(2)]) * v + f32(flat[b + np.uint64(2)]) * w
    _resample(buf, xt, wx, blocks, rows, d)
    if rounded:
        for c in range(3):
            for ox in range(rows.shape[2]):
                rows[d, c, ox] = np.floor(rows[d, c, ox] + f32(0.5))


@jit
def _slots(ids, ra, rb):
    """The cache slots of input rows ``ra`` and ``rb``, and whether each must be resampled; ``ids`` updated.

    A new row goes to the slot the other tap does not use, so nothing is copied between
    slots (``rb``'s slot is ``ra``'s when the two are one row: the image's last row)."""
    sa = 0 if ids[0] == ra else (1 if ids[1] == ra else -1)
    new_a = sa < 0
    if new_a:
        sa = 1 if ids[0] == rb else 0
        ids[sa] = ra
    sb = 0 if ids[0] == rb else (1 if ids[1] == rb else -1)
    new_b = sb < 0
    if new_b:
        sb = 1 - sa
        ids[sb] = rb
    return sa, sb, new_a, new_b


@jit
def _resized_rows(frame, oy0, ya, yb, wy, xt, wx, blocks, lo, buf, rows_first, cache, ids, rows, to=None):
    """``rows`` (n, 3, W) ← output rows ``oy0 … oy0 + n − 1`` of the crop of ``frame``, rounded to uint8 levels
    like ``fn.resize``; with ``to``, those rows finished into a clip instead (:func:`_finish_row`).

    Bilinear, in the order :func:`_geometry` chose. Along x first (the reference's order),
    ``cache`` (2, 3, W) holds the x-pass of the input rows ``ids`` (one per slot) from one
    call to the next, so consecutive output rows that share input rows (an enlarged crop)
    resample each input row once (:func:`_slots`); set ``ids`` to -1 for a new frame. Both
    orders compute the same bilinear sum; float32 rounding can move a value on a rounding
    tie by one level.

    A band of rows per call, and the buffers passed whole with an index: a call or a view
    per output row, with the arrays it takes, cost as much reference counting and argument
    passing as a 112² row's arithmetic.
    """
    flat = frame.reshape(frame.size)
    pitch, first = 3 * frame.shape[1], 3 * lo
    for d in range(rows.shape[0]):
        oy = oy0 + d
        ra, rb = ya[oy], yb[oy]
        top, bottom = np.uint64(ra * pitch + first), np.uint64(rb * pitch + first)
        if rows_first:
            if to is None:
                _blended_row(flat, top, bottom, wy[oy], buf, xt, wx, blocks, rows, d)
            else:  # into the cache's first slot (unused rows first), rounded as it is finished (x·1 + x·0)
                _blended_row(flat, top, bottom, wy[oy], buf, xt, wx, blocks, cache, 0, False)
                _finish_row(cache, 0, 0, f32(0.0), oy, to)
            continue
        sa, sb, new_a, new_b = _slots(ids, ra, rb)
        if new_a:
            _horizontal(flat, top, buf, xt, wx, blocks, cache, sa)
        if new_b:
            _horizontal(flat, bottom, buf, xt, wx, blocks, cache, sb)
        if to is None:
            _vertical(cache, sa, sb, wy[oy], rows, d)
        else:
            _finish_row(cache, sa, sb, wy[oy], oy, to)


@jit
def _level(src, sa, sb, v, w, c, ox):
    """Channel ``c`` of column ``ox``: ``src[sa]·v + src[sb]·w`` rounded to a uint8 level (floor of x + ½)."""
    return np.floor(src[sa, c, ox] * v + src[sb, c, ox] * w + f32(0.5))


@jit
def _store(out, t, oy, ox, r, g, b, mean, inv):
    """``out[:, t, oy, ox]`` ← ``(r, g, b)`` normalised: ``(x − mean)·inv_std`` per channel."""
    out[0, t, oy, ox] = (r - mean[0]) * inv[0]
    out[1, t, oy, ox] = (g - mean[1]) * inv[1]
    out[2, t, oy, ox] = (b - mean[2]) * inv[2]


@jit
def _mixed(r, g, b, blend, e, ox, lam):
    """``(r, g, b) + λ·(blend[e, :, ox] − (r, g, b))``: a pixel blended with row ``e`` of ``blend``."""
    return r + lam * (blend[e, 0, ox] - r), g + lam * (blend[e, 1, ox] - g), b + lam * (blend[e, 2, ox] - b)


@jit
def _finish_row(src, sa, sb, w, oy, to):
    """Output row ``oy`` of a clip, in one pass over its pixels: the vertical blend ``src[sa]·(1 − w) + src[sb]·w``
    rounded to uint8 levels, jittered, blended, normalised.

    ``to`` = ``(out, t, jitter, br, ct, pivot, sat, hue, blend, period, lam, blended, mean, inv)``:
    the clip (3, T, H, W) and its frame ``t``; whether to jitter and the jitter's terms
    (:func:`_colour`); the rows to blend (row ``oy mod period``) with ``λ``, if ``blended``;
    the normalisation. One loop per combination, so no pixel loop branches; each step
    reads and writes registers, not a row buffer in between.
    """
    _wide_vectors()
    out, t, jitter, br, ct, pivot, sat, hue, blend, period, lam, blended, mean, inv = to
    v = f32(1.0) - w
    e = oy % period
    if jitter and blended:
        for ox in range(out.shape[3]):
            r, g, b = _jitter(_level(src, sa, sb, v, w, 0, ox), _level(src, sa, sb, v, w, 1, ox),
                              _level(src, sa, sb, v, w, 2, ox), br, ct, pivot, sat, hue)
            r, g, b = _mixed(r, g, b, blend, e, ox, lam)
            _store(out, t, oy, ox, r, g, b, mean, inv)
    elif jitter:
        for ox in range(out.shape[3]):
            r, g, b = _jitter(_level(src, sa, sb, v, w, 0, ox), _level(src, sa, sb, v, w, 1, ox),
                              _level(src, sa, sb, v, w, 2, ox), br, ct, pivot, sat, hue)
            _store(out, t, oy, ox, r, g, b, mean, inv)
    elif blended:
        for ox in range(out.shape[3]):
            r, g, b = _mixed(_level(src, sa, sb, v, w, 0, ox), _level(src, sa, sb, v, w, 1, ox),
                             _level(src, sa, sb, v, w, 2, ox), blend, e, ox, lam)
            _store(out, t, oy, ox, r, g, b, mean, inv)
    else:
        for ox in range(out.shape[3]):
            _store(out, t, oy, ox, _level(src, sa, sb, v, w, 0, ox), _level(src, sa, sb, v, w, 1, ox),
                   _level(src, sa, sb, v, w, 2, ox), mean, inv)


# --- residual, normalisation scales --------------------------------------------------------------------------
@jit
def _difference(rows, a, b, d, out, t, oy, inv_std):
    """Output row ``oy`` of frame ``t`` of ``out`` ← ``|rows[a, d] − rows[b, d]|·inv_std``, per channel."""
    _wide_vectors()
    for c in range(3):
        s = inv_std[c]
        for ox in range(out.shape[3]):
            out[c, t, oy, ox] = abs(rows[a, d, c, ox] - rows[b, d, c, ox]) * s


@jit
def _scales(pack):
    """``(mean_r, mean_g, mean_b)`` and ``(1/std_r, 1/std_g, 1/std_b)`` in pixel units, float32."""
    one = f32(1.0)
    return ((pack[_MEAN], pack[_MEAN + 1], pack[_MEAN + 2]),
            (one / pack[_STD], one / pack[_STD + 1], one / pack[_STD + 2]))


# --- kernels -----------------------------------------------------------------------------------
BAND = 8  # output rows resized per call: a band (8 × 3 × W floats) stays in the first-level cache


@jit
def _mosaic(noise, k, oh, ow):
    """The RAD noise ``(th, 3, W)`` float32: the rows of one period of the ``k × k`` mosaic of ``noise``.

    ``noise`` (1, h, w, 3) uint8 is resized whole to one tile of ``ceil(H/k) × ceil(W/k)``
    (rounded to uint8 levels like ``fn.resize``); output row ``y`` of the mosaic is row
    ``y mod th`` of the result, and column ``x`` reads the tile's column ``x mod tw``.
    """
    th, tw = (oh + k - 1) // k, (ow + k - 1) // k
    frame = noise[0]
    whole = np.array([0.0, 0.0, frame.shape[0], frame.shape[1]], np.float32)
    ya, yb, wy, xt, wx, blocks, lo, buf, rows_first = _geometry(noise, whole, th, tw)
    tile = np.empty((th, 3, tw), np.float32)
    _resized_rows(frame, 0, ya, yb, wy, xt, wx, blocks, lo, buf, rows_first, np.empty((2, 3, tw), np.float32),
                  np.full(2, -1, np.int64), tile)
    rows = np.empty((th, 3, ow), np.float32)
    for ty in range(th):
        for c in range(3):
            for x in range(ow):
                rows[ty, c, x] = tile[ty, c, x % tw]
    return rows


@jit
def _rgb_kernel(out, idx, window, roi, pack, noise, mode):
    """RGB clip ``out`` (3, T, H, W) of the window frames ``idx``; ``mode`` says what it blends with λ = pack[lam].

    PLAIN: nothing; MOSAIC: the ``pack[grid]²`` mosaic of ``noise``, a (1, h, w, 3) uint8
    frame (RAD); OWN_FRAME: frame ``pack[frame]`` of the clip itself, after colour (BE).
    Frame by frame, a band of output rows at a time: resized, jittered, blended, normalised.
    """
    oh, ow = out.shape[2], out.shape[3]
    br, ct, pivot, sat, hue = _colour(pack)
    mean, inv = _scales(pack)
    ya, yb, wy, xt, wx, blocks, lo, buf, rows_first = _geometry(window, roi, oh, ow)
    rows = np.empty((BAND, 3, ow), np.float32)
    cache = np.empty((2, 3, ow), np.float32)
    ids = np.empty(2, np.int64)
    lam = pack[_LAM]
    jitter = not _is_identity(pack)
    if mode == MOSAIC:
        blend = _mosaic(noise, int(pack[_GRID]), oh, ow)
    else:  # per output row, planar
        blend = np.empty((oh if mode == OWN_FRAME else 1, 3, ow), np.float32)
    if mode == OWN_FRAME:
        ids[:] = -1
        _resized_rows(window[idx[int(pack[_FRAME])]], 0, ya, yb, wy, xt, wx, blocks, lo, buf, rows_first, cache, ids,
                      blend)
        if jitter:
            for oy in range(oh):
                _jitter_row(blend, oy, br, ct, pivot, sat, hue)
    for t in range(out.shape[1]):
        frame = window[idx[t]]
        ids[:] = -1
        to = (out, t, jitter, br, ct, pivot, sat, hue, blend, blend.shape[0], lam, mode != PLAIN, mean, inv)
        for oy0 in range(0, oh, BAND):
            _resized_rows(frame, oy0, ya, yb, wy, xt, wx, blocks, lo, buf, rows_first, cache, ids,
                          rows[:min(BAND, oh - oy0)], to)


@jit
def _distinct(idx, count):
    """The distinct frames of ``idx`` (of a window of ``count``) in first-seen order, and each entry's place among them."""
    slot = np.full(count, -1, np.int64)
    order = np.empty(idx.shape[0], np.int64)
    which = np.empty(idx.shape[0], np.int64)
    distinct = 0
    for i in range(idx.shape[0]):
        f = idx[i]
        if slot[f] < 0:
            slot[f] = distinct
            order[distinct] = f
            distinct += 1
        which[i] = slot[f]
    return order[:distinct], which


@jit
def _residual_kernel(out, idx, window, roi, pack):
    """``|J(a) − J(b)| / std`` of the clip's frames ``idx[:T]`` and their partners ``idx[T:]`` (J: the jitter).

    A frame that is both a clip frame and a partner (the gap is shorter than the clip) is
    resized and jittered once: a band of output rows at a time, every distinct frame's band first.
    """
    oh, ow, frames = out.shape[2], out.shape[3], out.shape[1]
    br, ct, pivot, sat, hue = _colour(pack)
    _, inv = _scales(pack)
    ya, yb, wy, xt, wx, blocks, lo, buf, rows_first = _geometry(window, roi, oh, ow)
    jitter = not _is_identity(pack)
    order, which = _distinct(idx, window.shape[0])
    distinct = order.shape[0]
    rows = np.empty((distinct, BAND, 3, ow), np.float32)
    cache = np.empty((distinct, 2, 3, ow), np.float32)
    ids = np.full((distinct, 2), -1, np.int64)
    for oy0 in range(0, oh, BAND):
        n = min(BAND, oh - oy0)
        for u in range(distinct):
            band = rows[u, :n]
            _resized_rows(window[order[u]], oy0, ya, yb, wy, xt, wx, blocks, lo, buf, rows_first, cache[u], ids[u],
                          band)
            if jitter:
                for d in range(n):
                    _jitter_row(band, d, br, ct, pivot, sat, hue)
        for t in range(frames):
            for d in range(n):
                _difference(rows, which[t], which[frames + t], d, out, t, oy0 + d, inv)


# --- DALI entry points ---------------------------------------------------------------------------
# Inputs of every operator: idx (int32, 1-D), window (uint8, F×H×W×3), roi (float32, 4), pack
# (float32, PACK_LENGTH), size (uint8, H×W×0: carries the output size in its shape); RAD adds
# the lender's frame (uint8, 1×h×w×3), of which the kernel builds the mosaic. One float32 output (3, T, H, W).
RUN_SIG = nt.void(nt.uint64, nt.uint64, nt.uint64, nt.int32, nt.uint64, nt.uint64, nt.uint64, nt.int32)
SETUP_SIG = nt.void(nt.uint64, nt.uint64, nt.int32, nt.uint64, nt.uint64, nt.int32, nt.int32)


@jit
def _shape(shapes_ptr, ndims_ptr, which, count, sample, samples):
    """The shape of input/output ``which`` of sample ``sample`` (DALI's pointer tables)."""
    ndims = carray(_ptr(ndims_ptr), count, dtype=np.int32)
    table = carray(_ptr(shapes_ptr), (count, samples), dtype=np.int64)
    return carray(_ptr(table[which, sample]), ndims[which], dtype=np.int64)


@jit
def _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    data = carray(_ptr(in_ptr), num_ins, dtype=np.int64)
    s0 = _shape(in_shapes_ptr, in_ndims_ptr, 0, num_ins, 0, 1)
    s1 = _shape(in_shapes_ptr, in_ndims_ptr, 1, num_ins, 0, 1)
    s3 = _shape(in_shapes_ptr, in_ndims_ptr, 3, num_ins, 0, 1)
    idx = carray(_ptr(data[0]), s0[0], dtype=np.int32)
    window = carray(_ptr(data[1]), (s1[0], s1[1], s1[2], s1[3]), dtype=np.uint8)
    roi = carray(_ptr(data[2]), 4, dtype=np.float32)
    pack = carray(_ptr(data[3]), s3[0], dtype=np.float32)
    return idx, window, roi, pack, data


@jit
def _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs):
    data = carray(_ptr(out_ptr), num_outs, dtype=np.int64)
    s = _shape(out_shapes_ptr, out_ndims_ptr, 0, num_outs, 0, 1)
    return carray(_ptr(data[0]), (s[0], s[1], s[2], s[3]), dtype=np.float32)


@cfunc(RUN_SIG, nopython=True, cache=True)
def run_rgb(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    out = _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs)
    idx, window, roi, pack, data = _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins)
    _rgb_kernel(out, idx, window, roi, pack, window[:1], PLAIN)


@cfunc(RUN_SIG, nopython=True, cache=True)
def run_be(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    out = _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs)
    idx, window, roi, pack, data = _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins)
    _rgb_kernel(out, idx, window, roi, pack, window[:1], OWN_FRAME)


@cfunc(RUN_SIG, nopython=True, cache=True)
def run_rad(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    out = _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs)
    idx, window, roi, pack, data = _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins)
    s5 = _shape(in_shapes_ptr, in_ndims_ptr, 5, num_ins, 0, 1)
    noise = carray(_ptr(data[5]), (s5[0], s5[1], s5[2], s5[3]), dtype=np.uint8)
    _rgb_kernel(out, idx, window, roi, pack, noise, MOSAIC)


@cfunc(RUN_SIG, nopython=True, cache=True)
def run_residual(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    out = _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs)
    idx, window, roi, pack, data = _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins)
    _residual_kernel(out, idx, window, roi, pack)


@jit
def _setup(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples, per):
    for i in range(num_samples):
        out = _shape(out_shapes_ptr, out_ndims_ptr, 0, num_outs, i, num_samples)
        idx = _shape(in_shapes_ptr, in_ndims_ptr, 0, num_ins, i, num_samples)
        size = _shape(in_shapes_ptr, in_ndims_ptr, 4, num_ins, i, num_samples)
        out[0] = 3
        out[1] = idx[0] // per
        out[2] = size[0]
        out[3] = size[1]


@cfunc(SETUP_SIG, nopython=True, cache=True)
def setup_clip(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples):
    _setup(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples, 1)


@cfunc(SETUP_SIG, nopython=True, cache=True)
def setup_residual(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples):
    _setup(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples, 2)
