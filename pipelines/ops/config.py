"""The configuration of a method's clips: how many frames, at which speeds, augmented how.

* :class:`ClipConfig` — what every clip of a method shares: frames per clip, speeds, the
  window, the augmentation;
* :class:`AugmentConfig` — one clip's random resized crop and flip, colour jitter and
  grayscale, normalisation (:mod:`.crop`, :mod:`.colour`, :mod:`.normalise`);
* :class:`AppearanceConfig` — the appearance disturbance of a clip (RAD / BE, :mod:`.blend`).

Plain dataclasses without DALI: a config is built and checked (``pipelines.config.build``)
before any pipeline exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from ..config import FieldError, shown

APPEARANCE_OPS = ("rad_inter", "rad_intra", "be", "none")

# Kinetics-400 channel statistics (as used by torchvision's video models).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass
class AugmentConfig:
    """Augmentation of one clip. Crop ``area`` is a fraction of the frame, ``ratio`` is w/h in pixels.

    Parameters
    ----------
    size : (int, int), default (112, 112)
        Output ``(H, W)`` of the clip in pixels.
    crop_area : (float, float), default (0.3, 1.0)
        Range of the random crop's area, as a fraction of the frame's.
    crop_ratio : (float, float), default (0.5, 2.0)
        Range of the crop's aspect ratio, width / height in pixels.
    flip_prob : float, default 0.5
        Probability of a horizontal flip of the whole clip.
    jitter_prob : float, default 0.8
        Probability of colour jitter (brightness, contrast, saturation, hue below).
    brightness, contrast, saturation : float, default 0.4
        Jitter strengths: factors drawn from ``[1 - s, 1 + s]``.
    hue : float, default 0.1
        Hue shift, a fraction of the hue circle (0.1: ±36°), at most 0.5.
    grayscale_prob : float, default 0.2
        Probability of turning the clip grey.
    mean, std : (float, float, float), default Kinetics-400's
        Per-channel normalisation of pixel values in [0, 1].
    residual_std : float, default 0.225
        Divisor of residual (frame-difference) clips.
    antialias : bool, default False
        Antialiased resizing (slower; match it between training and evaluation).
    """

    size: Tuple[int, int] = (112, 112)
    crop_area: Tuple[float, float] = (0.3, 1.0)
    crop_ratio: Tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of the hue circle, as torchvision: 0.1 → ±36°
    grayscale_prob: float = 0.2
    mean: Tuple[float, float, float] = KINETICS_MEAN
    std: Tuple[float, float, float] = KINETICS_STD
    residual_std: float = 0.225
    antialias: bool = False

    def __post_init__(self):
        for name in ("flip_prob", "jitter_prob", "grayscale_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FieldError(name, f"must be a probability in [0, 1], got {value}")
        lo, hi = self.crop_area
        if not 0.0 < lo <= hi <= 1.0:
            raise FieldError("crop_area", f"must satisfy 0 < a <= b <= 1, got {list(self.crop_area)}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise FieldError("crop_ratio", f"must satisfy 0 < a <= b, got {list(self.crop_ratio)}")
        if min(self.size) < 1:
            raise FieldError("size", f"must be positive, got {list(self.size)}")
        if not 0.0 <= self.hue <= 0.5:
            raise FieldError("hue", f"must lie in [0, 0.5], got {self.hue}")
        if not min(self.std) > 0:  # the normalisation divides by them
            raise FieldError("std", f"must be > 0 for every channel (the pixel values are divided by it), got "
                                    f"{list(self.std)}")
        if not self.residual_std > 0:
            raise FieldError("residual_std", f"must be > 0 (a residual clip is divided by it), got {self.residual_std}")


@dataclass
class AppearanceConfig:
    """Appearance disturbance (MoQuad §3.1, Tab. 5 left): ``op`` in rad_inter / rad_intra / be / none.

    Parameters
    ----------
    op : {"rad_inter", "rad_intra", "be", "none"}, default "rad_inter"
        The disturbance: random appearance from another video's frame, from the video's own
        frame, background emphasis, or none.
    grid : int, default 5
        k: the noise is a k × k mosaic.
    rad_lambda : (float, float), default (0.1, 0.5)
        Range of the RAD blend weight.
    be_lambda : (float, float), default (0.0, 0.3)
        Range of the BE blend weight.
    """

    op: str = "rad_inter"
    grid: int = 5  # k: the noise is a k × k mosaic
    rad_lambda: Tuple[float, float] = (0.1, 0.5)
    be_lambda: Tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        if self.op not in APPEARANCE_OPS:
            raise ValueError(f"appearance op {shown(self.op)}; choose one of {APPEARANCE_OPS}")
        if self.grid < 1:
            raise ValueError(f"appearance grid k must be >= 1, got {shown(self.grid)}")


@dataclass
class ClipConfig:
    """What every clip of a method shares: frames per clip, speeds, augmentation.

    Parameters
    ----------
    frames : int, default 16
        Frames per clip.
    speeds : tuple of int, default (1, 2)
        The frame strides a clip may be sampled at (1: every frame, 2: every other...).
    augment : AugmentConfig or dict
        The clip's augmentation. Default: :class:`AugmentConfig`'s defaults.
    window : int, default 0
        Frames of the video a sample's clips are drawn from; 0: the fewest its clips need.
    """

    frames: int = 16
    speeds: Tuple[int, ...] = (1, 2)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Frames of the video each sample's clips are drawn from; 0: the fewest its clips need.
    # A longer window lets a sample's clips start further apart in time (CVRL's temporal
    # sampling), so two clips of one video share less than their frames' static content.
    window: int = 0

    def __post_init__(self):
        if self.frames < 1 or not self.speeds or min(self.speeds) < 1:
            raise ValueError(f"need frames >= 1 and positive speeds, got frames={shown(self.frames)} "
                             f"speeds={shown(self.speeds)}")
        if self.window < 0:
            raise ValueError(f"clip.window must be >= 0 (0: the fewest frames the clips need), got "
                             f"{shown(self.window)}")
