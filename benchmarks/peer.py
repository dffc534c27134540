"""The peer loader: the loader a PyTorch user would write instead of the DALI pipeline.

A ``torch.utils.data.DataLoader`` in the style of pytorchvideo and mmaction2: worker
processes decode one window per video (the same window source and decoder as the
pipeline: PyAV, or torchcodec where it is installed), build each clip of the method with
``torchvision.transforms.v2.functional`` on uint8 tensors, and a ``collate_fn`` batches
what can be batched — the RAD noise mosaics and blends, the conversion to normalised
float and the ``(B, C, T, H, W)`` layout. The batch keeps the pipeline's contract
(:mod:`pipelines.contract`): the same keys, shapes, dtypes and devices.

It does the same work per sample as the pipeline — same speeds, residual gaps, crops,
flips, colour jitter, RAD/BE blends and normalisation — but the way torchvision does it,
not bit-identical to the graph:

* the crop is torchvision's integer box (the pipeline samples a sub-pixel ROI);
* colour jitter is torchvision's: brightness, contrast (pivot: the image's mean grey),
  saturation and hue (in HSV) one after another, each rounded back to uint8; grayscale is
  saturation 0 (the pipeline applies one YIQ colour matrix, contrast pivots on 128);
* residuals are taken from the jittered uint8 frames.

The per-sample parameters are the planner's draws (the source draws them as it does for
the pipeline), so both loaders see the same windows, speeds and gaps; a peer written from
scratch would draw them with torchvision's ``get_params`` at the same cost.

On ``device="gpu"`` the workers only decode; the main process copies each window to the
GPU and builds the clips there with the same functions (torchvision's v2 functionals run
on CUDA tensors), the usual "CPU decode + GPU augmentation" recipe; clips come out
float16, as the pipeline yields them. ``decode_in_main=True`` (torchcodec only) moves the
decoding into the main process too, on the loader's device — torchcodec's CUDA decoder on
GPU, which cannot run in forked workers; the workers then only draw the parameters.

The plumbing around that work — a ``DataLoader`` in order, pinned memory and asynchronous
copies on GPU — is what any PyTorch loader writes, and is the reference loader's own
(:class:`~motionssl.pipelines.reference_loader.DeviceLoader`): the two loaders differ only in
how they build a batch.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset

from motionssl.pipelines.contract import torch_device
from motionssl.pipelines.decoders import frame_decoders, read_window
from motionssl.pipelines.decoders.facts import FileFacts  # the workers' per-file cache
from motionssl.pipelines.ops.blend import tile_size
from motionssl.pipelines.ops.config import KINETICS_MEAN, KINETICS_STD
from motionssl.pipelines.planners.base import ParamKeys, Planner
from motionssl.pipelines.reference_loader import DeviceLoader, stack_ids
from motionssl.pipelines.sources import WindowSource


# --- one clip ---------------------------------------------------------------------------------
def crop_flip_resize(frames: torch.Tensor, roi, size, antialias: bool) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 → the integer box nearest ``roi`` (``[y0, x0, y1, x1]``, x swapped when
    flipped), resized to ``size``, mirrored when flipped: ``RandomResizedCrop`` + ``RandomHorizontalFlip``."""
    height, width = frames.shape[-2:]
    y0, x0, y1, x1 = (float(v) for v in roi)
    flip = x0 > x1
    left, right = min(x0, x1), max(x0, x1)
    top, left = int(round(y0)), int(round(left))
    h = max(1, min(int(round(y1 - y0)), height - top))
    w = max(1, min(int(round(right - left)), width - left))
    out = F.resized_crop(frames, top, left, h, w, list(size), antialias=antialias)
    # Contiguous (C, H, W) planes: the colour functionals run 10-15 % faster on them than on
    # the channels-last layout the uint8 resize returns.
    return (F.horizontal_flip(out) if flip else out).contiguous()


def jitter(frames: torch.Tensor, color) -> torch.Tensor:
    """torchvision's colour jitter with the drawn ``[brightness, contrast, saturation, hue°]``, uint8 in and out.

    Factors at their identity are skipped, as ``ColorJitter`` skips an unset one; the
    grayscale draw is saturation 0.
    """
    b, c, s, h = (float(v) for v in color)
    if b != 1.0:
        frames = F.adjust_brightness(frames, b)
    if c != 1.0:
        frames = F.adjust_contrast(frames, c)
    if s != 1.0:
        frames = F.adjust_saturation(frames, s)
    if h != 0.0:
        frames = F.adjust_hue(frames, h / 360.0)
    return frames


