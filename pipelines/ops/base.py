"""What a clip op is: one object with its parameters, its draw, its DALI step, its NumPy twin, its kernel slots.

An :class:`Op` declares the per-sample parameters it draws (:class:`Param`: name, dtype) and draws them from a random stream of its own (:func:`substream`: the clip's key
and the op's name), so an op added to a recipe, or turned off, changes no other op's
draws. Its ``graph`` step is DALI nodes, its ``reference`` the same step on NumPy arrays;
``slots`` name the entries of the fused kernels' parameter pack it fills
(``_kernels.PACK``) and :meth:`Op.pack` their values. A recipe (:mod:`.recipes`) is a list
of ops; the parameter names of a clip, :class:`ParamKeys`, the pack and the check that
the fused kernels implement a clip's ops all follow from that list.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Param:
    """One per-sample parameter of an op: its name within the clip (``"roi"`` → key ``"anchor.roi"``) and NumPy dtype."""

    name: str
    dtype: str


@dataclass
class Clip:
    """One clip of a sample as its ops see it: its name and config, what its draws depend on, and its graph or
    reference inputs (each face fills the fields it has)."""

    name: str
    cfg: Any  # ClipConfig
    speed: int = 1
    valid: int = 1
    frame_hw: Sequence[int] = (1, 1)
    motion: str = "speed"
    gap: int = 1
    reverse: bool = False
    appearance: Any = None  # AppearanceConfig or None
    batch_rng: Optional[np.random.Generator] = None
    slot: int = 0
    batch_size: int = 1
    window: Any = None  # graph: the window node; reference: this sample's window
    windows: Sequence[np.ndarray] = ()  # reference: the batch's windows
    params: Sequence[Dict[str, np.ndarray]] = ()  # reference: the batch's parameter dicts
    dtype: Any = None  # graph: the clip's DALI dtype

    def key(self, param: str) -> str:
        return f"{self.name}.{param}"


class Op:
    """A clip op. Subclasses set ``name``, ``params`` and ``slots`` and write the faces they have."""

    name: str = ""
    params: Tuple[Param, ...] = ()
    slots: Tuple[str, ...] = ()  # slots of _kernels.PACK this op fills, in order

    def drawn(self, clip: Clip) -> Tuple[Param, ...]:
        """The parameters this op draws for ``clip`` (of :attr:`params`, which lists every one it can draw)."""
        return self.params

    def active(self, clip: Clip) -> bool:
        """Whether the clip runs this op (an op off for a clip draws nothing and builds nothing)."""
        return True

    def fused_name(self, clip: Clip) -> str:
        """The name the fused kernels list this op by (variants of one op that differ there say so)."""
        return self.name

    def draw(self, rng: np.random.Generator, clip: Clip) -> Dict[str, np.ndarray]:
        """``{param name: value}`` for exactly :attr:`params`, drawn from ``rng`` (this op's own stream)."""
        return {}

    def graph(self, x, p: Dict, clip: Clip):
        """DALI nodes: the clip so far ``x`` → after this op; ``p`` the clip's parameters by short name."""
        raise NotImplementedError(f"op {self.name!r} has no DALI graph step")

    def reference(self, x: np.ndarray, p: Dict, clip: Clip) -> np.ndarray:
        """NumPy twin of :meth:`graph`."""
        raise NotImplementedError(f"op {self.name!r} has no NumPy twin")

    def pack(self, p: Dict, clip: Clip) -> Sequence:
        """One value per slot of :attr:`slots`: a list of floats or a DALI node, as long as the slot."""
        return ()

    def window_params(self, clip: Clip) -> Tuple[str, ...]:
        """The names of this op's parameters that are positions in the window (the frames the clip reads)."""
        return ()

    def kernel_input(self, p: Dict, clip: Clip):
        """An extra input of the fused kernel this op needs (the RAD mosaic), or ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def substream(key: int, op: str) -> np.random.Generator:
    """The random stream of op ``op`` in the clip whose key is ``key`` (independent of every other op's)."""
    return np.random.default_rng([int(key), zlib.crc32(op.encode())])


def draw_clip(rng: np.random.Generator, ops: Sequence[Op], clip: Clip) -> Dict[str, np.ndarray]:
    """The parameters of ``clip`` under the keys ``"name.param"``: one key from ``rng``, then each op from its stream."""
    key = int(rng.integers(1 << 63))
    out = {}
    for op in ops:
        if not op.active(clip):
            continue
        drawn = op.draw(substream(key, op.name), clip)
        declared = op.drawn(clip)
        if sorted(drawn) != sorted(q.name for q in declared):
            raise RuntimeError(f"op {op.name!r} drew {sorted(drawn)} but declares {[q.name for q in declared]}")
        for q in declared:
            out[clip.key(q.name)] = np.asarray(drawn[q.name], dtype=q.dtype)
    return out


def short(params: Dict, clip: Clip, ops: Sequence[Op]) -> Dict[str, Any]:
    """The clip's parameters by short name (``"roi"``), from a dict keyed ``"name.roi"``."""
    return {q.name: params[clip.key(q.name)] for op in ops if op.active(clip) for q in op.drawn(clip)}


class ParamKeys:
    """Names of the per-sample parameters of the clip called ``clip``: ``ParamKeys("anchor").roi`` is
    ``"anchor.roi"``; a name no op declares is an ``AttributeError`` where it is written.

    The names are those of the ops' :class:`Param` declarations (:data:`.recipes.RECIPES`):
    ``idx`` window frame indices; ``roi`` crop box ``[y0, x0, y1, x1]`` (``x0 > x1`` when
    flipped); ``color`` ``[brightness, contrast, saturation, hue°]``; for an
    appearance-disturbed clip ``frame`` (the window frame its noise is made of — for RAD
    inter, the frame this sample *lends*), ``lam`` (blend weight) and ``partner`` (RAD
    inter: the sample whose frame it receives).

    Parameters
    ----------
    clip : str
        The clip's name (a planner's output, such as ``"anchor"``).
    """

    __slots__ = ("clip",)

    def __init__(self, clip: str):
        self.clip = clip

    def __getattr__(self, what: str) -> str:
        from .recipes import param_names

        if what.startswith("_") or what not in param_names():
            raise AttributeError(f"no op declares a parameter {what!r}; declared: {sorted(param_names())}")
        return f"{self.clip}.{what}"

    def __repr__(self) -> str:
        return f"ParamKeys({self.clip!r})"
