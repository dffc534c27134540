"""Shared pytest configuration: which tests run where.

* **GPU tests** (``@pytest.mark.gpu``) run only when asked for with ``-m`` (``pytest -m gpu``,
  ``-m "gpu and not slow"``). A plain ``pytest`` — the CPU suite — deselects them, also on a
  machine with a GPU: a GPU test initialises CUDA in the test process, after which DALI may
  no longer fork its decoding workers and the CPU tests would run differently.
* Asked for on a machine without an NVIDIA GPU, they are skipped. On a machine whose
  NVIDIA GPU CUDA cannot use (a driver older than the CUDA build needs; a loaded kernel
  driver while ``nvidia-smi`` fails or is missing), asking for them is an error that says
  why: a GPU check must not pass with nothing run.
* Whether CUDA works is asked in a child process: ``torch.cuda.is_available()``
  initialises the CUDA driver in the process that calls it.
* Outside ``gpu``-marked tests any question to CUDA (``torch.cuda.is_available``,
  ``device_count``, ``mem_get_info``, a tensor moved to ``cuda``, DALI's device queries…)
  fails the test (``cuda_guard``): on a GPU host it would initialise CUDA in the test process,
  or train a CPU test on the GPU.
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
    from benchmarks.gpu_check import gpu_problem

    problem = gpu_problem(available=False)
    if problem:
        raise pytest.UsageError(f"GPU tests asked for, but {problem}")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
    for item in gpu:
        item.add_marker(skip_gpu)


# What a CPU test must not call: each initialises CUDA, or asks the driver (``_lazy_init`` is what a tensor
# moved to a CUDA device calls first).
CUDA_QUERIES = {"torch.cuda": ("is_available", "device_count", "init", "_lazy_init", "mem_get_info", "current_device",
                               "set_device", "get_device_name", "get_device_properties", "get_device_capability",
                               "synchronize", "is_bf16_supported", "utilization", "list_gpu_processes"),
                "nvidia.dali.backend": ("GetCUDADeviceCount", "GetCUDACurrentDevice", "SetCUDACurrentDevice")}
# torch's own probes that every CPU run makes and no caller can avoid (file, function): let through.
TORCH_PROBES = {(os.path.join("torch", "optim", "optimizer.py"), "_accelerator_graph_capture_health_check")}


def torch_probe(frame) -> bool:
    """Whether the call comes (within a few frames) from one of ``TORCH_PROBES``."""
    for _ in range(4):
        if frame is None:
            return False
        if any(frame.f_code.co_filename.endswith(f) and frame.f_code.co_name == n for f, n in TORCH_PROBES):
            return True
        frame = frame.f_back
    return False


@pytest.fixture(autouse=True)
def cuda_guard(request):
    """Outside ``gpu``-marked tests, a question to CUDA fails the test (the calls made, for a test of the guard).

    The failure is ``pytest.fail`` (no ``except Exception`` swallows it), raised where the call is made and, for
    a call in another thread, at the end of the test."""
    if request.node.get_closest_marker("gpu"):
        yield []
        return
    import importlib

    calls = []

    def refuse(name, original):
        def refused(*args, **kwargs):
            if torch_probe(sys._getframe(1)):
                return original(*args, **kwargs)
            calls.append(name)
            pytest.fail(f"{name}() in a CPU test: it initialises CUDA on a GPU host. Pass device cpu (or device=cpu), "
                        "or mark the test gpu")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        for module_name, names in CUDA_QUERIES.items():
            module = importlib.import_module(module_name)
            for name in names:
                patch.setattr(module, name, refuse(f"{module_name}.{name}", getattr(module, name)))
        yield calls
    if calls:
        pytest.fail(f"a CPU test asked CUDA: {', '.join(sorted(set(calls)))}", pytrace=False)


def pytest_runtest_logreport(report):
    path = os.environ.get("MOTIONSSL_TEST_LOG")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    with open(path, "a") as f:
        f.write(json.dumps({"test": report.nodeid, "when": report.when, "outcome": report.outcome,
                            "seconds": round(report.duration, 2),
                            "message": str(report.longrepr)[-1500:] if report.failed else "",
                            "measured": dict(report.user_properties)}, default=str) + "\n")