def build_sample(window: torch.Tensor, params: Dict[str, np.ndarray], planner: Planner) -> Dict[str, torch.Tensor]:
    """The uint8 pieces of one sample from its ``(F, C, H, W)`` uint8 window (any device; the frames its clips read).

    RGB clips are ``(T, C, h, w)``; residual clips ``(T, C, h, w)`` of ``|a − b|`` (exact
    in uint8); an appearance-disturbed clip adds ``name.tile`` (RAD: this sample's frame
    shrunk to one tile, lent to the batch) or ``name.frame`` (BE: its own frame index).
    """
    clip = planner.cfg.clip
    a = clip.augment
    out = {}
    for name, (kind, appearance) in planner.clip_specs.items():
        k = ParamKeys(name)
        idx = torch.as_tensor(np.asarray(params[k.idx], dtype=np.int64), device=window.device)
        x = crop_flip_resize(window.index_select(0, idx), params[k.roi], a.size, a.antialias)
        x = jitter(x, params[k.color])
        if kind == "residual":
            t = clip.frames
            x = (x[:t].to(torch.int16) - x[t:2 * t].to(torch.int16)).abs_().to(torch.uint8)
        elif appearance is not None and appearance.op != "none":
            if appearance.op == "be":
                out[name + ".frame"] = torch.as_tensor(int(np.asarray(params[k.frame]).reshape(-1)[0]))
            else:
                lent = window[int(np.asarray(params[k.frame]).reshape(-1)[0])]
                out[name + ".tile"] = F.resize(lent, list(tile_size(a.size, appearance.grid)), antialias=a.antialias)
        out[name] = x
    return out


# --- the batch ----------------------------------------------------------------------------------
def _normalised(x: torch.Tensor, mean, std, dtype) -> torch.Tensor:
    """``(B, T, C, h, w)`` uint8 or float in [0, 1] → ``(B, C, T, h, w)`` normalised ``dtype``."""
    if not x.is_floating_point():
        x = F.to_dtype(x, torch.float32, scale=True)
    x = F.normalize(x, list(mean), list(std))
    return x.permute(0, 2, 1, 3, 4).to(dtype).contiguous()


def collate(samples: List[dict], planner: Planner, dtype=torch.float32) -> Dict[str, torch.Tensor]:
    """Stack the samples of a batch and finish it: RAD/BE blends, normalisation, layout."""
    a = planner.cfg.clip.augment
    batch = {}
    for name, (kind, appearance) in planner.clip_specs.items():
        x = torch.stack([s["pieces"][name] for s in samples])  # (B, T, C, h, w) uint8
        if kind == "residual":
            batch[name] = _normalised(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3, dtype)
            continue
        if appearance is not None and appearance.op != "none":
            k = ParamKeys(name)
            x = F.to_dtype(x, torch.float32, scale=True)
            lam = torch.tensor([float(s["params"][k.lam]) for s in samples], device=x.device).view(-1, 1, 1, 1, 1)
            if appearance.op == "be":
                frames = torch.stack([s["pieces"][name + ".frame"] for s in samples]).to(x.device)
                noise = x[torch.arange(len(samples), device=x.device), frames].unsqueeze(1)
            else:
                tiles = torch.stack([s["pieces"][name + ".tile"] for s in samples])  # (B, C, th, tw)
                if appearance.op == "rad_inter":  # sample i receives the frame that sample partner[i] lends
                    partner = torch.tensor([int(s["params"][k.partner]) for s in samples], device=tiles.device)
                    tiles = tiles[partner]
                grid = appearance.grid
                mosaic = tiles.repeat(1, 1, grid, grid)[..., :a.size[0], :a.size[1]]
                noise = F.to_dtype(mosaic, torch.float32, scale=True).unsqueeze(1)
            x = torch.lerp(x, noise, lam)
        batch[name] = _normalised(x, a.mean, a.std, dtype)
    for name, kind in planner.values.items():
        batch[name] = torch.as_tensor(np.stack([np.asarray(s["params"][name]) for s in samples]).astype(kind))
    batch.update(stack_ids(samples))
    device = next(iter(batch.values())).device if planner.clip_specs else torch.device("cpu")
    return {k: v.to(device) for k, v in batch.items()}


