"""Window decoders: one protocol, one registry, the window checks written once, and the choice of decoder.

A decoder turns one window of a video — ``count`` consecutive frames from frame ``start``
— into RGB frames for the graph. Two kinds sit behind the one window source
(:class:`~..sources.WindowSource`):

* **frame decoders** decode in the source's worker processes and hand frames to the graph:
  ``"pyav"`` (:mod:`.pyav`, the CPU default: any codec and size, DALI's colours, damage
  named) and ``"torchcodec"`` (:mod:`.torchcodec`, optional, never a default);
* **graph decoders** get the file's bytes and decode inside the graph: ``"dali"``
  (:mod:`.dali`, ``fn.decoders.video``: NVDEC on the GPU, where it is the default).

What every frame decoder shares is written once, in :func:`read_window`: the window start
clamped into the video, the frames asked for by their timestamps (frame ``i`` is the frame
with the ``i``-th smallest pts, whatever the decoder), a decoder that returns fewer frames
named with the file, and frames past the end repeating the last one (the index decides
whether short videos are padded or skipped; this only makes padding exact). A decoder
decodes the exact frames whose pts it is given (:meth:`Decoder.frames`).

:func:`choose_decoder` checks every video of the index against the chosen decoder *before*
the first batch: when the decoder was left to its default and some file does not suit
it, the dataset is decoded by PyAV workers instead, said in one logged line; when it was
asked for explicitly, an unusable file is an error that names it and the command that
converts it.

A new decoder is a module here with a :class:`Decoder` subclass and one
:func:`register_decoder` call in :func:`_register_builtins`.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..index import VideoIndex
from ..video_io import CONVERT_HINT, VideoError, frame_timestamps

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu")

__all__ = ["DECODERS", "DEVICES", "Decoder", "choose_decoder", "default_decoder", "frame_decoders", "get_decoder",
           "read_window", "register_decoder", "WindowBuffers"]


class Decoder:
    """A window decoder. Subclasses set :attr:`name` and implement :meth:`frames` (frame decoders) or set
    :attr:`in_graph` and implement :meth:`graph` (decoders inside the DALI graph).

    Attributes:
        name: the ``decoder=`` value that selects it.
        in_graph: the source hands the graph each file's bytes and the window start, and
            :meth:`graph` decodes (DALI's decoder); else the source's workers call
            :meth:`frames` through :func:`read_window`.
        doc: one line for listings.
    """

    name: str = ""
    in_graph: bool = False
    doc: str = ""
    keeps: bool = False  # :meth:`frames` takes ``keep`` (returns only those frames, converting no other)

    def unavailable(self) -> Optional[str]:
        """Why this decoder cannot be used here (one line, with how to install it), or ``None``."""
        return None

    def check(self, index: VideoIndex, device: str, device_id: int = 0,
              bad_files: str = "skip") -> Tuple[VideoIndex, int, Optional[Tuple[str, str]], str]:
        """``(index, count, first (path, reason), where)``: the videos of ``index`` it cannot read on ``device``.

        Frame decoders read what their library reads: nothing to check (``count`` 0).
        """
        return index, 0, None, ""

    def frames(self, path: str, wanted: np.ndarray, where: str = "", **options) -> Iterable:
        """The frames of ``path`` whose pts are ``wanted`` (sorted, from :func:`..video_io.frame_timestamps`),
        in order (a list, or yielded one by one: :func:`read_window` copies each as it comes), each
        ``(H, W, 3)`` uint8 RGB and upright (the display matrix's quarter turn applied,
        :func:`..video_io.display_rotation`); fewer when the file ends early. A :class:`VideoError`
        naming the file (and ``where``: "frames 16..31") on any failure of the file.

        A decoder whose :attr:`keeps` is true also takes ``keep``: the positions in ``wanted``
        (sorted, distinct) of the frames to return; the frames between them are decoded (the
        codec needs them) but not converted. :func:`read_window` picks the kept frames itself
        from a decoder that does not."""
        raise NotImplementedError(f"decoder {self.name!r} decodes inside the graph")

    def graph(self, encoded, start, length: int, device: str, rotation=None):
        """Graph op (in-graph decoders): ``(length, H, W, 3)`` uint8 frames of the encoded file from ``start``,
        upright: ``rotation`` (when not ``None``) is each sample's counter-clockwise turn in degrees
        (:attr:`..video_io.Media.rotation`), for a decoder that does not apply the display matrix itself."""
        raise NotImplementedError(f"decoder {self.name!r} decodes in the source's workers")


DECODERS: Dict[str, Decoder] = {}


def register_decoder(decoder: Decoder) -> Decoder:
    """Add ``decoder`` to :data:`DECODERS` under its name (which must be new); returns it.

    Parameters
    ----------
    decoder : Decoder
        The decoder; its ``name`` must be new.
    """
    if not decoder.name or decoder.name in DECODERS:
        raise ValueError(f"decoder name {decoder.name!r} is empty or registered already")
    DECODERS[decoder.name] = decoder
    return decoder


def frame_decoders() -> Tuple[str, ...]:
    """The registered decoders that decode in the source's workers (not inside the graph)."""
    return tuple(name for name, decoder in DECODERS.items() if not decoder.in_graph)


def get_decoder(name: str) -> Decoder:
    """The registered decoder ``name``; a ``ValueError`` listing the choices otherwise."""
    if name not in DECODERS:
        raise ValueError(f"decoder={name!r}; choose one of {tuple(DECODERS)}")
    return DECODERS[name]


def default_decoder(device: str) -> str:
    """NVDEC through DALI on GPU; PyAV workers on CPU (the faster CPU path, any codec)."""
    return "dali" if device == "gpu" else "pyav"


class WindowBuffers:
    """Window arrays that are handed out again once nothing holds them any more (one pool per process).

    A decoding worker fills one window per sample; a fresh array per window costs a fresh
    allocation whose pages are faulted in again at first touch. DALI's parallel external
    source copies every sample it is handed into a shared-memory chunk and then drops it
    (``nvidia.dali._multiproc``: the worker's dispatcher thread writes each finished task into
    shared memory; without workers the external source copies on ``feed_input``), but a task
    holds all its samples until that copy, and the next task is decoded meanwhile. So a
    buffer is reused only when nothing but the pool refers to it (its reference count: every
    window handed out, and every view of it, refers to it): a window still held — by DALI,
    a task in flight or a caller who keeps samples — is never written again. Buffers are
    flat bytes, so one serves windows of any size up to its own; at most ``keep`` are kept,
    past that a window gets an array of its own.
    """

    def __init__(self, keep: int = 16):
        self.keep = keep
        self.buffers: List[np.ndarray] = []
        self.allocations = 0  # buffers made so far (a figure for tests and benchmarks)

    def __getstate__(self):  # a worker process starts with an empty pool of its own
        return {"keep": self.keep, "buffers": [], "allocations": 0}

    def __call__(self, shape: Tuple[int, ...], dtype) -> np.ndarray:
        """A C-ordered array of ``shape`` and ``dtype`` that no one else holds (contents undefined)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        # Free: referred to by the list and getrefcount's argument only.
        free = [i for i in range(len(self.buffers)) if sys.getrefcount(self.buffers[i]) == 2]
        fits = [i for i in free if self.buffers[i].nbytes >= nbytes]
        if fits:
            chosen = min(fits, key=lambda i: self.buffers[i].nbytes)
        else:
            self.allocations += 1
            flat = np.empty(nbytes, dtype=np.uint8)
            if free:  # a free buffer too small for this window: replaced by a larger one
                chosen = free[0]
                self.buffers[chosen] = flat
            elif len(self.buffers) < self.keep:
                chosen = len(self.buffers)
                self.buffers.append(flat)
            else:
                return flat.view(dtype).reshape(shape)
        return self.buffers[chosen][:nbytes].view(dtype).reshape(shape)


def read_window(path: str, start: int, count: int, timestamps: Optional[np.ndarray] = None,
                decoder: str = "pyav", out: Optional[Callable[[Tuple[int, ...], np.dtype], np.ndarray]] = None,
                keep: Optional[Sequence[int]] = None, **options):
    """Frames ``start .. start+count-1`` of ``path`` as ``(count, H, W, 3)`` uint8 RGB, decoded by a frame decoder.

    ``start`` is clamped into the video; frames past its end repeat the last frame.
    ``timestamps`` (:func:`..video_io.frame_timestamps`) saves the demux pass when known.
    Each frame is copied into the window as it is decoded (so only one decoded frame is
    alive at a time); ``out(shape, dtype)`` gives that window, C-ordered (a :class:`WindowBuffers`
    reuses them), else it is a new array.
    ``keep`` (sorted, distinct positions in the window, each below ``count``) returns only
    those frames, ``(len(keep), H, W, 3)``, in that order: the frames from the first kept one
    to the last are decoded, and a decoder whose :attr:`Decoder.keeps` is true converts only
    the kept ones (a kept position past the end of the video is its last frame).
    ``options`` go to the decoder's :meth:`Decoder.frames` (``threads``, ``check_errors``
    for PyAV; ``threads``, ``facts``, ``device`` for torchcodec — whose ``device="cuda"``
    returns a torch tensor on the GPU instead of an array).
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    chosen = get_decoder(decoder)
    if timestamps is None:
        timestamps = frame_timestamps(path)
    n = len(timestamps)
    if n == 0:
        raise VideoError(path, "video stream has no frames", "re-encode it or remove it")
    start = int(min(max(start, 0), n - 1))
    keep = np.arange(count) if keep is None else np.asarray(keep, dtype=np.int64)
    if keep.ndim != 1 or not len(keep) or keep[0] < 0 or keep[-1] >= count or (np.diff(keep) <= 0).any():
        raise ValueError(f"keep must be sorted, distinct window positions below count={count}, got {keep.tolist()}")
    return _read_kept(chosen, path, start, timestamps, out, keep, options)


