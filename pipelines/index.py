"""The video index: (path, label, number of frames) for every video of a dataset.

These inputs are understood (:func:`load_index`):

* a **folder of class sub-folders** (``root/<class>/<video>``): labels are the sorted
  class names' positions;
* a **folder of videos without classes** (``root/<video>``): every label is ``-1``
  (unlabelled). A folder holding both loose videos and sub-folders with videos is an
  error naming both, since either reading would be a guess; for a tree of unlabelled
  videos give a glob (``"root/**/*.mp4"``);
* a **list or tuple of video paths**, or a **glob pattern** (``"clips/**/*.mp4"``,
  recursive): unlabelled;
* a **file list**, one video per line: ``path label [num_frames]``, or just ``path``
  for an unlabelled video (paths relative to the list's folder; ``#`` starts a comment;
  label ``-1`` means unlabelled);
* a **prepared dataset folder** (``motionssl-prepare``) holding ``classes.txt``
  and split lists such as ``train_split1.txt``: pass the folder and a split name.

Frame counts that a list does not give are probed once with PyAV (which also reads each
file's frame size as displayed, codec, pixel format and display rotation) and cached in the
toolkit's cache folder (``$MOTIONSSL_CACHE``, else ``~/.cache/motionssl``), one file per list or folder, keyed by
each video's size and modification time so an edited video is probed again. Nothing is
written into the dataset folder, which may be read-only or shared.

Unreadable files and videos shorter than the window follow a policy instead of crashing
mid-epoch: ``"skip"`` (log a warning naming each file), ``"error"`` (raise naming them),
or for short videos ``"pad"`` (repeat the last frame; counted in :attr:`VideoIndex.stats`).

This module is where the index's names are imported from; the work is done in

* :mod:`.video_index` — the :class:`VideoIndex` type (counts checked, headers read, short videos);
* :mod:`.readers` — :func:`load_index` and a reader per input above;
* :mod:`.dataset_files` — list lines, ``classes.txt``, split lists, video file names;
* :mod:`.index_cache` — the cache of frame counts and headers on disk;
* :mod:`.probing` — reading the files (in threads) and the bad-file policy;
* :mod:`.pairs` — :func:`load_pair`: the training and test videos of an evaluation.
"""
from __future__ import annotations

from .dataset_files import NOT_SPLITS, VIDEO_EXTENSIONS, list_line, parse_list_line, read_classes, safe_name
from .environment import cache_dir
from .index_cache import CACHE_ENCODING, CACHE_VERSION
from .pairs import align_classes, class_count, load_pair, shared_videos
from .probing import BAD_FILE_POLICIES
from .readers import Data, load_index
from .video_index import SHORT_VIDEO_POLICIES, VideoIndex

__all__ = ["BAD_FILE_POLICIES", "CACHE_ENCODING", "CACHE_VERSION", "Data", "NOT_SPLITS", "SHORT_VIDEO_POLICIES",
           "VIDEO_EXTENSIONS", "VideoIndex", "align_classes", "cache_dir", "class_count", "list_line", "load_index",
           "load_pair", "parse_list_line", "read_classes", "safe_name", "shared_videos"]
