"""The PyAV window decoder (``decoder="pyav"``): any codec and size, DALI's colours, damage named.

DALI's worker processes seek to the keyframe before the window and decode forward with
PyAV (FFmpeg's libavcodec), converting each frame to RGB exactly as DALI's decoders do
(:func:`to_rgb`, docs/design.md, "Colour conversion"). The default on the CPU, where it
ran 2.7× DALI's own CPU decoder on the development machine. Every decode collects the
decoder's error log and the frames' corrupt flags (:mod:`..video_io`, "Damaged files").
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import numpy as np

from ..video_io import VideoError, checked_frames, decoder_errors, display_rotation, open_video, upright
from . import Decoder


def _rgb_converter():
    """The one YUV → RGB conversion of the toolkit (see :func:`to_rgb`)."""
    from av.video.reformatter import ColorRange, Colorspace, Interpolation

    flags = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
    return flags, Colorspace.ITU601, ColorRange


def to_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as ``(H, W, 3)`` uint8 RGB, converted exactly as DALI's decoders convert.

    One conversion for every decoder (docs/design.md, "Colour conversion"): BT.601
    coefficients whatever the stream declares; limited ("MPEG") range unless the frame says
    full ("JPEG") range; full-range RGB out; chroma upsampled bilinearly at full horizontal
    resolution with accurate rounding — libswscale with the flags DALI 2.4's CPU decoder
    uses, so PyAV workers and DALI's CPU decoder return the same bytes. PyAV's default
    ``to_ndarray(format="rgb24")`` takes libswscale's fast path at even frame sizes, which
    differed from DALI by 12 grey levels on average (up to 76) on a textured video. The
    accurate path costs more CPU per frame (``python -m benchmarks.colour``).

    The conversion runs on the calling thread (libswscale ``threads=1``). PyAV's default
    (0: a thread per CPU) made each 320×240 frame cost 1.3–2.2 ms of process CPU instead
    of 0.9–1.1 ms, and slower in wall time too, with identical bytes; decoding happens in
    worker processes that already fill the cores, where extra threads only add work.
    """
    flags, bt601, ranges = _rgb_converter()
    source_range = ranges.JPEG if int(frame.color_range) == int(ranges.JPEG) else ranges.MPEG
    return frame.reformat(format="rgb24", interpolation=flags, src_colorspace=bt601, dst_colorspace=bt601,
                          src_color_range=source_range, dst_color_range=ranges.JPEG, threads=1).to_ndarray()


class PyAVDecoder(Decoder):
    """Decodes windows in the source's workers with PyAV (see module doc)."""

    name = "pyav"
    keeps = True
    doc = "PyAV in the decoding workers: any codec and size, DALI's colour conversion, damaged data named"

    def frames(self, path: str, wanted: np.ndarray, where: str = "", threads: int = 0, check_errors: bool = True,
               keep: Optional[np.ndarray] = None, **unused) -> Iterator[np.ndarray]:
        """Yields the frames whose pts are ``wanted`` (sorted), as ``(H, W, 3)`` uint8 RGB arrays.

        Each is a view of its own converted frame; :func:`..read_window` copies it into the
        window as it comes, so one converted frame is alive at a time. The damage checks
        below run once the last frame has been taken.

        Seeks to the keyframe before ``wanted[0]`` and decodes forward, so the cost is the
        GOP plus the window. ``threads`` is the codec's thread count: 0 lets the codec choose
        (frame and slice threads, best for one process); 1 is best when one process per core
        already fills the cores, as the decoding workers do, since codec threading then only
        adds work (H.264: +13-28 % CPU per window, VP9: +1-6 %; benchmarks/RESULTS.md).
        Frames come upright: a display matrix's quarter turn is applied (a view of the
        converted frame, so no copy; :func:`..video_io.display_rotation`).
        ``check_errors`` (default) collects the decoder's error log and the frames' corrupt
        flags and raises on damaged data; the decode is then single-threaded whatever
        ``threads`` says, since codec threads that log can deadlock against closing the
        decoder (:func:`..video_io.decoder_errors`). ``keep`` (positions in ``wanted``, sorted):
        only those frames are converted and yielded, and decoding stops after the last of them.
        """
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        done, turn = 0, None
        if check_errors:
            threads = 1
        with (decoder_errors() if check_errors else contextlib.nullcontext([])) as errors:
            container = open_video(path)
            try:
                stream = container.streams.video[0]
                if threads != 1:
                    stream.thread_type = "AUTO"
                if threads:
                    stream.codec_context.thread_count = threads
                container.seek(int(wanted[0]), stream=stream, backward=True, any_frame=False)
                kept = None if keep is None else set(int(k) for k in keep)
                needed = len(wanted) if keep is None else int(keep[-1]) + 1  # frames to decode from wanted[0]
                for frame in checked_frames(container.decode(stream), errors):
                    if frame.pts is None or frame.pts < wanted[0]:
                        continue
                    if kept is None or done in kept:  # a frame not kept is decoded, never converted
                        if turn is None:  # the stream's display matrix, on every frame
                            turn = display_rotation(frame, path)
                        yield upright(to_rgb(frame), turn)
                    done += 1
                    if done == needed:
                        break
            except VideoError:
                raise
            except Exception as exc:
                raise VideoError(path, f"decoding {where or 'the window'} failed ({exc.__class__.__name__}: {exc})",
                                 "the file is probably truncated or corrupt; re-encode it or remove it") from exc
            finally:
                container.close()
        if errors:
            raise VideoError(path, f"the decoder reported damaged data in {where or 'the window'} "
                                   f"({'; '.join(errors[:2])})",
                             "re-download or re-encode it, or remove it from the list")
