"""The index's cache on disk: each video's frame count and header, so a second load reads no video.

One file per list or folder (:func:`cache_path`) in the toolkit's cache folder
(``$MOTIONSSL_CACHE``, else ``~/.cache/motionssl``), never in the dataset folder, which may
be read-only or shared. An entry is keyed by the video's absolute path and holds its size
and modification time, so an edited video is probed again; a file of another format
(another first line) is ignored and written anew.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Dict, Optional

from .environment import cache_dir
from .video_io import Media

log = logging.getLogger(__name__)

CACHE_VERSION = "# motionssl index cache 4: path size mtime frames height width codec pix_fmt rotation timing"
# timing: "first:step:frames" of evenly spaced frame timestamps (Media.timing), "-" when uneven or not read
# Paths are the file system's bytes: a name that is not UTF-8 (b"caf\xe9.webm" from a Latin-1 system) is a
# str with surrogate escapes in Python, which plain UTF-8 cannot write; surrogateescape writes its bytes back.
CACHE_ENCODING = "utf-8"


def cache_path(anchor: str) -> str:
    """The cache file of a list or folder: ``<cache_dir>/index/<hash of its absolute path>.tsv``."""
    digest = hashlib.sha1(os.fsencode(os.path.abspath(anchor))).hexdigest()[:16]
    return os.path.join(cache_dir(), "index", f"{os.path.basename(os.path.normpath(anchor))[:40]}-{digest}.tsv")


# A cache entry: (size, mtime, frames or -1, Media or None), keyed by the video's absolute path.
def read_cache(cache: str) -> Dict[str, tuple]:
    entries: Dict[str, tuple] = {}
    try:
        with open(cache, encoding=CACHE_ENCODING, errors="surrogateescape") as f:
            lines = f.read().split("\n")  # only "\n" ends a line: a file name may hold other line breaks
    except OSError:
        return entries
    if not lines or lines[0] != CACHE_VERSION:
        return entries  # another format: probe again
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) != 10:
            continue
        try:
            size, mtime, frames, height, width = (int(v) for v in parts[1:6])
            rotation = int(parts[8])
            timing = None if parts[9] == "-" else tuple(int(v) for v in parts[9].split(":"))
        except ValueError:
            continue
        if timing is not None and (len(timing) != 3 or timing[1] <= 0 or timing[2] <= 0):
            timing = None
        media = Media(height, width, parts[6], parts[7], rotation, timing) if height > 0 else None
        entries[parts[0]] = (size, mtime, frames, media)
    return entries


def lookup(entries: Dict[str, tuple], path: str):
    """``(frames or None, Media or None)`` cached for ``path`` if the file is unchanged since."""
    hit = entries.get(os.path.abspath(path))
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not hit or hit[0] != st.st_size or hit[1] != int(st.st_mtime):
        return None, None
    return (hit[2] if hit[2] > 0 else None), hit[3]


def remember(entries: Dict[str, tuple], path: str, frames: Optional[int] = None, media: Optional[Media] = None):
    st = os.stat(path)
    key = os.path.abspath(path)
    old = entries.get(key)
    if old and old[:2] == (st.st_size, int(st.st_mtime)):
        frames = frames if frames is not None else (old[2] if old[2] > 0 else None)
        media = media or old[3]
    entries[key] = (st.st_size, int(st.st_mtime), frames if frames is not None else -1, media)


def save_cache(cache: str, entries: Dict[str, tuple]) -> None:
    """Write the cache atomically; a cache that cannot be written is a slowdown, not an error."""
    tmp = f"{cache}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        with open(tmp, "w", encoding=CACHE_ENCODING, errors="surrogateescape") as f:
            f.write(CACHE_VERSION + "\n")
            for p, (size, mtime, frames, media) in sorted(entries.items()):
                m = media or Media(-1, -1, "", "")
                timing = ":".join(map(str, m.timing)) if m.timing else "-"
                f.write(f"{p}\t{size}\t{mtime}\t{frames}\t{m.height}\t{m.width}\t{m.codec}\t{m.pix_fmt}\t"
                        f"{m.rotation}\t{timing}\n")
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("could not write the index cache %s: %s", cache, exc)
        if os.path.exists(tmp):
            os.remove(tmp)
