"""DALI pipelines for motion-focused self-supervised video learning.

Importable on its own (no ``models``, no training code). The building blocks:

* :func:`load_index` — videos, labels and frame counts from a folder or a list;
* :class:`WindowSource` and :func:`sources.windows` — one decoded window per sample;
* clip ops in :mod:`.clips`, :mod:`.residual`, :mod:`.rad`, :mod:`.augment`, each with a
  NumPy twin in :mod:`.reference`;
* :mod:`.demo` — the embedded motion-class demo dataset.
"""
from .augment import AugmentConfig
from .index import VideoIndex, load_index
from .iterators import PIPELINES, VideoIterator, make_iterator
from .sources import Planner, WindowSource

__all__ = ["AugmentConfig", "PIPELINES", "Planner", "VideoIndex", "VideoIterator", "WindowSource", "load_index",
           "make_iterator"]
