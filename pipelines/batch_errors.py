"""A batch that could not be built, in one line: :class:`PipelineError`, read from the text DALI passes on.

A failure while a batch is built reaches the iterator as one DALI exception whose text
holds the worker processes' tracebacks and DALI's own framing. :func:`explain` finds the
one line that matters: a :class:`~.video_io.VideoError` raised by the window source names
its file, and that line is found in the text; a failure of DALI's own video decoder names
only a sample number, so the files the failing sample may come from are listed with it.
Anything else (a bug, CUDA out of memory) is no data error, and the caller lets the
original exception and its traceback through.
"""
from __future__ import annotations

import re
from typing import Callable, Collection, List, Optional

from .errors import MotionSSLError

_NAMED = re.compile(r"^(?:[\w.]*VideoError: )?(.+?): (.+)$", re.MULTILINE)
_SAMPLE = re.compile(r"sample #(\d+)")
_FRAMING = ("Traceback", "  ", "Exception traceback", "Critical error", "Error in")  # DALI's lines, not the cause


class PipelineError(MotionSSLError, RuntimeError):
    """A batch that could not be built, in one line: the file and the cause where they are known."""


def named_file(text: str, paths: Collection[str]) -> Optional[PipelineError]:
    """The first line of ``text`` that is ``"<path>: <reason>"`` for one of ``paths`` (a VideoError's, perhaps
    behind its class name), as a :class:`PipelineError`; ``None`` when there is none."""
    for match in _NAMED.finditer(text):
        if match.group(1) in paths:
            return PipelineError(f"{match.group(1)}: {match.group(2)}")
    return None


def decoder_cause(text: str) -> str:
    """DALI's video decoder's own message in ``text``: the first line after "encountered:" that is not
    DALI's framing or a traceback (the whole text when there is none), at most 300 characters."""
    cause = text.split("encountered:", 1)[-1]  # DALI puts the operator's own message after this word
    return next((line.strip() for line in cause.splitlines()
                 if line.strip() and not line.startswith(_FRAMING)), text.strip())[:300]


def explain(exc: BaseException, epoch: int, iteration: int, *, paths: Collection[str],
            describe_batch: Callable[[int, int], List[str]], batch_size: int, batches_per_epoch: int,
            ahead: int = 2) -> Optional[PipelineError]:
    """One line for a data failure that surfaced while batch ``iteration`` of ``epoch`` was awaited, or ``None``.

    Decoding runs ``ahead`` batches in advance, so the failing sample may belong to one of
    the next ``ahead`` batches of the epoch (``batches_per_epoch`` of them).
    ``paths`` are the dataset's files; ``describe_batch(epoch, batch)`` the files of a
    batch, in slot order (:meth:`~.sources.WindowSource.describe_batch`).
    """
    text = str(exc)
    named = named_file(text, set(paths))
    if named is not None:
        return named
    if "fn.decoders.video" not in text:
        return None
    batches = range(iteration, min(iteration + ahead + 1, batches_per_epoch))
    sample = _SAMPLE.search(text)
    if sample and int(sample.group(1)) < batch_size:
        slot = int(sample.group(1))
        files = [describe_batch(epoch, b)[slot] for b in batches]
        where = f"sample {slot} of batch {iteration}" + (f" or one of the {len(files) - 1} after it" if
                                                         len(files) > 1 else "")
    else:
        files = [p for b in batches for p in describe_batch(epoch, b)]
        where = f"batch {iteration}" + (f" or one of the {len(batches) - 1} after it" if len(batches) > 1 else "")
    listed = ", ".join(dict.fromkeys(files))
    return PipelineError(f"{decoder_cause(text)} (epoch {epoch}, {where}; the file is one of: {listed}) — check "
                         f"it with `motionssl-prepare`, or decode with decoder='pyav', which names the file")
