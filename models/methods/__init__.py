"""Self-supervised methods: backbone + projection head(s) + loss, one nn.Module each, one spec each.

`forward(batch)` takes a batch dict of the pipelines' contract (clips
(B, C, T, H, W); `label` and `index` ride along unused) and returns a dict
with `loss` (differentiable), its parts and cheap diagnostics (detached).
The training loop is then method-agnostic:

    method = create_method("moquad", backbone="r3d_18")
    out = method(batch)
    out["loss"].backward()

Each method is a module here (its model, and one :class:`Method` registration that joins
the model to its pipeline, learning-rate rule, phases and configurations); a method of
one's own is its planner (``motionssl.pipelines.Planner``), its model and one
:func:`register_method` call.
"""
from __future__ import annotations

from torch import nn

from motionssl.models.methods.common import RESIDUAL_BN, OwnNorms, as_backbone_input, encode_views, own_video_ranks
from motionssl.models.methods.mcpnet import MCPNet
from motionssl.models.methods.moquad import MoQuad
from motionssl.models.methods.registry import METHODS, Method, Phase, get_method, register_method
from motionssl.models.methods.simclr import SimCLR

__all__ = ["METHODS", "MCPNet", "Method", "MoQuad", "OwnNorms", "Phase", "RESIDUAL_BN", "SimCLR",
           "as_backbone_input", "create_method", "encode_views", "get_method", "own_video_ranks", "register_method"]


def create_method(name: str, backbone="r3d_18", **options) -> nn.Module:
    """Build the registered method ``name`` around a backbone (a name of BACKBONES or a module).

    ``options`` go to the model's constructor (head sizes, temperature, the method's loss
    hyper-parameters, ``gather``); an unknown one is a ``ValueError`` listing the valid ones.
    """
    method = get_method(name)
    unknown = sorted(set(options) - set(method.model_options()))
    if unknown:
        raise ValueError(f"unknown {name} method option(s) {unknown}; valid: {sorted(method.model_options())}")
    return method.model(backbone, **options)
