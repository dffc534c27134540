"""What the methods share: encoding several views at once, BatchNorm of their own for a second kind of
input, the input layout a backbone wants, the ranks of a video's own clips, the checks of a batch
and of the head settings, and how their error lines echo a value."""
from __future__ import annotations

import copy
import reprlib
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionssl.models.backbones import create_backbone

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 60, 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, in time that does not grow with the value: what a
    method's error line echoes of an option (the same rule as the pipelines' config messages, written here
    because the models import nothing of the pipelines)."""
    try:
        text = _SHOWN.repr(value)
    except ValueError:  # an integer beyond Python's limit for converting it to text
        text = f"<a number of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def encode_views(backbone: nn.Module, views: Sequence[Tensor]) -> list[Tensor]:
    """Backbone features of several views of a batch, one call per clip shape.

    Args:
        backbone: maps (N, C, T, H, W) clips to (N, F) features.
        views: clips (B, C, T, H, W), one tensor per view.

    Returns:
        One (B, F) tensor per view, in order.

    Views of equal shape go through the backbone as one concatenated batch:
    fewer, larger kernels, and BatchNorm then normalises with statistics over
    all views together, as SimCLR does with its two views.
    """
    groups: dict[torch.Size, list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(view.shape, []).append(i)
    features: list[Tensor] = [None] * len(views)  # type: ignore[list-item]
    for members in groups.values():
        out = backbone(as_backbone_input(torch.cat([views[i] for i in members]), backbone))
        for i, f in zip(members, out.chunk(len(members))):
            features[i] = f
    return features


class OwnNorms(nn.Module):
    """A second set of BatchNorm parameters and statistics for a shared backbone.

    MCPNet feeds RGB clips and residual clips — near-zero frames with sparse bright
    edges — through one encoder. With one set of BatchNorm layers the running statistics
    become a mixture of both kinds, which is what the backbone then normalises *RGB*
    clips with at evaluation. ``encode`` runs the backbone with these norms swapped in
    (``torch.func.functional_call``), so the residual clips get their own scale, shift and
    running statistics and the backbone's own BatchNorm layers — the ones saved with it
    and evaluated — see RGB clips only. The convolutions stay shared.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        norms = {name: m for name, m in backbone.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)}
        if not norms:
            raise ValueError("method.residual_bn=own needs a backbone with BatchNorm layers")
        self.names = list(norms)
        self.norms = nn.ModuleDict({name.replace(".", "__"): copy.deepcopy(m) for name, m in norms.items()})

    def tensors(self) -> dict[str, Tensor]:
        out = {}
        for name in self.names:
            norm = self.norms[name.replace(".", "__")]
            for key, value in [*norm.named_parameters(recurse=False), *norm.named_buffers(recurse=False)]:
                out[f"{name}.{key}"] = value
        return out

    def encode(self, backbone: nn.Module, clips: Tensor) -> Tensor:
        """``backbone(clips)`` with these norms in place of its own (their statistics update in training)."""
        return torch.func.functional_call(backbone, self.tensors(), (as_backbone_input(clips, backbone),))


RESIDUAL_BN = ("joint", "split", "own")


def as_backbone_input(clips: Tensor, backbone: nn.Module) -> Tensor:
    """Clips in the dtype and memory layout the backbone computes in, in one copy at most.

    Pipelines hand over float16 clips on the GPU. Under autocast the convolutions run in
    the autocast dtype (bfloat16 in train.py), so the clips go straight to it rather than
    up to float32 and back down; outside autocast they take the weights' dtype. A backbone
    whose weights are channels-last (:func:`models.backbones.to_channels_last`) gets its
    input in that layout in the same copy.
    """
    device_type = clips.device.type
    autocast = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if autocast else next(backbone.parameters()).dtype
    if getattr(backbone, "channels_last", False) and clips.ndim == 5:
        return clips.to(dtype=dtype, memory_format=torch.channels_last_3d)
    return clips.to(dtype)


@torch.no_grad()
def own_video_ranks(anchor: Tensor, members: Tensor, exclude: int | None = None) -> Tensor:
    """Rank of each clip of the anchor's own video among all its candidates.

    Candidates of anchor i are all clips (j, m) of the local batch, except
    member `exclude` of video i (the anchor itself, when it is one of the
    members). Rank 1 = most similar (cosine). MoQuad Fig. 4 plots the mean
    rank of the positive and of the intra negatives this way.

    Args:
        anchor: (B, D) anchor projections.
        members: (B, M, D) projections of the clips of each video.
        exclude: index of the anchor among the members, or None.

    Returns:
        (B, M) float ranks of the own-video members (column `exclude` is
        meaningless). Local batch only: a diagnostic, not gathered.
    """
    a = F.normalize(anchor.float(), dim=-1)
    m = F.normalize(members.float(), dim=-1)
    sim = torch.einsum("bd,nmd->bnm", a, m)  # (B, B, M)
    rows = torch.arange(sim.shape[0], device=sim.device)
    if exclude is not None:
        sim[rows, rows, exclude] = -torch.inf
    own = sim[rows, rows]  # (B, M)
    return 1 + (sim.flatten(1)[:, None, :] > own[:, :, None]).sum(-1).float()


def require(batch: Mapping[str, Tensor], keys: Sequence[str], method: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{method} batch lacks {missing}; it needs {list(keys)}, got {sorted(batch)}")


def backbone_of(backbone: str | nn.Module) -> nn.Module:
    return create_backbone(backbone) if isinstance(backbone, str) else backbone


def check_head(method: str, temperature: float, proj_hidden_dim: int, proj_dim: int, proj_layers: int) -> None:
    """The settings every method shares; a ValueError naming the key and what is allowed."""
    if not temperature > 0:
        raise ValueError(f"{method}: method.temperature must be > 0 (the logits are divided by it), got {temperature}")
    for name, value in (("proj_hidden_dim", proj_hidden_dim), ("proj_dim", proj_dim), ("proj_layers", proj_layers)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{method}: method.{name} must be a whole number >= 1, got {shown(value)}")
