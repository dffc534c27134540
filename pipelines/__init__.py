"""DALI pipelines for motion-focused self-supervised video learning (``motionssl.pipelines``).

Importable on its own (no ``motionssl.models``, no training code), and lazily: a name is
imported when it is first used, so ``motionssl.pipelines.config`` or the index load without
DALI. The public API, stable across releases:

* :func:`make_iterator`, :class:`VideoIterator` — the drop-in training iterator of a method;
  :data:`PIPELINES`, :class:`PipelineSpec`, :func:`register_pipeline` — the pipelines it knows;
* :func:`make_eval_iterator`, :class:`EvalIterator` — deterministic multi-clip, multi-crop
  views for evaluation;
* :func:`load_index`, :func:`load_pair`, :class:`VideoIndex` — videos, labels, frame counts;
* :class:`Planner`, :class:`ParamKeys` — what a method of one's own writes (its per-sample
  draws and its two batch builders), with :mod:`.ops` (the clip ops) and :mod:`.ops.recipes`;
* the configs: :class:`ClipConfig`, :class:`AugmentConfig`, :class:`AppearanceConfig`,
  :class:`MoQuadConfig`, :class:`MCPNetConfig`, :class:`SimCLRConfig`, :class:`ClipOnlyConfig`;
* :func:`build_pipeline`, :class:`WindowSource` — the one DALI pipeline definition, for
  custom loops; :data:`DECODERS`, :class:`Decoder`, :func:`register_decoder` — the decoders;
* :func:`check_batch` — the batch contract, checked;
* the errors, every one a :class:`MotionSSLError` (and still the built-in it was, such as
  ``ValueError``): :class:`PipelineError` (a batch that could not be built),
  :class:`VideoError` (a video file that cannot be used), :class:`ConfigError` (a config key
  or value), :class:`OptionError` (an argument of the API), :class:`DataError` and
  :class:`DataNotFoundError` (data that is no dataset, or names nothing),
  :class:`UnlabelledError` (unlabelled videos where labels are needed), :class:`ProbeError`
  (the GPU's decoder could not be asked).

The design, the batch contract and the DALI facts the code relies on are written down in
``docs/design.md``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "make_iterator": ".iterators", "VideoIterator": ".iterators", "build_config": ".iterators",
    "PIPELINES": ".planners", "PipelineSpec": ".planners", "register_pipeline": ".planners",
    "pipeline_spec": ".planners",
    "make_eval_iterator": ".evaluation", "EvalIterator": ".evaluation",
    "load_index": ".index", "load_pair": ".index", "VideoIndex": ".index",
    "Planner": ".planners.base", "ParamKeys": ".planners.base",
    "ClipConfig": ".ops.config", "AugmentConfig": ".ops.config", "AppearanceConfig": ".ops.config",
    "MoQuadConfig": ".planners.moquad", "MCPNetConfig": ".planners.mcpnet", "SimCLRConfig": ".planners.simclr",
    "ClipOnlyConfig": ".planners.clip",
    "build_pipeline": ".pipeline", "WindowSource": ".sources",
    "DECODERS": ".decoders", "Decoder": ".decoders", "register_decoder": ".decoders",
    "check_batch": ".contract",
    "PipelineError": ".batch_errors", "VideoError": ".video_io", "ConfigError": ".config",
    "MotionSSLError": ".errors", "DataError": ".errors", "DataNotFoundError": ".errors", "OptionError": ".errors",
    "UnlabelledError": ".errors", "ProbeError": ".decoders.dali",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above load on first use
    from .batch_errors import PipelineError
    from .config import ConfigError
    from .contract import check_batch
    from .decoders import DECODERS, Decoder, register_decoder
    from .decoders.dali import ProbeError
    from .errors import DataError, DataNotFoundError, MotionSSLError, OptionError, UnlabelledError
    from .evaluation import EvalIterator, make_eval_iterator
    from .index import VideoIndex, load_index, load_pair
    from .iterators import VideoIterator, build_config, make_iterator
    from .ops.config import AppearanceConfig, AugmentConfig, ClipConfig
    from .pipeline import build_pipeline
    from .planners import PIPELINES, PipelineSpec, pipeline_spec, register_pipeline
    from .planners.base import ParamKeys, Planner
    from .planners.clip import ClipOnlyConfig
    from .planners.mcpnet import MCPNetConfig
    from .planners.moquad import MoQuadConfig
    from .planners.simclr import SimCLRConfig
    from .sources import WindowSource
    from .video_io import VideoError
