"""Dataset layouts that ``motionssl-prepare`` reads: one module per dataset, one registry.

A layout reader takes the downloaded dataset (``--src``) and its split files (``--splits``)
and returns a :class:`Dataset`: the classes in label order, every video with its class and
the splits that list it (with the line that lists it, so a missing file is reported
precisely), and the index files to write. Readers never touch the videos.

===========  ==========================================================================
``ucf101``   ``src/<Class>/v_*.avi`` with ``classInd.txt``, ``trainlist0k.txt``, ``testlist0k.txt``
``hmdb51``   ``src/<class>/<video>.avi`` with ``<class>_test_split<k>.txt`` files
``kinetics`` CSV annotations ``label,youtube_id,time_start,time_end,split`` and the clips
``folder``   any ``src/<class>/<video>`` tree, or ``src/<video>`` (unlabelled); optional ``train.txt`` /
             ``val.txt`` / ``test.txt``
===========  ==========================================================================

A new dataset is a module here with a reader ``(src, splits) -> Dataset`` and one
:func:`register_dataset` call in :func:`_register_builtins`. A reader reports what is wrong
with a dataset through :func:`fail` (a ``DataError``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import DataError

__all__ = ["DATASETS", "Dataset", "INPUT_EXTENSIONS", "Item", "register_dataset"]

# Extensions that ``folder`` and ``kinetics`` pick up when scanning --src; broader than
# what the pipelines read, because raw downloads come in every container.
INPUT_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg",
                              ".flv", ".wmv", ".3gp", ".ogv", ".ts"})


@dataclass
class Item:
    """One input video: where it is, its class, and the index files that list it.

    ``splits`` maps an index name (``"train_split1"``) to where the split file listed the
    video (``"trainlist01.txt line 12"``), so a missing file can be reported precisely.
    """

    src: Path
    class_name: Optional[str]  # None: an unlabelled video (label -1)
    splits: Dict[str, str] = field(default_factory=dict)


@dataclass
class Dataset:
    """What a layout reader found: classes in label order, videos, and the index names to write."""

    classes: List[str]
    items: List[Item]
    index_names: List[str]


def fail(message: str):
    """Raise a :class:`~motionssl.pipelines.errors.DataError` with ``message``: what is wrong with the dataset or
    its split files, and what to do (``motionssl-prepare`` prints it as its one-line error)."""
    raise DataError(message)


def lines(path: Path) -> List[Tuple[int, str]]:
    """Non-blank lines of a split file with their 1-based numbers."""
    if not path.is_file():
        fail(f"split file {path} not found; check --splits")
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # a byte order mark is not part of line 1
        return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def add(items: Dict[Path, Item], src: Path, class_name: str, split: Optional[str], where: str) -> None:
    """Record ``src`` (once, however many split files list it) and its split membership."""
    item = items.setdefault(src, Item(src, class_name))
    if item.class_name != class_name:
        fail(f"{where}: {src.name} is listed with class {class_name!r} but earlier with {item.class_name!r}")
    if split is not None:
        item.splits.setdefault(split, where)


def is_input_video(name: str) -> bool:
    """Whether a file name is a video to read (an input extension, not hidden like macOS ``._x.mp4``)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in INPUT_EXTENSIONS


def video_files(root: Path):
    """Video files under ``root`` (recursively), skipping hidden files and folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_input_video(name):
                yield Path(dirpath) / name


Reader = Callable[[Path, Optional[Path]], Dataset]
DATASETS: Dict[str, Reader] = {}


def register_dataset(name: str, reader: Reader) -> Reader:
    """Add the layout ``name`` (which must be new) to :data:`DATASETS`; returns ``reader``."""
    if name in DATASETS:
        raise ValueError(f"a dataset layout named {name!r} is registered already")
    DATASETS[name] = reader
    return reader


def _register_builtins() -> None:
    from .folder import folder
    from .hmdb51 import hmdb51
    from .kinetics import kinetics
    from .ucf101 import ucf101

    for name, reader in (("ucf101", ucf101), ("hmdb51", hmdb51), ("kinetics", kinetics), ("folder", folder)):
        register_dataset(name, reader)


_register_builtins()
