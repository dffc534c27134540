"""A method is one spec: :class:`Method` joins what the toolkit needs to train it.

* ``model`` — an ``nn.Module`` built as ``model(backbone, **options)`` whose
  ``forward(batch)`` takes a batch of the pipelines' contract and returns a dict with
  ``loss`` (differentiable), its parts and cheap diagnostics;
* ``pipeline`` — the pipeline (a name of ``motionssl.pipelines.PIPELINES``, or a
  ``PipelineSpec``) that builds its batches;
* ``paper_lr`` — the learning-rate rule of its paper for a global batch size (used when
  ``optim.lr`` is null), or ``None``: then ``optim.lr`` must be given;
* ``phases`` — the stages of a run (MoQuad's appearance warm-up, then quadruples), each a
  fraction of the run and the pipeline settings it changes; one phase by default. Its
  keyword options (each with its default: MoQuad's ``appearance_warmup``) are options of
  the method as much as the model's are;
* ``demo_config`` / ``paper_config`` — the shipped configurations of the CPU demo and of the
  paper (``motionssl.configs``), or ``None``;
* ``baseline`` — a reference point rather than a method under study (SimCLR): the
  benchmarks run it in their comparison tables, and not in the GPU check's paper path.

``train.py``, ``eval.py`` and the benchmarks name no method: they look it up here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from torch import nn


@dataclass(frozen=True)
class Phase:
    """A stage of a training run: ``fraction`` of it, with ``pipeline_config`` laid over the run's.

    ``pipeline_config`` holds keys of the method's pipeline config (``{"mode": "warmup"}``,
    ``{"clip": {"speeds": [1]}}``), as a config file writes them: the application lays them
    over the run's built settings and checks them as it checks a file's.
    """

    name: str
    fraction: float
    pipeline_config: Dict[str, Any] = field(default_factory=dict)


def one_phase() -> List[Phase]:
    return [Phase("training", 1.0)]


def _keywords(fn, skip=()) -> Dict[str, Any]:
    """The parameters of ``fn`` that have defaults, with them, in order (``skip``: names left out)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.name not in skip and p.default is not p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@dataclass(frozen=True)
class Method:
    """A self-supervised method as the toolkit trains it (module doc)."""

    name: str
    model: type
    pipeline: Any
    doc: str = ""
    paper_lr: Optional[Callable[[int], float]] = None
    phases: Callable[..., List[Phase]] = one_phase
    demo_config: Optional[str] = None
    paper_config: Optional[str] = None
    baseline: bool = False

    def options(self) -> Dict[str, Any]:
        """The method's options and their defaults (the ``method`` section of a config): its model's, then its
        phases'."""
        return {**self.model_options(), **self.phase_options()}

    def model_options(self) -> Dict[str, Any]:
        """The model's options and their defaults (``model(backbone, **options)``), in order."""
        return _keywords(self.model.__init__, skip=("self", "backbone"))

    def phase_options(self) -> Dict[str, Any]:
        """The options of :attr:`phases` and their defaults (``phases(**options)``), in order."""
        return _keywords(self.phases)


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (its name must be new); returns it."""
    if method.name in METHODS and METHODS[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is registered already")
    if not (isinstance(method.model, type) and issubclass(method.model, nn.Module)):
        raise TypeError(f"method {method.name!r}: model must be an nn.Module class, got {method.model!r}")
    both = sorted(set(method.model_options()) & set(method.phase_options()))
    if both:
        raise ValueError(f"method {method.name!r}: its model and its phases both take {both}; one option, one owner")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method ``name``; a ``ValueError`` listing the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
