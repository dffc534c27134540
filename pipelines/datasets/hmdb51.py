"""HMDB-51 (Kuehne et al. 2011): 51 action classes, AVIs, three 70/30 splits."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional

from . import Dataset, Item, add, fail, lines

HMDB_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>\d+)\.txt$")


def hmdb51(src: Path, splits: Optional[Path]) -> Dataset:
    """HMDB-51: ``src/<class>/<video>.avi`` with ``<class>_test_split<k>.txt`` files.

    Split lines are ``video.avi 0|1|2`` (1 = train, 2 = test, 0 = not used by that split).
    Every listed video is converted (a video unused in split 1 is used in another), so
    ``all.txt`` holds the whole dataset. Labels are the sorted class names, as is usual.
    Split files default to ``src/testTrainMulti_7030_splits`` or ``src``.
    """
    split_dir = splits or (src / "testTrainMulti_7030_splits"
                           if (src / "testTrainMulti_7030_splits").is_dir() else src)
    if not split_dir.is_dir():
        fail(f"--splits {split_dir} is not a folder; pass the folder holding <class>_test_split1.txt files")
    found: Dict[int, Dict[str, Path]] = {}
    for path in split_dir.iterdir():
        match = HMDB_SPLIT_FILE.match(path.name)
        if match:
            found.setdefault(int(match["k"]), {})[match["cls"]] = path
    if not found:
        fail(f"no <class>_test_split1.txt files in {split_dir}; pass the unpacked "
              "testTrainMulti_7030_splits folder with --splits")
    classes = sorted(set().union(*found.values()))
    items: Dict[Path, Item] = {}
    index_names = []
    for k in sorted(found):
        missing = [c for c in classes if c not in found[k]]
        if missing:
            fail(f"{split_dir / f'{missing[0]}_test_split{k}.txt'} not found ({len(missing)} classes lack a "
                  f"split-{k} file); every class needs one file per split")
        for class_name in classes:
            split_file = found[k][class_name]
            for n, line in lines(split_file):
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    fail(f"{split_file} line {n}: expected `video.avi 0|1|2`, got {line!r}")
                split = {"1": f"train_split{k}", "2": f"test_split{k}", "0": None}[parts[1]]
                add(items, src / class_name / parts[0], class_name, split, f"{split_file} line {n}")
        index_names += [f"train_split{k}", f"test_split{k}"]
    return Dataset(classes, list(items.values()), index_names)
