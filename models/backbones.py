"""Video backbones: clip (B, C, T, H, W) -> globally pooled feature (B, feature_dim).

torchvision provides R3D-18, R(2+1)D-18 and S3D; we add S3D's self-gating
(S3D-G), write CVRL's 3D ResNet-50 compactly, and add a tiny 3D CNN for CPU
demos and tests. Weights are always randomly initialised (weights=None):
self-supervised pre-training starts from scratch and nothing is downloaded.

    backbone = create_backbone("r3d_18")
    feats = backbone(clips)  # (B, 512)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models import video as tv_video
from torchvision.models.video.s3d import SepInceptionBlock3D


class VideoBackbone(nn.Module):
    """Base class: subclasses set `feature_dim` and implement `features`.

    `channels_last` is True when the weights are channels-last (`to_channels_last`);
    `models.methods.as_backbone_input` then hands over clips in that layout.
    """

    feature_dim: int
    channels_last: bool = False

    def features(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) float -> (B, feature_dim), pooled over T, H, W."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class TorchvisionVideoResNet(VideoBackbone):
    """torchvision's VideoResNet with the classifier removed (fc -> Identity)."""

    def __init__(self, model: tv_video.VideoResNet):
        super().__init__()
        self.feature_dim = model.fc.in_features
        model.fc = nn.Identity()
        self.net = model

    def features(self, x: Tensor) -> Tensor:
        return self.net(x)


def r3d_18() -> VideoBackbone:
    """R3D-18 (Tran et al. 2018), 3x3x3 convolutions throughout; feature_dim 512."""
    return TorchvisionVideoResNet(tv_video.r3d_18(weights=None))


def r2plus1d_18() -> VideoBackbone:
    """R(2+1)D-18 (Tran et al. 2018), 3D convs factored into 2D spatial + 1D temporal; feature_dim 512."""
    return TorchvisionVideoResNet(tv_video.r2plus1d_18(weights=None))


