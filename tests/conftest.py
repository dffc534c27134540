"""Shared pytest configuration: which tests run where.

* **GPU tests** (``@pytest.mark.gpu``) run only when asked for with ``-m`` (``pytest -m gpu``,
  ``-m "gpu and not slow"``). A plain ``pytest`` — the CPU suite — deselects them, also on a
  machine with a GPU: a GPU test initialises CUDA in the test process, after which DALI may
  no longer fork its decoding workers and the CPU tests would run differently.
* Asked for on a machine without an NVIDIA GPU, they are skipped. On a machine whose
  NVIDIA GPU CUDA cannot use (a driver older than the CUDA build needs), asking for them is
  an error that says why: a GPU check must not pass with nothing run.
* Whether CUDA works is asked in a child process: ``torch.cuda.is_available()``
  initialises the CUDA driver in the process that calls it.
* ``MOTIONSSL_TEST_LOG=FILE`` appends one JSON line per finished test, with what it measured
  (``record_property``): the GPU acceptance check reads it, so a run cut short by its time
  limit keeps every result so far.
"""
import functools
import json
import os
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


def gpu_tests_requested(config) -> bool:
    """Whether the ``-m`` expression asks for GPU tests: true with the ``gpu`` mark, false without it."""
    text = config.option.markexpr
    if not text:
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(text)

        def with_marks(*marks):
            return expression.evaluate(lambda name, **kwargs: name in marks)

        return with_marks("gpu") and not with_marks()
    except Exception:  # pytest's expression API moved: read the text
        return "gpu" in text and "not gpu" not in text


def pytest_collection_finish(session):
    """Importing the test modules must not initialise CUDA (a GPU host would then run CPU tests differently)."""
    import torch
    from nvidia.dali import backend

    if torch.cuda.is_initialized() or backend.IsDriverInitialized():
        raise pytest.UsageError("collecting the tests initialised CUDA in the test process; ask about CUDA in a "
                                "child process (tests/conftest.py: cuda_available) or inside a gpu-marked test")


@pytest.hookimpl(trylast=True)  # after -m has deselected what it deselects
def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    if not gpu_tests_requested(config):
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if "gpu" not in item.keywords]
        return
    if cuda_available():
        return
    from motionssl.models.runtime import cuda_problem

    problem = cuda_problem(available=False)
    if problem:
        raise pytest.UsageError(f"GPU tests asked for, but {problem}")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
    for item in gpu:
        item.add_marker(skip_gpu)


def pytest_runtest_logreport(report):
    path = os.environ.get("MOTIONSSL_TEST_LOG")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    with open(path, "a") as f:
        f.write(json.dumps({"test": report.nodeid, "when": report.when, "outcome": report.outcome,
                            "seconds": round(report.duration, 2),
                            "message": str(report.longrepr)[-1500:] if report.failed else "",
                            "measured": dict(report.user_properties)}, default=str) + "\n")
