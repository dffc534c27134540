"""Fused CPU clip operators: cut, crop/flip/resize, colour, blend and normalisation in one pass.

On the CPU, DALI runs every step of a clip as its own operator over the whole clip:
``sequence_rearrange`` (cut), ``resize`` (crop + flip + resize), the jitter's arithmetic
and ``color_twist`` steps, the
three arithmetic operators of a RAD blend, ``crop_mirror_normalize``. Each writes and
the next reads the whole clip, and DALI's CPU resampling alone cost about 4.5 times
torch's uint8 resize per 112² clip on the development machine (benchmarks/RESULTS.md).
The operators here do all of it per output pixel: read the four window pixels around the
crop's sample point, interpolate, round to uint8 as ``fn.resize`` does, apply the four
clamped jitter steps, blend the noise, normalise, and write the ``(C, T, H, W)`` float32
clip once. Residual clips jitter both resized frames and subtract them (the clamps make the
jitter non-linear, so it cannot be applied to the difference).

They compute exactly what the unfused graph computes — the same sample points and
rounding as :func:`.crop.crop_resize_reference`, the same jitter steps as
:func:`.colour.color_jitter_reference` — so one NumPy reference serves both, with the same
tolerances. They are Numba functions run by DALI's ``numba_function`` operator
(``nvidia.dali.plugin.numba``): CPU only, ``antialias=False`` only; the GPU graph keeps
DALI's operators. :func:`available` says whether Numba is usable; the graph falls back
to the unfused operators, with one logged line, when it is not.

The kernels live in :mod:`._kernels`, compiled by Numba with its on-disk cache: the
first process on a machine compiles them (about 10 s), later ones load them.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Sequence

log = logging.getLogger(__name__)

# Per-sample parameter vector of every kernel (:func:`_pack`): colour [b, c, s, hue°], then
# 255·mean and 255·std per channel (10 values); RAD appends λ (11), BE λ and the clip frame
# whose colours are the noise (12). The kernels tell the kinds apart by that length.
ENV_SWITCH = "MOTIONSSL_FUSED"  # "0": always the unfused DALI operators (comparisons, debugging)


# --- Numba and DALI plumbing -------------------------------------------------------------------
_state: Dict[str, object] = {}


def available() -> Optional[str]:
    """``None`` when the fused operators can run here, else why not (one line)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"{ENV_SWITCH}=0 asks for the unfused operators"
    if "reason" not in _state:
        try:
            from . import _kernels  # noqa: F401  (imports Numba, loads or compiles the kernels)

            _state["reason"] = None
        except Exception as exc:  # Numba missing, or incompatible with this NumPy
            _state["reason"] = f"Numba is not usable ({exc.__class__.__name__}: {exc}); `pip install numba`"
    return _state["reason"]


def _operator(kind: str):
    """The DALI operator object of kernel ``kind`` (built once per process from the cached callbacks)."""
    ops = _state.setdefault("ops", {})
    if kind not in ops:
        from nvidia.dali import types
        from nvidia.dali.plugin.numba.experimental import NumbaFunction

        from . import _kernels as k

        class Prebuilt(NumbaFunction):
            """DALI's Numba operator around callbacks compiled (and cached) beforehand."""

            def __init__(self, run, setup, in_types, ins_ndim):
                super(NumbaFunction, self).__init__(device="cpu")
                self.run_fn, self.setup_fn = run.address, setup.address
                self.out_types, self.outs_ndim, self.num_outputs = [types.FLOAT], [4], 1
                self.in_types, self.ins_ndim = in_types, ins_ndim
                self.batch_processing, self._preserve = False, True
                self.blocks = self.threads_per_block = None

        inputs = [types.INT32, types.UINT8, types.FLOAT, types.FLOAT, types.UINT8]
        ndims = [1, 4, 1, 1, 3]
        if kind == "rad":
            inputs, ndims = inputs + [types.UINT8], ndims + [4]
        run = {"rgb": k.run_rgb, "be": k.run_rgb, "rad": k.run_rad, "residual": k.run_residual}[kind]
        setup = k.setup_residual if kind == "residual" else k.setup_clip
        ops[kind] = Prebuilt(run, setup, inputs, ndims)
    return ops[kind]


