"""The configurations shipped with motionssl (installed as ``motionssl.configs``).

``demo/`` — the CPU demo of each method; ``small/`` — a tiny network and 8-frame 32×32
clips (a CPU, a quick check of an idea); the papers' settings at the top
(``moquad_r3d18.yaml`` …); ``ablations/`` — small files that stack on a paper config.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import List


def root() -> str:
    """The folder holding the shipped configurations (the checkout's ``configs/`` in an editable install)."""
    return str(resources.files(__name__))


def shipped() -> List[str]:
    """Every shipped configuration, as a name relative to :func:`root` (``"demo/moquad.yaml"``)."""
    base = root()
    return sorted(os.path.relpath(os.path.join(folder, name), base).replace(os.sep, "/")
                  for folder, _, names in os.walk(base) for name in names if name.endswith(".yaml"))


def resolve(path: str) -> str:
    """``path`` if it exists; else the shipped configuration it names (``configs/moquad_r3d18.yaml``,
    ``moquad_r3d18.yaml`` or ``moquad_r3d18``), so the commands of the README work from any folder."""
    if os.path.exists(path):
        return path
    name = path.replace(os.sep, "/")
    name = name[len("configs/"):] if name.startswith("configs/") else name
    name = name if name.endswith(".yaml") else name + ".yaml"
    candidate = os.path.join(root(), name)
    return candidate if os.path.exists(candidate) else path
