"""Kinetics (Kay et al. 2017): CSV annotations and clips downloaded from YouTube."""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Optional

from . import Dataset, Item, add, fail, video_files

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
KINETICS_NAME = re.compile(r"^(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


def kinetics(src: Path, splits: Optional[Path]) -> Dataset:
    """Kinetics: CSV annotations ``label,youtube_id,time_start,time_end,split`` and downloaded clips.

    Clips are named ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, in class folders or one
    flat folder; a row matches the file with exactly that name, else the only file whose
    name starts with its youtube id. ``--splits`` is one CSV or a folder of CSVs (default:
    the CSVs in ``src``). Labels are the sorted unique label names.
    """
    source = splits or src
    csv_files = sorted(source.glob("*.csv")) if source.is_dir() else [source]
    if not csv_files:
        fail(f"no Kinetics CSV annotations in {source}; pass a CSV file or a folder of them with --splits")

    rows = []
    for csv_file in csv_files:
        if not csv_file.is_file():
            fail(f"annotation file {csv_file} not found; check --splits")
        with open(csv_file, newline="", encoding="utf-8-sig") as f:  # spreadsheets save a byte order mark
            reader = csv.DictReader(f)
            missing = [c for c in KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                fail(f"{csv_file} line 1: header lacks {missing}; expected {','.join(KINETICS_COLUMNS)}")
            for row in reader:
                where = f"{csv_file.name} line {reader.line_num}"
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except (TypeError, ValueError):
                    fail(f"{csv_file} line {reader.line_num}: time_start/time_end must be numbers, got "
                          f"{row['time_start']!r}, {row['time_end']!r}")
                split = KINETICS_SPLITS.get((row["split"] or "").strip())
                if split is None or not row["label"] or not row["youtube_id"]:
                    fail(f"{csv_file} line {reader.line_num}: needs a label, a youtube_id and a split in "
                          f"{sorted(KINETICS_SPLITS)}, got {row}")
                rows.append((row["label"].strip(), row["youtube_id"].strip(), start, end, split, where))

    # Scanned after the CSVs are read, so a wrong --splits fails before a long walk of --src.
    by_id: Dict[str, List[Path]] = {}
    for path in video_files(src):
        match = KINETICS_NAME.match(path.stem)
        by_id.setdefault(match["id"] if match else path.stem, []).append(path)
    classes = sorted({label for label, *_ in rows})
    items: Dict[Path, Item] = {}
    for label, youtube_id, start, end, split, where in rows:
        candidates = by_id.get(youtube_id, [])
        exact = [p for p in candidates if p.stem == f"{youtube_id}_{start:06d}_{end:06d}"]
        found = exact or (candidates if len(candidates) == 1 else [])
        # A clip that was never downloaded (Kinetics loses ~5-10% to deleted YouTube
        # videos) becomes an item with a non-existent path: it is reported, not fatal.
        path = found[0] if found else src / f"{youtube_id}_{start:06d}_{end:06d}.mp4"
        add(items, path, label, split, where)
    index_names = [s for s in ("train", "val", "test") if any(r[4] == s for r in rows)]
    return Dataset(classes, list(items.values()), index_names)