def _size(size):
    """Graph op: an empty ``(H, W, 0)`` uint8 tensor whose shape tells the setup the output size."""
    from nvidia.dali import fn, types

    return fn.constant(idata=[], shape=[int(size[0]), int(size[1]), 0], dtype=types.UINT8, device="cpu")


def _pack(color, mean: Sequence[float], std: Sequence[float], extra=()):
    """Graph op: the per-sample parameter vector ``[b, c, s, hue°, 255·mean, 255·std, *extra]``."""
    from nvidia.dali import fn, types

    norm = fn.constant(fdata=[255.0 * float(v) for v in mean] + [255.0 * float(v) for v in std], shape=[6],
                       dtype=types.FLOAT, device="cpu")
    parts = [color, norm] + [fn.cast(fn.reshape(e, shape=[1]), dtype=types.FLOAT) for e in extra]
    return fn.cat(*parts, axis=0)


# The op list each kernel runs, in order (ops/recipes.py builds clips from the same lists).
KERNEL_OPS = {"rgb": ("cut", "crop", "colour", "normalise"), "rad": ("cut", "crop", "colour", "blend", "normalise"),
              "be": ("cut", "crop", "colour", "blend", "normalise"),
              "residual": ("cut", "crop", "colour", "residual", "normalise")}


def _check(kind: str, ops) -> None:
    """A recipe whose op list this kernel does not run is an error, never a clip with an op skipped."""
    if tuple(ops) != KERNEL_OPS[kind]:
        raise NotImplementedError(f"the fused {kind} kernel runs {KERNEL_OPS[kind]}, the recipe asks for "
                                  f"{tuple(ops)}: write the new op into pipelines/ops/_kernels.py too, or build "
                                  f"the clip with {ENV_SWITCH}=0")


def rgb_clip(ops, window, idx, roi, color, size, mean, std, noise=None, lam=None, be_frame=None):
    """Graph op: an RGB clip ``(3, T, H, W)`` float32 — the recipe ``ops`` (cut, crop/flip/resize, colour,
    [blend], normalise) in one pass.

    ``noise`` (a ``(1, H, W, 3)`` uint8 mosaic) with ``lam`` blends RAD noise; ``be_frame``
    (a clip frame index) with ``lam`` blends the clip's own frame (BE).
    """
    if be_frame is not None:
        _check("be", ops)
        return _operator("be")(idx, window, roi, _pack(color, mean, std, (lam, be_frame)), _size(size))
    if noise is not None:
        _check("rad", ops)
        return _operator("rad")(idx, window, roi, _pack(color, mean, std, (lam,)), _size(size), noise)
    _check("rgb", ops)
    return _operator("rgb")(idx, window, roi, _pack(color, mean, std), _size(size))


def residual_clip(ops, window, idx, roi, color, size, residual_std: float):
    """Graph op: a long-range residual clip ``(3, T, H, W)`` float32 from ``2T`` indices (clip, partners)."""
    _check("residual", ops)
    return _operator("residual")(idx, window, roi, _pack(color, (0.0, 0.0, 0.0), (residual_std,) * 3), _size(size))


def as_clip(x, dtype):
    """Graph op: a fused clip with the normalised clip's layout (``CFHW``) and ``dtype``."""
    from nvidia.dali import fn, types

    x = fn.reshape(x, layout="CFHW")
    return x if dtype == types.FLOAT else fn.cast(x, dtype=dtype)


def usable(window, antialias: bool) -> bool:
    """Whether the fused operators build this clip: a CPU window, no antialiasing, Numba usable."""
    if window.device != "cpu" or antialias:
        return False
    reason = available()
    if reason and not _state.get("said"):
        _state["said"] = True
        log.info("CPU clips built with DALI's unfused operators: %s", reason)
    return reason is None
