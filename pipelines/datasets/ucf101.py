"""UCF-101 (Soomro et al. 2012): 101 action classes, xvid AVIs, three train/test splits."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from . import Dataset, Item, add, fail, lines


def ucf101(src: Path, splits: Optional[Path]) -> Dataset:
    """UCF-101: ``src/<Class>/v_*.avi`` with ``classInd.txt``, ``trainlist0k.txt``, ``testlist0k.txt``.

    Split files default to ``src/ucfTrainTestlist`` (where the official zip unpacks) or
    ``src``. Labels follow ``classInd.txt`` (1-based there, 0-based in ``classes.txt``).
    """
    split_dir = splits or (src / "ucfTrainTestlist" if (src / "ucfTrainTestlist").is_dir() else src)
    class_file = split_dir / "classInd.txt"
    classes: List[str] = []
    for n, line in lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            fail(f"{class_file} line {n}: expected `index ClassName`, got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            fail(f"{class_file} line {n}: class indices must run 1, 2, 3, ...; got {parts[0]} "
                  f"where {len(classes) + 1} was expected")
        classes.append(parts[1])
    label_of = {name: i for i, name in enumerate(classes)}

    items: Dict[Path, Item] = {}
    index_names = []
    for k in (1, 2, 3):
        train, test = split_dir / f"trainlist0{k}.txt", split_dir / f"testlist0{k}.txt"
        if not train.exists() and not test.exists():
            continue
        for split_file, split in ((train, f"train_split{k}"), (test, f"test_split{k}")):
            for n, line in lines(split_file):
                where = f"{split_file} line {n}"
                parts = line.split()
                rel = parts[0].replace("\\", "/")
                class_name = rel.split("/")[0]
                # trainlists carry the 1-based label, testlists do not; a label that is
                # present must agree with classInd.txt or the labels would silently shift.
                if len(parts) > 2 or "/" not in rel or (len(parts) == 2 and not parts[1].isdigit()):
                    fail(f"{where}: expected `Class/video.avi [label]`, got {line!r}")
                if class_name not in label_of:
                    fail(f"{where}: class {class_name!r} is not in {class_file}")
                if len(parts) == 2 and int(parts[1]) != label_of[class_name] + 1:
                    fail(f"{where}: label {parts[1]} disagrees with {class_file}, "
                          f"which gives {class_name} the index {label_of[class_name] + 1}")
                add(items, src / rel, class_name, split, where)
        index_names += [f"train_split{k}", f"test_split{k}"]
    if not index_names:
        fail(f"no trainlist01.txt/testlist01.txt in {split_dir}; pass the unpacked ucfTrainTestlist folder "
              "with --splits")
    return Dataset(classes, list(items.values()), index_names)
