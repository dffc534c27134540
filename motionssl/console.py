"""The commands' console scripts (``motionssl-train``, ``motionssl-eval``, ``motionssl-prepare``; ``setup.cfg``).

A command's ``main`` returns what it made, for callers in Python; a console script hands
what its function returns to ``sys.exit``, which prints anything but ``None`` and exits
with status 1. So each script is :func:`console_script` of its command's module.
"""
from __future__ import annotations

import importlib
from typing import Callable


def console_script(module: str) -> Callable[[], None]:
    """The console script of the command ``module``: its ``main()``, looked up when the script runs (a ``main``
    replaced since is the one run), with the return value dropped."""
    def cli() -> None:
        importlib.import_module(module).main()

    cli.__doc__ = f"The console script of ``{module}``: its ``main()``, whose return value must not reach sys.exit."
    return cli
