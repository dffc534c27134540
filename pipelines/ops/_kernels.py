"""The Numba kernels of :mod:`.fused` and their DALI entry points (imported only when Numba is).

Every function is compiled with ``cache=True``: the first process on a machine compiles
them (about 10 s) and writes the machine code next to this file (or to
``NUMBA_CACHE_DIR``); later processes load it in well under a second.

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


# --- kernels ------------------------------------------------------------------------------------
@jit
def _colour(pack, m):
    """``m`` (2, 3, 3) ← the saturation and hue matrices of ``pack[:4]`` (YIQ space, back to RGB).

    Brightness ``pack[0]`` and contrast ``pack[1]`` are scalar maps, applied by :func:`_jitter`.
    """
    s, h = pack[2], pack[3]
    rad = h * math.pi / 180.0
    co, si = math.cos(rad), math.sin(rad)
    sat = np.zeros((3, 3))
    sat[0, 0], sat[1, 1], sat[2, 2] = 1.0, s, s
    hue = np.zeros((3, 3))
    hue[0, 0] = 1.0
    hue[1, 1], hue[1, 2] = co, si
    hue[2, 1], hue[2, 2] = -si, co
    for i in range(3):  # m[0] = YIQ→RGB · sat · RGB→YIQ, m[1] likewise with hue (no BLAS in compiled code)
        for j in range(3):
            a0 = 0.0
            a1 = 0.0
            for k in range(3):
                for n in range(3):
                    a0 += _RGB[i, k] * sat[k, n] * _YIQ[n, j]
                    a1 += _RGB[i, k] * hue[k, n] * _YIQ[n, j]
            m[0, i, j] = a0
            m[1, i, j] = a1


@jit
def _clamp(v):
    return min(max(v, np.float32(0.0)), np.float32(255.0))


@jit
def _jitter(r, g, b, br, ct, m, out):
    """``out`` (3,) ← brightness ``br``, contrast ``ct``, saturation ``m[0]``, hue ``m[1]``, each clamped to [0, 255]."""
    pivot = np.float32(128.0) * (np.float32(1.0) - ct)
    r, g, b = _clamp(r * br), _clamp(g * br), _clamp(b * br)
    r, g, b = _clamp(r * ct + pivot), _clamp(g * ct + pivot), _clamp(b * ct + pivot)
    for k in range(2):
        x = _clamp(m[k, 0, 0] * r + m[k, 0, 1] * g + m[k, 0, 2] * b)
        y = _clamp(m[k, 1, 0] * r + m[k, 1, 1] * g + m[k, 1, 2] * b)
        z = _clamp(m[k, 2, 0] * r + m[k, 2, 1] * g + m[k, 2, 2] * b)
        r, g, b = x, y, z
    out[0], out[1], out[2] = r, g, b


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
def _horizontal(src, xa, xb, wx, dst):
    """``dst`` (W, 3) float32 ← one input row resampled along x (the first pass of the bilinear resize)."""
    one = np.float32(1.0)
    for ox in range(dst.shape[0]):
        a, b, u = xa[ox], xb[ox], wx[ox]
        v = one - u
        dst[ox, 0] = src[a, 0] * v + src[b, 0] * u
        dst[ox, 1] = src[a, 1] * v + src[b, 1] * u
        dst[ox, 2] = src[a, 2] * v + src[b, 2] * u


@jit
def _resized_row(frame, oy, ya, yb, wy, xa, xb, wx, cache, ids, row):
    """``row`` (W, 3) ← output row ``oy`` of the crop of ``frame``, rounded to uint8 levels like ``fn.resize``.

    Bilinear in the reference's order (along x, then y). ``cache`` holds the x-pass of the
    two input rows ``ids`` last used, so consecutive output rows that share input rows (an
    enlarged crop) resample each input row once; set ``ids`` to -1 for a new frame.
    """
    ra, rb = ya[oy], yb[oy]
    if ids[0] != ra:
        if ids[1] == ra:
            cache[0, :, :] = cache[1]
        else:
            _horizontal(frame[ra], xa, xb, wx, cache[0])
        ids[0] = ra
    if ids[1] != rb:
        if rb == ra:
            cache[1, :, :] = cache[0]
        else:
            _horizontal(frame[rb], xa, xb, wx, cache[1])
        ids[1] = rb
    w = wy[oy]
    v = np.float32(1.0) - w
    half = np.float32(0.5)
    top, bottom = cache[0], cache[1]
    for ox in range(row.shape[0]):  # values are >= 0: truncation is the floor of x + ½
        row[ox, 0] = np.float32(int(top[ox, 0] * v + bottom[ox, 0] * w + half))
        row[ox, 1] = np.float32(int(top[ox, 1] * v + bottom[ox, 1] * w + half))
        row[ox, 2] = np.float32(int(top[ox, 2] * v + bottom[ox, 2] * w + half))


@jit
def _geometry(window, roi, oh, ow):
    h, w = window.shape[1], window.shape[2]
    ya, yb, yf = np.empty(oh, np.int64), np.empty(oh, np.int64), np.empty(oh, np.float64)
    xa, xb, xf = np.empty(ow, np.int64), np.empty(ow, np.int64), np.empty(ow, np.float64)
    _taps(float(roi[0]), float(roi[2]), oh, h, ya, yb, yf)
    _taps(float(roi[1]), float(roi[3]), ow, w, xa, xb, xf)
    return ya, yb, yf.astype(np.float32), xa, xb, xf.astype(np.float32)


@jit
def _write(out, t, oy, row, br, ct, m, mean, inv_std, noise_row, lam):
    """Colour, blend (``lam`` > 0 with ``noise_row``) and normalise one row into ``out[:, t, oy]``."""
    px = np.empty(3, np.float32)
    for ox in range(row.shape[0]):
        _jitter(row[ox, 0], row[ox, 1], row[ox, 2], br, ct, m, px)
        for c in range(3):
            v = px[c]
            if lam > 0.0:
                v = v + lam * (noise_row[ox, c] - v)
            out[c, t, oy, ox] = (v - mean[c]) * inv_std[c]


@jit
def _unpack(pack):
    m = np.empty((2, 3, 3), np.float32)
    _colour(pack, m)
    mean = np.empty(3, np.float32)
    inv_std = np.empty(3, np.float32)
    for c in range(3):
        mean[c] = pack[4 + c]
        inv_std[c] = 1.0 / pack[7 + c]
    return pack[0], pack[1], m, mean, inv_std


@jit
def _rgb_kernel(out, idx, window, roi, pack, noise):
    """RGB clip; RAD blend when ``noise`` is a (1, H, W, 3) frame and pack[10] = λ; BE when pack has 12."""
    oh, ow = out.shape[2], out.shape[3]
    br, ct, m, mean, inv_std = _unpack(pack)
    ya, yb, wy, xa, xb, wx = _geometry(window, roi, oh, ow)
    row = np.empty((ow, 3), np.float32)
    cache = np.empty((2, ow, 3), np.float32)
    ids = np.empty(2, np.int64)
    lam = 0.0
    blend = np.zeros((oh, ow, 3), np.float32) if pack.shape[0] > 10 else np.zeros((1, ow, 3), np.float32)
    if pack.shape[0] == 11:  # RAD: the mosaic frame, uint8
        lam = pack[10]
        for y in range(oh):
            for x in range(ow):
                for c in range(3):
                    blend[y, x, c] = noise[0, y, x, c]
    elif pack.shape[0] == 12:  # BE: frame pack[11] of the clip itself, after colour
        lam = pack[10]
        f = idx[int(pack[11])]
        ids[:] = -1
        for oy in range(oh):
            _resized_row(window[f], oy, ya, yb, wy, xa, xb, wx, cache, ids, row)
            for ox in range(ow):
                _jitter(row[ox, 0], row[ox, 1], row[ox, 2], br, ct, m, blend[oy, ox])
    for t in range(out.shape[1]):
        frame = window[idx[t]]
        ids[:] = -1
        for oy in range(oh):
            _resized_row(frame, oy, ya, yb, wy, xa, xb, wx, cache, ids, row)
            _write(out, t, oy, row, br, ct, m, mean, inv_std, blend[oy if lam > 0.0 else 0], lam)


@jit
def _residual_kernel(out, idx, window, roi, pack):
    """``|J(a) − J(b)| / std`` of the clip's frames ``idx[:T]`` and their partners ``idx[T:]`` (J: the jitter)."""
    oh, ow, frames = out.shape[2], out.shape[3], out.shape[1]
    br, ct, m, mean, inv_std = _unpack(pack)
    pa, pb = np.empty(3, np.float32), np.empty(3, np.float32)
    ya, yb, wy, xa, xb, wx = _geometry(window, roi, oh, ow)
    first = np.empty((ow, 3), np.float32)
    second = np.empty((ow, 3), np.float32)
    cache_a, cache_b = np.empty((2, ow, 3), np.float32), np.empty((2, ow, 3), np.float32)
    ids_a, ids_b = np.empty(2, np.int64), np.empty(2, np.int64)
    for t in range(frames):
        fa, fb = window[idx[t]], window[idx[frames + t]]
        ids_a[:] = -1
        ids_b[:] = -1
        for oy in range(oh):
            _resized_row(fa, oy, ya, yb, wy, xa, xb, wx, cache_a, ids_a, first)
            _resized_row(fb, oy, ya, yb, wy, xa, xb, wx, cache_b, ids_b, second)
            for ox in range(ow):
                _jitter(first[ox, 0], first[ox, 1], first[ox, 2], br, ct, m, pa)
                _jitter(second[ox, 0], second[ox, 1], second[ox, 2], br, ct, m, pb)
                for c in range(3):
                    out[c, t, oy, ox] = abs(pa[c] - pb[c]) * inv_std[c]


# --- DALI entry points ---------------------------------------------------------------------------
# Inputs of every operator: idx (int32, 1-D), window (uint8, F×H×W×3), roi (float32, 4), pack
# (float32), size (uint8, H×W×0: carries the output size in its shape); RAD adds the noise
# (uint8, 1×H×W×3). One float32 output (3, T, H, W).
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
    _rgb_kernel(out, idx, window, roi, pack, window[:1, :1, :1])


@cfunc(RUN_SIG, nopython=True, cache=True)
def run_rad(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
    out = _output(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs)
    idx, window, roi, pack, data = _inputs(in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins)
    s5 = _shape(in_shapes_ptr, in_ndims_ptr, 5, num_ins, 0, 1)
    noise = carray(_ptr(data[5]), (s5[0], s5[1], s5[2], s5[3]), dtype=np.uint8)
    _rgb_kernel(out, idx, window, roi, pack, noise)


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