def collate_windows(samples: List[dict]) -> Dict[str, torch.Tensor]:
    """The decode-only batch: the windows as they are, ``(B, W, H, W, 3)`` uint8."""
    return {"window": torch.stack([s["window"] for s in samples]), **stack_ids(samples)}


class PeerSamples(Dataset):
    """Sample ``pos`` (= batch × batch size + slot) of one epoch of ``source``: decoded, and built when ``build``.

    A source with ``decoder="dali"`` stands for "decode later": the item then carries the
    file and the window start instead of the window (its bytes are dropped).
    """

    def __init__(self, source: WindowSource, planner: Planner, epoch: int = 0, build: bool = True):
        self.source, self.planner, self.epoch, self.build = source, planner, epoch, build

    def __len__(self) -> int:
        return len(self.source) * self.source.batch_size

    def __getitem__(self, pos: int) -> dict:
        iteration, slot = divmod(int(pos), self.source.batch_size)
        sample = dict(zip(self.source.keys, self.source.sample(self.epoch, iteration, slot)))
        if "encoded" in sample:  # decoded later, in the main process
            sample.pop("encoded")
            start = int(sample.pop("window_start"))
            video = int(sample["index"])
            return {"label": sample.pop("label"), "index": sample.pop("index"), "params": sample,
                    "path": self.source.paths[video], "start": start}
        # (F, H, W, 3) uint8: the frames the clips read, renumbered, as the pipeline's workers hand them over
        # (the same source: this peer converts no more frames than the pipeline does)
        window = torch.from_numpy(sample.pop("frames"))
        item = {"label": sample.pop("label"), "index": sample.pop("index"), "params": sample}
        if self.build and self.planner.clip_specs:
            item["pieces"] = build_sample(window.permute(0, 3, 1, 2), sample, self.planner)
        else:  # decode-only, or built later in the main process
            item["window"] = window
        return item


class PeerLoader(DeviceLoader):
    """The peer loader of one epoch of an iterator's shard (see the module doc)."""

    def __init__(self, iterator, decoder: str = "pyav", epoch: int = 0, num_workers: int = 2,
                 prefetch_factor: Optional[int] = 2, device: Optional[str] = None,
                 augment_in_main: Optional[bool] = None, decode_in_main: bool = False):
        if decoder not in frame_decoders():
            raise ValueError(f"decoder={decoder!r}: the peer loader decodes with 'pyav' or 'torchcodec'")
        if decode_in_main and decoder != "torchcodec":
            raise ValueError("decode_in_main decodes with torchcodec (its CUDA decoder on GPU): give "
                             "decoder='torchcodec'")
        self.planner = iterator.planner
        device = torch_device(device or iterator.device, iterator.device_id)
        gpu = device.type == "cuda"
        # On GPU the workers only decode and the main process augments on the device; on
        # CPU the workers do everything (``augment_in_main=True`` runs the GPU recipe on the CPU).
        self.decode_in_main = bool(decode_in_main)
        self.in_main = (gpu if augment_in_main is None else bool(augment_in_main)) or self.decode_in_main
        source = iterator.make_source(decoder="dali" if decode_in_main else decoder)
        self.decoder, self.window = decoder, iterator.planner.window
        self._timestamps = FileFacts() if decode_in_main else None
        self.build_dtype = torch.float16 if gpu else torch.float32  # the clips' dtype out of collate
        decode_only = not self.planner.clip_specs
        dataset = PeerSamples(source, self.planner, epoch, build=not self.in_main)
        if decode_only:
            collate_fn = collate_windows
        elif self.in_main:
            collate_fn = list  # the workers hand over windows; the clips are built on the GPU
        else:
            collate_fn = self._collate
        super().__init__(dataset, device, num_workers, prefetch_factor, batch_size=source.batch_size, drop_last=True,
                         collate_fn=collate_fn)

    def _collate(self, samples: List[dict]) -> Dict[str, torch.Tensor]:
        return collate(samples, self.planner, self.build_dtype)

    def _decode(self, item: dict) -> torch.Tensor:
        """The item's window decoded by torchcodec in this process, on the loader's device."""
        path = item.pop("path")
        window = read_window(path, item.pop("start"), self.window, self._timestamps.get(path), decoder="torchcodec",
                             facts=self._timestamps, device=self.device.type)
        return window if isinstance(window, torch.Tensor) else torch.from_numpy(window)

    def on_device(self, batch) -> Dict[str, torch.Tensor]:
        """A batch from the workers on the loader's device; where the workers hand over windows, the clips built
        here, on the device."""
        if not isinstance(batch, list):
            return super().on_device(batch)
        for s in batch:
            if self.decode_in_main:
                window = self._decode(s).permute(0, 3, 1, 2)
                s["pieces"] = build_sample(window, s["params"], self.planner)
                continue
            window = s.pop("window")
            if self.gpu and not window.is_pinned():  # the DataLoader pins what its workers hand over
                window = window.pin_memory()
            window = window.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            s["pieces"] = build_sample(window, s["params"], self.planner)
        return super().on_device(collate(batch, self.planner, self.build_dtype))