def _read_kept(chosen: Decoder, path: str, start: int, timestamps, out, keep: np.ndarray, options):
    """:func:`read_window`'s frames at window positions ``keep`` (``start`` already clamped into the video)."""
    last = len(timestamps) - 1 - start  # the video's last frame, as a window position
    # Positions past the end are the last frame: decoded once, then repeated.
    held = np.unique(np.minimum(keep, last))
    first, stop = start + int(held[0]), start + int(held[-1]) + 1
    wanted = np.asarray(timestamps[first:stop], dtype=np.int64)
    where = f"frames {first}..{stop - 1}"
    positions = held - held[0]
    every = len(positions) == len(wanted)  # the whole stretch: nothing to leave out
    if every or chosen.keeps:
        decoded = chosen.frames(path, wanted, where=where, **({} if every else {"keep": positions}), **options)
    else:
        kept = set(positions.tolist())
        decoded = (f for i, f in enumerate(chosen.frames(path, wanted, where=where, **options)) if i in kept)
    window, tensors, got = None, [], 0
    for frame in decoded:
        if got == len(held):
            raise RuntimeError(f"decoder {chosen.name!r} returned more than the {len(held)} frames asked for")
        if not isinstance(frame, np.ndarray):  # torch tensors (a CUDA decoder): stacked below
            tensors.append(frame)
        elif window is None:
            window = (out or np.empty)((len(keep), *frame.shape), frame.dtype)
            window[0] = frame  # a turned frame is a transposed view: copied into C order
        elif frame.shape != window.shape[1:]:
            raise VideoError(path, f"the frame size changes within {where} ({window.shape[2]}x{window.shape[1]} "
                                   f"to {frame.shape[1]}x{frame.shape[0]})", "re-encode it at one size")
        else:
            window[got] = frame
        got += 1
    if got < len(held):
        raise VideoError(path, f"decoded {got} of {where}" + ("" if every else f" ({len(held)} asked for)"),
                         "the file is probably truncated; re-encode it or remove it")
    if tensors:
        import torch

        return torch.stack(tensors + [tensors[-1]] * (len(keep) - got))
    window[got:] = window[got - 1]  # kept positions past the end: the last frame again
    return window


