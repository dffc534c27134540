"""What a method is, to the pipeline: a :class:`Planner`.

A planner says how long a window the method needs, draws every random parameter of a
sample in Python (clip positions, speeds, crops, colour, blend weights), and builds the
method's batch from a decoded window and those parameters twice — as DALI graph nodes
and as NumPy arrays (the reference). The window source calls :meth:`Planner.draw` in
its worker processes; the pipeline definition (:mod:`..pipeline`) calls
:meth:`Planner.graph`; the reference loader calls :meth:`Planner.reference`.

Per-sample parameters travel between the three by name. :class:`ParamKeys` makes the
names of one clip's parameters attributes (``ParamKeys("anchor").roi`` is
``"anchor.roi"``; the names are those the ops declare, :mod:`..ops.base`), so a misspelt
parameter is an ``AttributeError`` where it is written, not a ``KeyError`` in a worker process.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..ops.base import ParamKeys  # noqa: F401  (the names of a clip's parameters, derived from its ops)


class Planner:
    """A method's per-sample draws and its two batch builders; subclasses fill in every part.

    Attributes:
        window: frames decoded per sample.
        keys: names of the per-sample parameters :meth:`draw` returns.
        outputs: names of the batch entries :meth:`graph` and :meth:`reference` build. An
            entry is a clip ``(C, T, H, W)`` unless it is named in ``values``.
        values: per-sample values among ``outputs`` (speeds, flags) and their NumPy dtype
            names; each is one number per sample, ``(B,)`` in the batch.
        clip_specs: for every clip output, what builds it: ``("rgb", appearance)`` (an
            RGB clip, appearance-disturbed when ``appearance`` is an
            :class:`~..ops.config.AppearanceConfig` whose op is not ``"none"``) or
            ``("residual", None)`` (a long-range residual clip). Loaders that build the
            clips without the graph (the benchmarks' peer loader) read it.
        window_keys: the parameters (among :attr:`keys`) that are window positions, when
            the clips read the window through them alone (``recipes.window_keys(clip_specs)``):
            the source then decodes the frames from the first position to the last, converts
            and hands over only the frames named, and renumbers the positions. ``None``
            (default): the graph gets the whole window.
    """

    window: int = 1
    keys: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    values: Dict[str, str] = {}
    clip_specs: Dict[str, Tuple[str, object]] = {}
    window_keys: Optional[Tuple[str, ...]] = None

    def draw(self, rng: np.random.Generator, batch_rng: np.random.Generator, slot: int, batch_size: int,
             valid: int, frame_hw) -> Dict[str, np.ndarray]:
        """The sample's parameters, a dict whose keys are exactly :attr:`keys`.

        ``rng`` is the sample's own generator; ``batch_rng`` is shared by the whole batch
        (the same stream in every sample) for draws that couple samples, such as the RAD
        partner derangement; ``slot`` is the sample's position in the batch; ``valid`` is
        the number of real frames in the window and ``frame_hw`` its frame size.
        """
        raise NotImplementedError

    def graph(self, window, params: Dict, dtype) -> Dict:
        """DALI nodes of every output from the window node and the parameter nodes; clips in ``dtype``."""
        raise NotImplementedError

    def reference(self, windows, params, slot: int) -> Dict[str, np.ndarray]:
        """NumPy twin of :meth:`graph` for sample ``slot``, given the batch's windows and parameter dicts."""
        raise NotImplementedError

    def frames_read(self, params: Dict) -> Optional[np.ndarray]:
        """The window positions a sample's clips read (sorted, distinct), from its parameters; ``None`` when the
        planner does not name them (:attr:`window_keys`): the clips may read any frame."""
        if not self.window_keys:
            return None
        return np.unique(np.concatenate([np.ravel(params[k]) for k in self.window_keys]).astype(np.int64))

    @property
    def clip_outputs(self) -> Tuple[str, ...]:
        """The outputs that are clips."""
        return tuple(k for k in self.outputs if k not in self.values)
