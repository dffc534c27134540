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
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..index import VideoIndex
from ..video_io import CONVERT_HINT, VideoError, frame_timestamps

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu")

__all__ = ["DECODERS", "DEVICES", "Decoder", "choose_decoder", "default_decoder", "frame_decoders", "get_decoder",
           "read_window", "register_decoder"]


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

    def unavailable(self) -> Optional[str]:
        """Why this decoder cannot be used here (one line, with how to install it), or ``None``."""
        return None

    def check(self, index: VideoIndex, device: str, device_id: int = 0,
              bad_files: str = "skip") -> Tuple[VideoIndex, int, Optional[Tuple[str, str]], str]:
        """``(index, count, first (path, reason), where)``: the videos of ``index`` it cannot read on ``device``.

        Frame decoders read what their library reads: nothing to check (``count`` 0).
        """
        return index, 0, None, ""

    def frames(self, path: str, wanted: np.ndarray, where: str = "", **options) -> List:
        """The frames of ``path`` whose pts are ``wanted`` (sorted, from :func:`..video_io.frame_timestamps`),
        in order, each ``(H, W, 3)`` uint8 RGB and upright (the display matrix's quarter turn applied,
        :func:`..video_io.display_rotation`); fewer when the file ends early. A :class:`VideoError`
        naming the file (and ``where``: "frames 16..31") on any failure of the file."""
        raise NotImplementedError(f"decoder {self.name!r} decodes inside the graph")

    def graph(self, encoded, start, length: int, device: str, rotation=None):
        """Graph op (in-graph decoders): ``(length, H, W, 3)`` uint8 frames of the encoded file from ``start``,
        upright: ``rotation`` (when not ``None``) is each sample's counter-clockwise turn in degrees
        (:attr:`..video_io.Media.rotation`), for a decoder that does not apply the display matrix itself."""
        raise NotImplementedError(f"decoder {self.name!r} decodes in the source's workers")


DECODERS: Dict[str, Decoder] = {}


def register_decoder(decoder: Decoder) -> Decoder:
    """Add ``decoder`` to :data:`DECODERS` under its name (which must be new); returns it."""
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


def read_window(path: str, start: int, count: int, timestamps: Optional[np.ndarray] = None,
                decoder: str = "pyav", **options):
    """Frames ``start .. start+count-1`` of ``path`` as ``(count, H, W, 3)`` uint8 RGB, decoded by a frame decoder.

    ``start`` is clamped into the video; frames past its end repeat the last frame.
    ``timestamps`` (:func:`..video_io.frame_timestamps`) saves the demux pass when cached.
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
    stop = min(start + count, n)
    wanted = np.asarray(timestamps[start:stop], dtype=np.int64)
    frames = chosen.frames(path, wanted, where=f"frames {start}..{stop - 1}", **options)
    if len(frames) < len(wanted):
        raise VideoError(path, f"decoded {len(frames)} of frames {start}..{stop - 1}",
                         "the file is probably truncated; re-encode it or remove it")
    frames = list(frames) + [frames[-1]] * (count - len(frames))
    if not isinstance(frames[0], np.ndarray):  # torch tensors (a CUDA decoder)
        import torch

        return torch.stack(frames)
    # Into a C-ordered array: np.stack alone keeps the layout of its inputs, and a turned frame is a
    # transposed view (:func:`..video_io.upright`), which DALI's external source refuses.
    return np.stack(frames, out=np.empty((count, *frames[0].shape), frames[0].dtype))


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
