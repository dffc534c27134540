"""What each method draws and builds per sample: the planners, and the registry of pipelines.

A pipeline is a :class:`PipelineSpec`: a config dataclass and a :class:`Planner` that draws
every random parameter of a sample in Python and builds the batch from a decoded window,
as DALI nodes and as NumPy arrays. The registered ones:

=========  ===========================================================================
``moquad``  MoQuad quadruples (anchor, RAD positive, intra negatives; warm-up pairs)
``mcpnet``  MCPNet RGB clip and long-range residual clips
``simclr``  SimCLR/CVRL baseline: two augmented clips
``clip``    one augmented clip (supervised training and fine-tuning)
=========  ===========================================================================

A pipeline of one's own is a :class:`PipelineSpec` handed to ``make_iterator`` as it is, or
registered once with :func:`register_pipeline` so that it can be named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Type, Union

from .base import ParamKeys, Planner

__all__ = ["PIPELINES", "ParamKeys", "PipelineSpec", "Planner", "pipeline_spec", "register_pipeline"]


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline as the iterators know it: its name, config dataclass, planner class and one line about it.

    ``planner(config)`` builds the planner from an instance of ``config``.

    Parameters
    ----------
    name : str
        The key in :data:`PIPELINES` and ``make_iterator``'s first argument.
    config : type
        The config dataclass (``config=`` of ``make_iterator``).
    planner : type
        The :class:`Planner` class, built as ``planner(config)``.
    doc : str, default ""
        One line about the pipeline.
    """

    name: str
    config: Type
    planner: Type[Planner]
    doc: str = ""


PIPELINES: Dict[str, PipelineSpec] = {}


def register_pipeline(spec: PipelineSpec) -> PipelineSpec:
    """Add ``spec`` to :data:`PIPELINES` (its name must be new); returns it.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline; its name must be new.
    """
    if spec.name in PIPELINES and PIPELINES[spec.name] is not spec:
        raise ValueError(f"a pipeline named {spec.name!r} is registered already")
    PIPELINES[spec.name] = spec
    return spec


def pipeline_spec(name: Union[str, PipelineSpec]) -> PipelineSpec:
    """The registered pipeline ``name``; a :class:`PipelineSpec` of one's own is used as it is.

    Parameters
    ----------
    name : str or PipelineSpec
        A key of :data:`PIPELINES`, or a spec of one's own.

    Raises
    ------
    ValueError
        An unknown name, listing the registered ones.
    """
    if isinstance(name, PipelineSpec):
        return name
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {sorted(PIPELINES)}")
    return PIPELINES[name]


def _register_builtins() -> None:
    from .clip import ClipOnlyConfig, ClipOnlyPlanner
    from .mcpnet import MCPNetConfig, MCPNetPlanner
    from .moquad import MoQuadConfig, MoQuadPlanner
    from .simclr import SimCLRConfig, SimCLRPlanner

    for spec in (PipelineSpec("moquad", MoQuadConfig, MoQuadPlanner,
                              "MoQuad quadruples (anchor, RAD positive, intra negatives)"),
                 PipelineSpec("mcpnet", MCPNetConfig, MCPNetPlanner, "MCPNet RGB clip and long-range residual clips"),
                 PipelineSpec("simclr", SimCLRConfig, SimCLRPlanner, "SimCLR/CVRL baseline: two augmented clips"),
                 PipelineSpec("clip", ClipOnlyConfig, ClipOnlyPlanner,
                              "one augmented clip per video (supervised training, fine-tuning)")):
        register_pipeline(spec)


_register_builtins()