def choose_decoder(index: VideoIndex, decoder: Optional[str], device: str,
                   bad_files: str = "skip", device_id: int = 0) -> Tuple[str, VideoIndex]:
    """The decoder that will read ``index`` on ``device``, and the index checked for it.

    Every frame count that came from a list is first checked against its file
    (:meth:`~..index.VideoIndex.verify_counts`), whatever the decoder.

    ``decoder=None`` means the default for the device (:func:`default_decoder`); if the
    default cannot read some video, the whole dataset goes through PyAV workers instead,
    said in one logged line. An explicit decoder that cannot read a video raises a
    ``ValueError`` naming the file, the reason and the conversion command; one that cannot
    be used here at all (torchcodec without FFmpeg) raises with the reason and the install
    lines. A file whose header cannot be read is skipped with a warning
    (``bad_files="skip"``) or raises (``"error"``, for evaluation, where every video must
    stay in place). On a GPU the checks run on ``device_id`` (this process's GPU) and, under
    ``torch.distributed``, every rank agrees on the outcome (:mod:`.dali`).
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {DEVICES}")
    index = index.verify_counts(bad_files=bad_files)  # a stale listed count would start windows past the end
    chosen = decoder or default_decoder(device)
    implementation = get_decoder(chosen)
    reason = implementation.unavailable()
    if reason:
        raise ValueError(f"decoder={chosen!r}: {reason}; or use decoder='pyav'")
    index, count, first, where = implementation.check(index, device, device_id, bad_files)
    if not count:
        return chosen, index
    which = {"gpu": "NVDEC", "cpu": "DALI's CPU decoder"}[device] if chosen == "dali" else chosen
    first_path, first_reason = first
    if decoder is None:
        log.warning("decoding with PyAV workers instead of %s%s: %d of %d videos cannot be read by it, e.g. %s: %s",
                    which, where, count, len(index), first_path, first_reason)
        return "pyav", index
    more = f" (and {count - 1} more videos)" if count > 1 else ""
    raise ValueError(f"{first_path}: {first_reason}{more}; decoder={chosen!r} on {device} cannot read it — "
                     f"{CONVERT_HINT}, or use decoder='pyav'")


def _register_builtins() -> None:
    from .dali import DaliDecoder
    from .pyav import PyAVDecoder
    from .torchcodec import TorchcodecDecoder

    for implementation in (PyAVDecoder(), DaliDecoder(), TorchcodecDecoder()):
        register_decoder(implementation)


_register_builtins()
