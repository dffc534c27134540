"""Any folder of class sub-folders (``src/<class>/<video>``) or of unlabelled videos, with optional split lists."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional

from . import INPUT_EXTENSIONS, Dataset, Item, add, fail, is_input_video, lines, video_files

FOLDER_LISTS = ("train", "val", "test")
# Trailing `label [num_frames]` columns of a list line; what precedes them is the path,
# which may hold spaces (a video path never ends in a bare number: it has an extension).
LIST_COLUMNS = re.compile(r"(\s+-?\d+){1,2}$")


def folder(src: Path, splits: Optional[Path]) -> Dataset:
    """Any ``src/<class>/<video>`` tree (videos may sit in sub-folders of a class folder), or
    a folder of videos without classes (``src/<video>``: no classes, every label ``-1``).

    Labels are the sorted class-folder names. A folder holding both loose videos and
    sub-folders with videos is refused, naming both. With ``--splits DIR`` holding ``train.txt``,
    ``val.txt`` and/or ``test.txt`` (lines: a path relative to ``src``, optionally followed
    by ``label [num_frames]``, which are ignored) those index files are written too.
    """
    loose = sorted(p for p in src.iterdir() if p.is_file() and is_input_video(p.name))
    classes = sorted(d.name for d in src.iterdir() if d.is_dir() and not d.name.startswith(".")
                     and (not loose or next(video_files(d), None) is not None))
    if loose and classes:
        fail(f"--src {src} holds both loose videos ({', '.join(p.name for p in loose[:3])}"
             f"{', ...' if len(loose) > 3 else ''}) and class sub-folders ({', '.join(classes[:3])}"
             f"{', ...' if len(classes) > 3 else ''}): it is either SRC/<class>/<video> (labelled) or SRC/<video> "
             "(unlabelled); move the loose videos into class folders, or the class folders' videos out")
    if not classes and not loose:
        fail(f"--src {src} has no class sub-folders and no videos; the folder layout is SRC/<class>/<video>, or "
             "SRC/<video> for videos without labels")
    items: Dict[Path, Item] = {}
    for path in loose:
        add(items, path, None, None, "")
    for class_name in classes:
        for path in video_files(src / class_name):
            add(items, path, class_name, None, "")
    index_names = []
    if splits is not None:
        if not splits.is_dir():
            fail(f"--splits {splits} is not a folder; for `folder` it holds train.txt / val.txt / test.txt")
        for name in FOLDER_LISTS:
            list_file = splits / f"{name}.txt"
            if not list_file.exists():
                continue
            for n, line in lines(list_file):
                rel = LIST_COLUMNS.sub("", line).replace("\\", "/")
                class_name = rel.split("/")[0] if classes else None
                if classes and ("/" not in rel or class_name not in classes):
                    fail(f"{list_file} line {n}: {rel!r} is not inside a class folder of --src "
                          f"(expected <class>/<video>, classes: {', '.join(classes[:5])}...)")
                add(items, src / rel, class_name, name, f"{list_file} line {n}")
            index_names.append(name)
        if not index_names:
            fail(f"--splits {splits} holds none of {', '.join(n + '.txt' for n in FOLDER_LISTS)}")
    if not items:
        fail(f"no videos under the class folders of {src} (extensions: {', '.join(sorted(INPUT_EXTENSIONS))})")
    return Dataset(classes, list(items.values()), index_names)
