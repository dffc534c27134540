"""How the toolkit writes files and folders without touching anything it did not write.

Every command that writes a dataset, a list, a report or a run folder follows three rules:

* **Write beside, then rename.** A file is written to a temporary name in its folder and
  renamed over its final name (:func:`write_text`); a dataset folder is written into a
  temporary folder beside it and renamed into place (:func:`temp_folder`,
  :func:`publish_folder`). A reader never sees half a file, and an interrupted command
  leaves no half result under a real name.
* **Delete only what is ours.** A temporary folder carries a marker file that names the
  host and process that made it. Its maker removes it when it fails or is interrupted;
  a later command removes it only when that process is gone. A folder that already
  exists and holds anything else is never emptied, replaced or mixed into: the command
  stops and says so.
* **One writer per folder.** :class:`FolderLock` takes an exclusive lock on a folder
  (``flock`` on a file inside it). The kernel releases it when its holder exits, however
  it exits, so a lock never outlives its process; a second writer fails at once, in one
  line that names the holder.
"""
from __future__ import annotations

import fcntl
import glob
import os
import secrets
import shutil
import socket
import sys
import time
from typing import List, Optional

from .errors import MotionSSLError

PARTIAL_MARKER = ".motionssl-partial"  # inside a temporary folder: "<host> <pid>" of its maker
LOCK_FILE = ".motionssl.lock"


class FolderError(MotionSSLError, RuntimeError):
    """A folder the command may not write into, or one another process is writing; the message says which."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _maker(folder: str):
    """``(host, pid)`` from a temporary folder's marker, or ``None`` if it has none (it is not ours)."""
    try:
        with open(os.path.join(folder, PARTIAL_MARKER)) as f:
            host, pid = f.read().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _stale(folder: str) -> bool:
    """A temporary folder of ours whose maker, a process of this host, is gone."""
    maker = _maker(folder)
    return maker is not None and maker[0] == socket.gethostname() and not pid_alive(maker[1])


def temp_folder(root: str) -> str:
    """A new, empty temporary folder beside ``root`` (``<root>.tmp…``), marked as this process's.

    Temporary folders of earlier runs whose process died (a kill, a power cut) are removed
    first; any other folder of that name is left alone. Its mode follows the umask, as the
    folder renamed from it must. A ``root`` that is a mount point, or whose parent folder
    cannot be written, is a :class:`FolderError` that says what to do.
    """
    root = os.path.abspath(root)
    parent = os.path.dirname(root)
    if os.path.ismount(root):
        what = ("choose a folder inside it" if os.access(root, os.W_OK) else
                "nor can it be written: choose a folder on a file system you can write")
        raise FolderError(f"{root} is a mount point, which cannot take the temporary folder that is written beside it "
                          f"and renamed into place; {what}")
    try:
        os.makedirs(parent, exist_ok=True)
        for old in glob.glob(glob.escape(root) + ".tmp*"):
            if os.path.isdir(old) and _stale(old):
                shutil.rmtree(old, ignore_errors=True)
        tmp = _new_folder(os.path.join(parent, os.path.basename(root) + ".tmp"))
    except OSError as exc:
        blocker = _existing(parent)
        reason = f"{blocker} is a file" if not os.path.isdir(blocker) else exc.strerror or str(exc)
        raise FolderError(f"cannot write {root}: {reason}; it is written into a temporary folder beside it and "
                          "renamed into place, so choose a folder whose parent folder you can write") from None
    with open(os.path.join(tmp, PARTIAL_MARKER), "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return tmp


def _new_folder(prefix: str) -> str:
    """A new folder ``<prefix><random>``. Made with ``os.mkdir``, so its mode is 0777 less the umask, as of any
    folder a user makes; ``tempfile.mkdtemp`` makes 0700, which would keep a dataset from every other user."""
    while True:
        path = prefix + secrets.token_hex(4)
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def remove_temp_folder(tmp: str) -> None:
    """Remove a temporary folder made by :func:`temp_folder` (and nothing else)."""
    if os.path.isdir(tmp) and _maker(tmp) is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def entries(folder: str) -> List[str]:
    """The names in ``folder`` (none when it does not exist)."""
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise FolderError(f"cannot write {folder}: {_existing(folder)} is a file, not a folder; choose another output "
                          "folder") from None


def _existing(path: str) -> str:
    """``path`` itself or its nearest ancestor that exists."""
    while path and not os.path.lexists(path):
        path = os.path.dirname(path)
    return path or "."


def listing(names: List[str]) -> str:
    """The first three of ``names`` for a message, and how many more there are."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def refuse_foreign(folder: str, what: str) -> None:
    """A :class:`FolderError` if ``folder`` exists and is not empty: ``what`` would be mixed into it."""
    found = entries(folder)
    if found:
        raise FolderError(f"{folder} already holds files ({listing(found)}) that are not {what}; nothing was written "
                          "or deleted there — choose a new or empty folder")


def publish_folder(tmp: str, root: str, what: str) -> bool:
    """Rename the finished temporary folder ``tmp`` to ``root``.

    ``root`` may not exist or be an empty folder. Returns False, leaving ``tmp`` in place,
    when ``root`` appeared meanwhile with content (another process finished first, or the
    user put files there); the caller decides between them.
    """
    os.remove(os.path.join(tmp, PARTIAL_MARKER))
    try:
        os.replace(tmp, root)  # onto a missing or empty folder: atomic
        return True
    except OSError as exc:
        with open(os.path.join(tmp, PARTIAL_MARKER), "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}\n")
        if entries(root):
            return False
        raise FolderError(f"cannot rename the finished temporary folder to {root} ({exc.strerror or exc}); if it is a "
                          "mount point, choose a folder inside it") from None


def write_text(path: str, text: str) -> None:
    """Write ``path`` atomically: a temporary file beside it, flushed, then renamed; no temporary left on failure."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: say which file could not be written
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class FolderLock:
    """An exclusive lock on ``folder`` for one writer (a training run, a dataset preparation).

    ``with FolderLock(folder, "train.py"):`` — the folder is created if needed and the lock
    file ``.motionssl.lock`` inside it is ``flock``-ed. A second holder gets a
    :class:`FolderError` naming the first one (host, process id, command, start time). The
    kernel drops the lock when the holding process exits in any way, so a lock left by a
    killed process is stale and the next run takes it.
    """

    def __init__(self, folder: str, command: Optional[str] = None):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.command = command or " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        self._file = None

    def acquire(self) -> "FolderLock":
        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            self._refuse()
        except OSError as exc:  # a filesystem without locks: go on, but say so once
            import logging

            logging.getLogger(__name__).warning("could not lock %s (%s); make sure no other run writes there",
                                                self.folder, exc)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} ({self.command}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        self._file = handle
        return self

    def refuse_if_held(self) -> None:
        """A :class:`FolderError` naming the holder if another process holds the lock now; creates nothing.
        For a check before the work that precedes :meth:`acquire` (which checks again)."""
        try:
            handle = open(self.path)
        except OSError:  # no lock file, or none that can be read: nobody to name
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                self._refuse()
            except OSError:
                pass

    def _refuse(self) -> None:
        try:
            with open(self.path) as f:
                holder = f.read().strip()
        except OSError:
            holder = ""
        raise FolderError(f"{self.folder} is in use by {holder or 'another process'}; wait for it to finish or "
                          "choose another folder") from None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
