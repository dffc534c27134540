"""DALI pipelines for motion-focused self-supervised video learning.

Importable on its own (no ``models``, no training code). The public API:

* :func:`make_iterator` and :data:`PIPELINES` — the drop-in iterator of a method;
* :func:`load_index` / :class:`VideoIndex` — videos, labels and frame counts;
* :func:`build_pipeline` — the one DALI pipeline definition (window source + planner +
  device), for custom loops; :class:`WindowSource` and :class:`Planner` are its parts;
* :func:`check_batch` — the batch contract, checked;
* :mod:`.demo` — the embedded motion-class demo dataset.

The design, the batch contract and the DALI facts the code relies on are written down in
``docs/design.md``.
"""
from .augment import AugmentConfig
from .contract import check_batch
from .index import VideoIndex, load_index
from .iterators import PIPELINES, VideoIterator, make_iterator
from .pipeline import build_pipeline
from .planner import Planner
from .sources import PipelineError, WindowSource
from .video_io import VideoError

__all__ = ["AugmentConfig", "PIPELINES", "PipelineError", "Planner", "VideoError", "VideoIndex", "VideoIterator",
           "WindowSource", "build_pipeline", "check_batch", "load_index", "make_iterator"]