class SelfGating(nn.Module):
    """Feature gating of S3D-G: y = sigmoid(W pool(x) + b) * x, per channel.

    pool averages over T, H, W, so each channel is re-weighted by a context
    computed from the whole clip (Xie et al. 2018, "Rethinking spatiotemporal
    feature learning", feature-gating section).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * gate[:, :, None, None, None]


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv3d)][-1].out_channels


class S3DG(VideoBackbone):
    """S3D-G: separable Inception 3D network with self-gating (Xie et al. 2018).

    Built from torchvision's S3D, which is S3D *without* gating. Differences:
    - a `SelfGating` module after the stem's separable 3x3 conv (the
      "Conv2d_2c_3x3" end point) and after each of the four branches of every
      separable Inception block, the placement of the authors' reference
      implementation (gating_startat='Conv2d_2c_3x3');
    - torchvision's classification head (fixed 2x7x7 average pool, dropout,
      1x1x1 conv classifier) is dropped for an adaptive global average pool,
      so any input with T >= 8 and H, W >= 32 works, not only 16x224x224-ish.
    The convolutional trunk, including torchvision's factorised 7x7 stem, is
    torchvision's. feature_dim 1024.
    """

    feature_dim = 1024

    def __init__(self):
        super().__init__()
        trunk = tv_video.s3d(weights=None).features
        trunk[3] = nn.Sequential(trunk[3], SelfGating(_out_channels(trunk[3])))
        for block in trunk:
            if isinstance(block, SepInceptionBlock3D):
                for name in ("branch0", "branch1", "branch2", "branch3"):
                    branch = getattr(block, name)
                    setattr(block, name, nn.Sequential(branch, SelfGating(_out_channels(branch))))
        self.trunk = trunk

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x).mean(dim=(2, 3, 4))


def s3dg() -> VideoBackbone:
    return S3DG()


class Bottleneck3d(nn.Module):
    """ResNet bottleneck with a temporal kernel kt on its first 1x1 conv.

    kt x 1 x 1 -> 1 x 3 x 3 (spatial stride) -> 1 x 1 x 1, as in the Slow
    pathway of SlowFast: temporal mixing only where kt = 3.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, kt: int):
        super().__init__()
        out_channels = width * self.expansion
        self.residual = nn.Sequential(
            nn.Conv3d(in_channels, width, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class R3D50(VideoBackbone):
    """3D ResNet-50 as used by CVRL (Qian et al. 2021) and MoQuad Sec. 4.1.

    The Slow-pathway layout of SlowFast with CVRL's stem:
        conv1  5x7x7, 64, stride (2, 2, 2)      T/2, H/2
        pool1  1x3x3 max, stride (1, 2, 2)           H/4
        res2   [1x1x1, 1x3x3, 1x1x1] x 3, width 64
        res3   [1x1x1, 1x3x3, 1x1x1] x 4, width 128   H/8
        res4   [3x1x1, 1x3x3, 1x1x1] x 6, width 256   H/16
        res5   [3x1x1, 1x3x3, 1x1x1] x 3, width 512   H/32
    No temporal downsampling after conv1 (16 frames -> 8). feature_dim 2048.
    """

    feature_dim = 2048
    stages = ((64, 3, 1, 1), (128, 4, 2, 1), (256, 6, 2, 3), (512, 3, 2, 3))  # width, blocks, stride, kt

    def __init__(self, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, 64, (5, 7, 7), stride=(2, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        ]
        channels = 64
        for width, blocks, stride, kt in self.stages:
            for b in range(blocks):
                layers.append(Bottleneck3d(channels, width, stride if b == 0 else 1, kt))
                channels = width * Bottleneck3d.expansion
        self.trunk = nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x).mean(dim=(2, 3, 4))


def r3d_50(in_channels: int = 3) -> VideoBackbone:
    return R3D50(in_channels)


class TinyVideoNet(VideoBackbone):
    """A few Conv3d-BN-ReLU layers for CPU demos and tests.

    Every conv is 3x3x3, so each layer mixes neighbouring frames and the
    network can tell playback speeds apart; spatial stride 2 per layer and
    temporal stride 2 in the last two keep it cheap (forward + backward of 16
    clips of 3x8x64x64 took 0.1 s on two CPU cores). feature_dim = widths[-1].
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            t_stride = 2 if i >= len(widths) - 2 else 1
            layers += [
                nn.Conv3d(channels, width, 3, stride=(t_stride, 2, 2), padding=1, bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        # Channels-last weights and inputs. With torch 2.14.1 on the 2-core development machine
        # `python -m benchmarks.backbone_layout` measured 1.0-1.2x the speed of NCDHW for
        # forward + backward (an earlier torch build had measured 7x for the backward pass);
        # tensor-core GPUs prefer this layout too.
        self.trunk = nn.Sequential(*layers).to(memory_format=torch.channels_last_3d)
        self.feature_dim = channels
        self.channels_last = True

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x.contiguous(memory_format=torch.channels_last_3d)).mean(dim=(2, 3, 4))


def tiny(in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)) -> VideoBackbone:
    return TinyVideoNet(in_channels, widths)


BACKBONES: dict[str, Callable[..., VideoBackbone]] = {
    "r3d_18": r3d_18,
    "r2plus1d_18": r2plus1d_18,
    "s3dg": s3dg,
    "r3d_50": r3d_50,
    "tiny": tiny,
}


def to_channels_last(backbone: VideoBackbone) -> VideoBackbone:
    """Make the backbone's 5-D weights channels-last (``channels_last_3d``), in place.

    On GPUs with tensor cores cuDNN's 3D convolutions in bf16/fp16 prefer this layout;
    the clips follow it (``models.methods.as_backbone_input``). train.py applies it on GPU.
    """
    backbone.to(memory_format=torch.channels_last_3d)
    backbone.channels_last = True
    return backbone


def create_backbone(name: str, **kwargs) -> VideoBackbone:
    """Build a registered backbone by name; keyword arguments go to its constructor."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](**kwargs)
