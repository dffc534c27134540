"""The Numba kernels of :mod:`.fused` and their DALI entry points (imported only when Numba is).

Every function is compiled with ``cache=True``: the first process on a machine compiles
them (about 10 s) and writes the machine code next to this file (or to
``NUMBA_CACHE_DIR``; Numba falls back to a cache folder in the user's home when this
folder is read-only); later processes load it in well under a second.

Written so that LLVM vectorises the pixel loops (``tests/pipelines/test_kernels.py`` counts
the vector operations of the compiled kernels): a row is planar, ``(3, W)`` float32, and
every step is a loop of its own over contiguous pixels (resample, jitter, blend,
normalise); the jitter takes and returns scalars, its matrices are tuples of float32
scalars, nothing is allocated per row and no float64 enters a pixel loop.

The DALI entry points are C callbacks with the signatures of DALI's ``NumbaFunc``
operator (``nvidia.dali.plugin.numba``): one run per sample, one setup per batch. They
read their arrays from the pointers DALI passes, as the plugin's own wrappers do; the
plugin is not used to build them because it compiles afresh, without a cache, for every
operator object (seconds per clip size per process).
"""
from __future__ import annotations

import math

import numpy as np
from numba import carray, cfunc, njit
from numba import types as nt
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
def _jitter_row(row, br, ct, pivot, sat, hue):
    """The jitter of a planar ``(3, W)`` row, in place."""
    r, g, b = row[0], row[1], row[2]
    for x in range(row.shape[1]):
        r[x], g[x], b[x] = _jitter(r[x], g[x], b[x], br, ct, pivot, sat, hue)


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
    h, w = window.shape[1], window.shape[2]
    ya, yb, yf = np.empty(oh, np.int64), np.empty(oh, np.int64), np.empty(oh, np.float64)
    xa, xb, xf = np.empty(ow, np.int64), np.empty(ow, np.int64), np.empty(ow, np.float64)
    _taps(float(roi[0]), float(roi[2]), oh, h, ya, yb, yf)
    _taps(float(roi[1]), float(roi[3]), ow, w, xa, xb, xf)
    return ya, yb, yf.astype(np.float32), xa, xb, xf.astype(np.float32)


@jit
def _horizontal(src, xa, xb, wx, dst):
    """``dst`` (3, W) float32 ← one input row resampled along x (the first pass of the bilinear resize)."""
    r, g, b = dst[0], dst[1], dst[2]
    for ox in range(dst.shape[1]):
        i, j, u = xa[ox], xb[ox], wx[ox]
        v = f32(1.0) - u
        r[ox] = f32(src[i, 0]) * v + f32(src[j, 0]) * u
        g[ox] = f32(src[i, 1]) * v + f32(src[j, 1]) * u
        b[ox] = f32(src[i, 2]) * v + f32(src[j, 2]) * u


@jit
def _vertical(top, bottom, w, row):
    """``row`` (3, W) ← ``top``·(1 − w) + ``bottom``·w rounded to uint8 levels (values ≥ 0: floor of x + ½)."""
    v = f32(1.0) - w
    for c in range(3):
        t, b, o = top[c], bottom[c], row[c]
        for ox in range(o.shape[0]):
            o[ox] = np.floor(t[ox] * v + b[ox] * w + f32(0.5))


@jit
def _slot(ids, r):
    """The slot of ``cache`` that holds input row ``r``'s x-pass, or -1."""
    return 0 if ids[0] == r else (1 if ids[1] == r else -1)


@jit
def _resized_row(frame, oy, ya, yb, wy, xa, xb, wx, cache, ids, row):
    """``row`` (3, W) ← output row ``oy`` of the crop of ``frame``, rounded to uint8 levels like ``fn.resize``.

    Bilinear in the reference's order (along x, then y). ``cache`` (2, 3, W) holds the x-pass
    of the input rows ``ids`` (one per slot), so consecutive output rows that share input rows
    (an enlarged crop) resample each input row once; a new row goes to the slot the other
    tap does not use, so nothing is copied between slots. Set ``ids`` to -1 for a new frame.
    """
    ra, rb = ya[oy], yb[oy]
    sa = _slot(ids, ra)
    if sa < 0:
        sa = 1 if ids[0] == rb else 0
        _horizontal(frame[ra], xa, xb, wx, cache[sa])
        ids[sa] = ra
    sb = _slot(ids, rb)  # ra's slot when rb == ra (the image's last row)
    if sb < 0:
        sb = 1 - sa
        _horizontal(frame[rb], xa, xb, wx, cache[sb])
        ids[sb] = rb
    _vertical(cache[sa], cache[sb], wy[oy], row)


# --- blend, normalise --------------------------------------------------------------------------
@jit
def _blend(row, noise, lam):
    """``row`` (3, W) ← ``row + λ·(noise − row)``, in place."""
    for c in range(3):
        x, n = row[c], noise[c]
        for ox in range(x.shape[0]):
            x[ox] = x[ox] + lam * (n[ox] - x[ox])


