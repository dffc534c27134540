"""Worker processes of the toolkit: started deaf to the terminal's signals, gone when their parent is.

Decoding workers (DALI's parallel external source), the demo's and the benchmarks' writers
and ``prepare``'s converters all run in child processes. Two rules keep a Ctrl-C or a
``kill`` from leaving tracebacks or orphans behind:

* children are *started* with SIGINT and SIGTERM ignored (:func:`signals_ignored`) — ignored
  dispositions survive ``fork`` and ``exec`` alike, so a child cannot be interrupted even
  while it is still importing — and the parent, which received the signal too, stops them
  itself, once, with one line;
* a child whose parent died (``kill -9``) exits by itself (:func:`watch_parent`).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time


@contextlib.contextmanager
def signals_ignored(signals=(signal.SIGINT, signal.SIGTERM)):
    """``signals`` (SIGINT and SIGTERM) ignored inside the block (main thread only).

    Worker processes started inside inherit the ignored dispositions — also when spawned,
    since ignored signals survive ``exec`` — so a terminal's Ctrl-C or a scheduler's SIGTERM
    to the whole process group reaches the training process alone, which then stops its
    workers itself after saving. (DALI's workers would otherwise die at once and the run
    would end in a pipeline error instead of a checkpoint.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_watched = set()


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """In a decoding worker: exit as soon as process ``parent`` is gone (once per process).

    DALI's worker processes have no parent-death detection: after a ``kill -9`` of the
    training process they wait for work for ever, holding their memory. A daemon thread
    checks every ``interval`` seconds whether the worker was re-parented (its parent died)
    and ends the process.
    """
    if parent in _watched or os.getppid() != parent:
        return
    _watched.add(parent)

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def pool(workers: int, start_method: str = "fork"):
    """A ``multiprocessing`` pool of ``workers`` processes that ignore Ctrl-C (SIGINT).

    Use it with ``try: ... finally: p.terminate(); p.join()``, so an interruption of the
    parent stops every worker at once (``terminate`` sends SIGTERM, which they obey).
    """
    with signals_ignored((signal.SIGINT,)):
        return multiprocessing.get_context(start_method).Pool(workers)
