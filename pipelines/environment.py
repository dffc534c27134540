"""The environment variables of the toolkit, each read here and nowhere else.

* ``MOTIONSSL_CACHE`` — the cache folder (demo data, index caches); unset or empty:
  ``~/.cache/motionssl``.
* ``MOTIONSSL_DEBUG`` — a command that stops on an error raises it with its traceback instead
  of printing one line. Off when unset, empty, ``0``, ``false``, ``no`` or ``off`` (any case).
"""
from __future__ import annotations

import os

OFF = frozenset({"", "0", "false", "no", "off"})


def cache_dir() -> str:
    """The toolkit's cache folder: ``$MOTIONSSL_CACHE``, else (unset or empty) ``~/.cache/motionssl``."""
    value = os.environ.get("MOTIONSSL_CACHE", "").strip()
    return os.path.expanduser(value) if value else os.path.join(os.path.expanduser("~"), ".cache", "motionssl")


def debug() -> bool:
    """Whether ``MOTIONSSL_DEBUG`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("MOTIONSSL_DEBUG", "").strip().lower() not in OFF