def peer_loader(iterator, decoder: str = "pyav", epoch: int = 0, num_workers: int = 2,
                prefetch_factor: Optional[int] = 2, device: Optional[str] = None,
                augment_in_main: Optional[bool] = None, decode_in_main: bool = False) -> PeerLoader:
    """The peer loader of ``iterator``'s epoch ``epoch``: ``num_workers`` processes, ``decoder`` in them."""
    return PeerLoader(iterator, decoder, epoch, num_workers, prefetch_factor, device, augment_in_main,
                      decode_in_main)


# --- where the peer's time goes -------------------------------------------------------------------
def op_costs(size: int, frames: int = 16, height: int = 240, width: int = 320, repeats: int = 5) -> Dict[str, float]:
    """CPU milliseconds per ``frames``-frame clip of each step of the peer, one torch thread, and of
    the fused CPU operator's kernel on the same clip (the pipeline's step for step)."""
    import time

    rng = np.random.default_rng(0)
    window = torch.from_numpy(rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    frames_chw = window.permute(0, 3, 1, 2)
    roi = [0.1 * height, 0.8 * width, 0.9 * height, 0.15 * width]  # a flipped crop of about half the frame
    color = [1.2, 0.8, 1.1, 10.0]
    clip = crop_flip_resize(frames_chw, roi, (size, size), False)

    def cost(work) -> float:
        work()
        start = time.process_time()
        for _ in range(repeats):
            work()
        return 1e3 * (time.process_time() - start) / repeats

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {"crop+flip+resize": cost(lambda: crop_flip_resize(frames_chw, roi, (size, size), False)),
               "brightness": cost(lambda: F.adjust_brightness(clip, color[0])),
               "contrast": cost(lambda: F.adjust_contrast(clip, color[1])),
               "saturation": cost(lambda: F.adjust_saturation(clip, color[2])),
               "hue": cost(lambda: F.adjust_hue(clip, color[3] / 360.0)),
               "to float + normalise + layout": cost(lambda: _normalised(clip[None], KINETICS_MEAN, KINETICS_STD,
                                                                         torch.float32))}
    finally:
        torch.set_num_threads(threads)
    from motionssl.pipelines.ops import fused as fused

    if fused.available() is None:
        from motionssl.pipelines.ops import _kernels as kernels

        result = np.empty((3, frames, size, size), np.float32)
        idx = np.arange(frames, dtype=np.int32)
        pack = np.zeros(kernels.PACK_LENGTH, np.float32)
        for slot, values in (("colour", color), ("mean", [255 * m for m in KINETICS_MEAN]),
                             ("std", [255 * s for s in KINETICS_STD])):
            pack[kernels.OFFSETS[slot]:kernels.OFFSETS[slot] + len(values)] = values
        box = np.array(roi, np.float32)
        out["fused operator (the pipeline's whole clip)"] = cost(
            lambda: kernels._rgb_kernel(result, idx, window.numpy(), box, pack, window.numpy()[:1], kernels.PLAIN))
    return out


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="CPU cost per clip of each step of the peer loader and of the "
                                                 "pipeline's fused operator, on one random 320x240 clip")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args(argv)
    for size in args.sizes:
        costs = op_costs(size, args.frames)
        peer = sum(v for k, v in costs.items() if not k.startswith("fused"))
        print(f"{args.frames} frames at {size}x{size}, CPU ms per clip, one thread:")
        for name, ms in costs.items():
            print(f"  {name:44s} {ms:8.2f}")
        print(f"  {'peer total (every jitter step applied)':44s} {peer:8.2f}")
        if any(k.startswith("fused") for k in costs):
            fused_ms = next(v for k, v in costs.items() if k.startswith("fused"))
            print(f"  peer / fused operator: {peer / fused_ms:.1f}x")


if __name__ == "__main__":
    main()