@jit
def _normalise(src, dst, mean, inv_std):
    """One channel: ``dst ← (src − mean)·inv_std``."""
    for ox in range(dst.shape[0]):
        dst[ox] = (src[ox] - mean) * inv_std


@jit
def _difference(a, b, dst, inv_std):
    """One channel: ``dst ← |a − b|·inv_std``."""
    for ox in range(dst.shape[0]):
        dst[ox] = abs(a[ox] - b[ox]) * inv_std


@jit
def _scales(pack):
    """``(mean_r, mean_g, mean_b)`` and ``(1/std_r, 1/std_g, 1/std_b)`` in pixel units, float32."""
    one = f32(1.0)
    return ((pack[_MEAN], pack[_MEAN + 1], pack[_MEAN + 2]),
            (one / pack[_STD], one / pack[_STD + 1], one / pack[_STD + 2]))


# --- kernels -----------------------------------------------------------------------------------
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
    ya, yb, wy, xa, xb, wx = _geometry(noise, whole, th, tw)
    cache = np.empty((2, 3, tw), np.float32)
    ids = np.full(2, -1, np.int64)
    tile = np.empty((3, tw), np.float32)
    rows = np.empty((th, 3, ow), np.float32)
    for ty in range(th):
        _resized_row(frame, ty, ya, yb, wy, xa, xb, wx, cache, ids, tile)
        for c in range(3):
            for x in range(ow):
                rows[ty, c, x] = tile[c, x % tw]
    return rows


@jit
def _rgb_kernel(out, idx, window, roi, pack, noise, mode):
    """RGB clip ``out`` (3, T, H, W) of the window frames ``idx``; ``mode`` says what it blends with λ = pack[lam].

    PLAIN: nothing; MOSAIC: the ``pack[grid]²`` mosaic of ``noise``, a (1, h, w, 3) uint8
    frame (RAD); OWN_FRAME: frame ``pack[frame]`` of the clip itself, after colour (BE).
    """
    oh, ow = out.shape[2], out.shape[3]
    br, ct, pivot, sat, hue = _colour(pack)
    mean, inv = _scales(pack)
    ya, yb, wy, xa, xb, wx = _geometry(window, roi, oh, ow)
    row = np.empty((3, ow), np.float32)
    cache = np.empty((2, 3, ow), np.float32)
    ids = np.empty(2, np.int64)
    lam = pack[_LAM]
    jitter = not _is_identity(pack)
    if mode == MOSAIC:
        blend = _mosaic(noise, int(pack[_GRID]), oh, ow)
    else:  # per output row, planar
        blend = np.empty((oh if mode == OWN_FRAME else 1, 3, ow), np.float32)
    if mode == OWN_FRAME:
        f = idx[int(pack[_FRAME])]
        ids[:] = -1
        for oy in range(oh):
            _resized_row(window[f], oy, ya, yb, wy, xa, xb, wx, cache, ids, blend[oy])
            if jitter:
                _jitter_row(blend[oy], br, ct, pivot, sat, hue)
    period = blend.shape[0]
    for t in range(out.shape[1]):
        frame = window[idx[t]]
        ids[:] = -1
        for oy in range(oh):
            _resized_row(frame, oy, ya, yb, wy, xa, xb, wx, cache, ids, row)
            if jitter:
                _jitter_row(row, br, ct, pivot, sat, hue)
            if mode != PLAIN:
                _blend(row, blend[oy % period], lam)
            _normalise(row[0], out[0, t, oy], mean[0], inv[0])
            _normalise(row[1], out[1, t, oy], mean[1], inv[1])
            _normalise(row[2], out[2, t, oy], mean[2], inv[2])


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
    resized and jittered once: output row by output row, every distinct frame's row first.
    """
    oh, ow, frames = out.shape[2], out.shape[3], out.shape[1]
    br, ct, pivot, sat, hue = _colour(pack)
    _, inv = _scales(pack)
    ya, yb, wy, xa, xb, wx = _geometry(window, roi, oh, ow)
    jitter = not _is_identity(pack)
    order, which = _distinct(idx, window.shape[0])
    distinct = order.shape[0]
    rows = np.empty((distinct, 3, ow), np.float32)
    cache = np.empty((distinct, 2, 3, ow), np.float32)
    ids = np.full((distinct, 2), -1, np.int64)
    for oy in range(oh):
        for u in range(distinct):
            _resized_row(window[order[u]], oy, ya, yb, wy, xa, xb, wx, cache[u], ids[u], rows[u])
            if jitter:
                _jitter_row(rows[u], br, ct, pivot, sat, hue)
        for t in range(frames):
            a, b = rows[which[t]], rows[which[frames + t]]
            _difference(a[0], b[0], out[0, t, oy], inv[0])
            _difference(a[1], b[1], out[1, t, oy], inv[1])
            _difference(a[2], b[2], out[2, t, oy], inv[2])


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
