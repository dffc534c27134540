"""Keyword names of the public API that changed: still accepted for one release, with a warning.

    @renamed(index="data", frames="config:clip.frames")
    def make_eval_iterator(data, ..., config=None): ...

``old="new"`` passes the value on as ``new``; ``old="config:clip.frames"`` puts it at that
key path of the nested ``config`` dict (``config`` given as a dict, or none). Each use
raises a ``DeprecationWarning`` naming the new spelling with the caller's value. The
wrapped function keeps its signature (``inspect.signature`` follows ``__wrapped__``).
"""
from __future__ import annotations

import copy
import functools
import warnings
from typing import Any, Callable, Dict, Optional

RELEASE = "the next release"


def _nested(path: str, value: Any) -> dict:
    """``"clip.augment.size", v`` → ``{"clip": {"augment": {"size": v}}}``."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def _merge(into: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        into = into.setdefault(key, {})
    into[last] = value


def renamed(transforms: Optional[Dict[str, Callable[[Any], Any]]] = None, **renames: str):
    """A decorator accepting the keyword names ``renames`` maps from (old → new), with a warning.

    ``transforms`` maps an old name to a function of its value giving the new value
    (``stride=2`` → ``speeds=[2]``).
    """
    transforms = transforms or {}

    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                value = transforms.get(old, lambda v: v)(kwargs.pop(old))
                if ":" in new:
                    target, path = new.split(":", 1)
                    config = kwargs.get(target)
                    if config is not None and not isinstance(config, dict):
                        raise TypeError(f"{fn.__name__}() got both {target}= (not a dict) and the old {old}=; "
                                        f"give the value in {target} ({path})")
                    config = copy.deepcopy(config) if config is not None else {}
                    _merge(config, path, value)
                    kwargs[target] = config
                    spelled = f"{target}={_nested(path, value)!r}"
                else:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {new}= and its old name {old}=; give {new}= only")
                    kwargs[new] = value
                    spelled = f"{new}=..."
                warnings.warn(f"{fn.__name__}({old}=...) is deprecated and will be removed in {RELEASE}: pass "
                              f"{spelled}", DeprecationWarning, stacklevel=2)
            return fn(*args, **kwargs)

        return call

    return wrap


def renamed_value(function: str, keyword: str, value: Any, old: Any, new: Any) -> Any:
    """``new`` for the old spelling ``old`` of ``keyword``'s value (with a warning), else ``value``."""
    if isinstance(value, str) and value == old:
        warnings.warn(f"{function}({keyword}={old!r}) is deprecated and will be removed in {RELEASE}: pass "
                      f"{keyword}={new!r}", DeprecationWarning, stacklevel=3)
        return new
    return value
