"""Shared pytest configuration.

GPU tests (``-m gpu``) are skipped cleanly when no CUDA GPU is present. Whether one is
present is asked in a child process: ``torch.cuda.is_available()`` initialises the CUDA
driver in the process that calls it, after which DALI may no longer fork its decoding
workers — the CPU tests must behave the same on a machine with a GPU as without one.
"""
import functools
import subprocess
import sys

import pytest


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def pytest_collection_finish(session):
    """Importing the test modules must not initialise CUDA (a GPU host would then run CPU tests differently)."""
    import torch
    from nvidia.dali import backend

    if torch.cuda.is_initialized() or backend.IsDriverInitialized():
        raise pytest.UsageError("collecting the tests initialised CUDA in the test process; ask about CUDA in a "
                                "child process (tests/conftest.py: cuda_available) or inside a gpu-marked test")


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items) or cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
