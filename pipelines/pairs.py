"""The two sides of an evaluation: training (gallery) and test (query) videos, checked against each other.

:func:`load_pair` loads both and refuses what would make the scores meaningless — test
videos that are the training videos under another name (:func:`shared_videos`), unlabelled
videos — and joins the test labels to the training classes by name (:func:`align_classes`);
:func:`class_count` sizes a classifier for their labels.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Dict, List, Optional

import numpy as np

from .dataset_files import list_line
from .errors import DataError, UnlabelledError, ours
from .readers import Data, load_index
from .video_index import VideoIndex

log = logging.getLogger(__name__)


@ours(value_error=DataError)
def load_pair(data: Data, split: Optional[str] = None, test_data: Optional[Data] = None,
              test_split: Optional[str] = None, bad_files: str = "skip"):
    """The train (gallery) and test (query) indexes of an evaluation, and a line saying what they are.

    Parameters
    ----------
    data : str, os.PathLike, or list/tuple of str
        The training videos (the gallery of retrieval), as :func:`load_index` reads them.
    split : str, optional
        Their split of a prepared dataset folder. Default ``None``.
    test_data : str, os.PathLike, or list/tuple of str, optional
        The test videos (the queries). Default ``None``: ``data`` (the two then differ by split).
    test_split : str, optional
        Their split of a prepared dataset folder. Default ``None``.
    bad_files : {"skip", "error"}, default "skip"
        What an unusable video does while loading (:func:`load_index`).

    Returns
    -------
    tuple of (VideoIndex, VideoIndex, str)
        The train index, the test index (its labels joined to the training classes by
        name, :func:`align_classes`) and a line describing both.

    Raises
    ------
    ValueError
        Testing on the very videos of training would print perfect scores that mean
        nothing, so it is an error however the test videos are named: the same list or split
        (through a link, too), or other lines, paths or byte-identical copies reaching only
        training videos (:func:`shared_videos`); test videos *partly* among the training
        videos are counted in a warning. Every evaluation scores against labels, so
        unlabelled videos (label ``-1``) on either side are an error too.
    """
    test_data = test_data or data
    train_name = _named(data) + (f" [{split}]" if split else "")
    test_name = _named(test_data) + (f" [{test_split}]" if test_split else "")
    if (not isinstance(data, (list, tuple)) and not isinstance(test_data, (list, tuple))
            and os.path.realpath(test_data) == os.path.realpath(data) and split == test_split):
        raise ValueError(f"the test videos would be the training videos: {test_name} is {train_name}; give a test "
                         "split of a prepared dataset (test_split=) or another list or folder (test_data=)")
    train = load_index(data, split=split, bad_files=bad_files)
    test = load_index(test_data, split=test_split, bad_files=bad_files)
    for index, name in ((test, test_name), (train, train_name)):
        _require_labels(index, name)
    _refuse_the_training_videos(train, test, train_name, test_name)
    test = align_classes(train, test, train_name, test_name)
    describe = f"{len(train)} videos of {train_name}, {len(test)} test videos of {test_name}"
    return train, test, describe


def _require_labels(index: VideoIndex, name: str) -> None:
    """Raise :class:`UnlabelledError` where ``index`` (``name`` in the message) holds an unlabelled video."""
    unlabelled = np.flatnonzero(index.labels < 0)
    if len(unlabelled):
        raise UnlabelledError(f"{len(unlabelled)} of the {len(index)} videos of {name} are unlabelled (label -1, e.g. "
                              f"{index.paths[unlabelled[0]]}): retrieval, linear probes and fine-tuning score against "
                              "labels; give labelled videos (class sub-folders, or a list of `path label` lines)")


def _refuse_the_training_videos(train: VideoIndex, test: VideoIndex, train_name: str, test_name: str) -> None:
    """Raise where every test video is a training video (:func:`shared_videos`); count some in a warning."""
    shared = shared_videos(train, test)
    if len(shared) == len(test):
        raise ValueError(f"the test videos would be the training videos: all {len(test)} test videos of {test_name} "
                         f"are videos of {train_name} (the same files, or byte-identical copies); give other test "
                         "videos (test_split=, test_data=)")
    if shared:
        log.warning("%d of the %d test videos of %s are also training videos of %s (the same files, or "
                    "byte-identical copies): %s%s. They find themselves and inflate the scores; remove them from the "
                    "test videos", len(shared), len(test), test_name, train_name,
                    ", ".join(test.paths[i] for i in shared[:5]), f" and {len(shared) - 5} more" if len(shared) > 5
                    else "")


def _named(data: Data) -> str:
    """``data`` in a message: itself, or for a list of paths how many and the first."""
    if isinstance(data, (list, tuple)):
        return f"the list of {len(data)} paths ({data[0] if data else ''}, ...)"
    return os.fspath(data)


def shared_videos(train: VideoIndex, test: VideoIndex, chunk: int = 1 << 16) -> List[int]:
    """Positions of the test videos that are training videos: the same file by any path, or a copy.

    A file is the same when its device and inode are (links, other relative paths); a copy
    has the same size and the same first and last ``chunk`` bytes. Only files of equal size
    are read, so a dataset costs one ``stat`` per video.
    """
    def stat(path):
        try:
            return os.stat(path)
        except OSError:
            return None

    digests: Dict[str, Optional[str]] = {}

    def digest(path: str, size: int) -> Optional[str]:
        if path not in digests:
            try:
                with open(path, "rb") as f:
                    head = f.read(chunk)
                    f.seek(max(size - chunk, len(head)))
                    digests[path] = hashlib.sha1(head + f.read(chunk)).hexdigest()
            except OSError:
                digests[path] = None
        return digests[path]

    files, by_size = set(), {}
    for path in train.paths:
        st = stat(path)
        if st is not None:
            files.add((st.st_dev, st.st_ino))
            by_size.setdefault(st.st_size, []).append(path)
    shared = []
    for i, path in enumerate(test.paths):
        st = stat(path)
        if st is None:
            continue
        same_size = by_size.get(st.st_size, ())
        if (st.st_dev, st.st_ino) in files or (same_size and digest(path, st.st_size) is not None and any(
                digest(path, st.st_size) == digest(other, st.st_size) for other in same_size)):
            shared.append(i)
    return shared


def align_classes(train: VideoIndex, test: VideoIndex, train_name: str = "the training data",
                  test_name: str = "the test data") -> VideoIndex:
    """``test`` with its labels renumbered to ``train``'s classes, joined by class *name*.

    Labels are positions in a list of class names (sorted class folders, ``classes.txt``),
    so the same number can mean another class in two datasets — a test folder that lacks
    one class shifts every later label. Where both sides know their class names, each test
    label is mapped to the training label of the same name; a test class the training data
    lacks is a ``ValueError`` naming it. Where a side has no names (a plain list), its labels
    are taken as they are, and a test label beyond the training classes is an error too.
    """
    if train.classes and test.classes:
        position = {name: label for label, name in enumerate(train.classes)}
        present = sorted({test.classes[label] for label in test.labels if label >= 0})
        unknown = [name for name in present if name not in position]
        if unknown:
            raise ValueError(f"{test_name} holds videos of {len(unknown)} class(es) that {train_name} lacks: "
                             f"{unknown[:8]}{' ...' if len(unknown) > 8 else ''}; its classes are {train.classes[:8]}"
                             f"{' ...' if len(train.classes) > 8 else ''}. Remove those videos from the test data or "
                             "add the classes to the training data")
        mapping = np.array([position.get(name, -1) for name in test.classes], dtype=np.int64)
        labels = np.where(test.labels >= 0, mapping[np.maximum(test.labels, 0)], -1)
        if not np.array_equal(labels, test.labels) or test.classes != train.classes:
            log.info("test labels joined to the training classes by name (%d test classes, %d training classes)",
                     len(test.classes), len(train.classes))
        out = test.subset(range(len(test)))
        out.labels, out.classes = labels, list(train.classes)
        return out
    for plain, plain_name, named, named_name in ((train, train_name, test, test_name),
                                                 (test, test_name, train, train_name)):
        if named.classes and not plain.classes and (plain.labels >= 0).any():
            raise ValueError(f"{plain_name} has no class names and {named_name} names its classes "
                             f"({', '.join(named.classes[:3])}{', ...' if len(named.classes) > 3 else ''}), so their "
                             "labels cannot be joined by class name; put a classes.txt beside the list (one class "
                             "name per line, line k naming label k)")
    return test


def class_count(train: VideoIndex, test: VideoIndex) -> int:
    """The number of classes a classifier of ``train``'s and ``test``'s labels needs, every label checked.

    With class names (``train``'s, which ``test``'s labels are joined to) it is their
    number; lists without names number their classes 0..K-1, K being the number of
    distinct labels of both. A label beyond (a typo such as 10000000 would otherwise size
    the classifier by it) is a ``ValueError`` naming its list, line and label.
    """
    labels = np.concatenate([train.labels, test.labels])
    count = len(train.classes) if train.classes else len(np.unique(labels[labels >= 0]))
    for index in (train, test):
        beyond = np.flatnonzero(index.labels >= count)
        if len(beyond):
            i = int(beyond[0])
            named = f"one of the {count} classes of the training videos" if train.classes else (
                f"one of 0..{count - 1}: lists without classes.txt number their {count} classes by their distinct "
                "labels; fix the label, or name the classes in a classes.txt beside the list (one name per line)")
            raise ValueError(f"{list_line(index, i)}: label {int(index.labels[i])} of {index.paths[i]} is not {named}")
    return count
