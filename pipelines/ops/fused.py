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
first process on a machine compiles them (about 25 s on the development machine), later ones load them.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

log = logging.getLogger(__name__)

# Every kernel takes one per-sample parameter vector (:func:`_pack`) of the slots
# ``_kernels.PACK``; each op fills the slots it names, the others are 0.
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
        run = {"rgb": k.run_rgb, "be": k.run_be, "rad": k.run_rad, "residual": k.run_residual}[kind]
        setup = k.setup_residual if kind == "residual" else k.setup_clip
        ops[kind] = Prebuilt(run, setup, inputs, ndims)
    return ops[kind]


def _size(size):
    """Graph op: an empty ``(H, W, 0)`` uint8 tensor whose shape tells the setup the output size."""
    from nvidia.dali import fn, types

    return fn.constant(idata=[], shape=[int(size[0]), int(size[1]), 0], dtype=types.UINT8, device="cpu")


# The ops each kernel runs, in order, by their fused names (``Op.fused_name``); the recipes
# (ops/recipes.py) build clips from the same ops.
KERNEL_OPS = {"rgb": ("cut", "crop", "colour", "normalise"),
              "rad": ("cut", "crop", "colour", "blend/rad", "normalise"),
              "be": ("cut", "crop", "colour", "blend/be", "normalise"),
              "residual": ("cut/residual", "crop", "colour", "residual", "normalise")}


def kernel_of(names) -> str:
    """The kernel that runs the ops ``names``; a list no kernel runs is an error, never a clip with an op skipped."""
    for kind, ops in KERNEL_OPS.items():
        if tuple(names) == ops:
            return kind
    missing = sorted(set(names) - {n for ops in KERNEL_OPS.values() for n in ops})
    raise NotImplementedError(f"no fused kernel runs the ops {tuple(names)}"
                              + (f" ({', '.join(missing)} not implemented)" if missing else "")
                              + f"; the kernels run {sorted(KERNEL_OPS.values())}: write the op into "
                              f"pipelines/ops/_kernels.py too, or build the clip with {ENV_SWITCH}=0")


def _pack(ops, p, clip):
    """Graph op: the kernel's per-sample parameter vector (``_kernels.PACK``), each slot from the op that names it."""
    from nvidia.dali import fn, types

    from . import _kernels as k

    lengths = dict(k.PACK)
    values = {}
    for op in ops:
        parts = op.pack(p, clip)
        if len(parts) != len(op.slots) or not set(op.slots) <= set(lengths) or set(op.slots) & set(values):
            raise ValueError(f"op {op.name!r} fills the kernel slots {op.slots} with {len(parts)} values; "
                             f"slots are {[n for n, _ in k.PACK]}, each filled once")
        values.update(zip(op.slots, parts))
    parts, floats = [], []  # consecutive constant slots become one constant node
    for name, n in k.PACK + (("", 0),):
        v = values.get(name, [0.0] * n)
        if isinstance(v, (list, tuple)) and name:
            floats += [float(x) for x in v]
            continue
        if floats:
            parts.append(fn.constant(fdata=floats, shape=[len(floats)], dtype=types.FLOAT, device="cpu"))
            floats = []
        if name:
            parts.append(fn.cast(fn.reshape(v, shape=[n]), dtype=types.FLOAT))
    return fn.cat(*parts, axis=0)


def build(ops, window, p, clip):
    """Graph op: the clip ``(3, T, H, W)`` float32 of the ops ``ops`` in one pass (``p``: parameters by short name)."""
    kind = kernel_of(tuple(op.fused_name(clip) for op in ops))
    inputs = {op.name: op.kernel_input(p, clip) for op in ops}
    args = [inputs["cut"], window, inputs["crop"], _pack(ops, p, clip), _size(clip.cfg.augment.size)]
    if kind == "rad":
        args.append(inputs["blend"])
    return _operator(kind)(*args)


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
