"""The fused kernels stay vectorised: a guard without a clock.

The per-pixel loops of :mod:`motionssl.pipelines.ops._kernels` (resample, jitter with its
clamps, blend, normalise) are written so that LLVM turns them into SIMD code; a change that
loses that (an allocation per row, a float64 literal in a pixel loop, a pixel-by-pixel
branch) makes the kernels several times slower but no output differs. This test compiles
the kernels afresh in a subprocess (an empty Numba cache: machine code loaded from the
cache cannot be inspected) and counts the vector float arithmetic in the LLVM IR of every
DALI entry point — operations on ``<N x float>`` values, whatever N the target picks.
"""
import json
import os
import platform
import re
import subprocess
import sys

import pytest

from motionssl.pipelines.ops import fused

pytestmark = [pytest.mark.skipif(fused.available() is not None, reason=f"fused operators unusable: "
                                                                       f"{fused.available()}"),
              pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                 reason="vector-operation floors are set for x86-64 code generation")]

# Vector float operations of each entry point's IR on the development machine (x86-64 with
# AVX-512, Numba 0.68, LLVM 22): 153 (rgb, residual), 198 (rad, be); the kernels before they
# were written to vectorise had 0. A floor of about two thirds leaves room for other targets
# and LLVM versions, and still fails when one pixel loop (the jitter alone is ~70) goes scalar.
FLOOR = 100
ENTRY_POINTS = ("run_rgb", "run_rad", "run_be", "run_residual")

PROBE = r"""
import importlib, json, re, sys
kernels = importlib.import_module(sys.argv[1])
vector = re.compile(r"^\s*%\S+ = (?:fadd|fsub|fmul|fdiv|fneg|fcmp \w+|call [^@]*@llvm\.\w+\.v\d+f32)\b[^\n]*<\d+ x float>",
                    re.M)
print(json.dumps({name: len(vector.findall(getattr(kernels, name).inspect_llvm()))
                  for name in sys.argv[2:] if hasattr(kernels, name)}))
"""


def vector_ops(module: str, cache_dir, path=None):
    """``{entry point: vector float operations in its LLVM IR}`` of the kernel module ``module``, compiled afresh.

    ``path``: a folder put first on ``sys.path`` (to probe a copy of the module kept elsewhere).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=os.pathsep.join(
        p for p in (path, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", PROBE, module, *ENTRY_POINTS], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_fused_kernel_compiles_to_vector_code(tmp_path):
    counts = vector_ops("motionssl.pipelines.ops._kernels", tmp_path)
    assert set(counts) == set(ENTRY_POINTS)
    scalar = {name: n for name, n in counts.items() if n < FLOOR}
    assert not scalar, (f"fused kernels no longer vectorise: {scalar} vector float operations (floor {FLOOR}; all: "
                        f"{counts}) — see pipelines/ops/_kernels.py's docstring for what keeps them vectorised")


def test_the_vector_count_reads_the_kernels_ir():
    """The probe's pattern matches vector arithmetic and nothing scalar (so a floor can fail)."""
    pattern = re.search(r'vector = re\.compile\(r"(.*?)",\s*re\.M\)', PROBE, re.S).group(1)
    vector = re.compile(pattern, re.M)
    assert vector.findall("  %.12 = fmul fast <8 x float> %a, %b\n  %.13 = call fast <8 x float> "
                          "@llvm.minnum.v8f32(<8 x float> %x, <8 x float> %y)\n")
    assert not vector.findall("  %.12 = fmul fast float %a, %b\n  %.3 = load <8 x float>, ptr %p\n"
                              "  %.4 = call float @llvm.minnum.f32(float %x, float %y)\n")


def test_residual_clips_resize_each_shared_frame_once():
    """MCPNet's residual clip (16 frames, partners t = 4 steps later) resizes and jitters 20 frames, not 32."""
    import numpy as np

    from motionssl.pipelines.ops import _kernels

    speed, frames, gap = 2, 16, 4
    clip = np.arange(frames, dtype=np.int32) * speed
    idx = np.concatenate([clip, clip + gap * speed])
    order, which = _kernels._distinct(idx, 64)
    assert len(order) == frames + gap
    assert np.array_equal(order[which], idx)
    clamped = np.minimum(idx, 20)  # a short video: indices clamp to its last frame
    order, which = _kernels._distinct(clamped, 64)
    assert len(order) == len(set(clamped.tolist())) and np.array_equal(order[which], clamped)


@pytest.mark.parametrize("roi, out", [((3.0, 2.0, 13.0, 30.0), (40, 24)),   # enlarged: rows shared by output rows
                                      ((0.0, 0.0, 48.0, 32.0), (12, 16)),   # reduced: every output row new
                                      ((30.0, 0.0, 48.0, 32.0), (25, 8))])  # down to the last row (both taps clamp)
def test_each_input_row_is_resampled_once_per_frame_and_never_copied(roi, out, monkeypatch):
    """The x-pass cache: one ``_horizontal`` per input row a frame's output rows read, into the slot it stays in.

    ``_resized_row`` runs as plain Python around the compiled passes: every x-pass is recorded
    with the slot it wrote, and after each output row both slots must hold the rows that were
    resampled into them (a row moved between slots would be a copy of 3·W floats per row).
    """
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    window = frame[None]
    oh, ow = out
    ya, yb, wy, xa, xb, wx = k._geometry(window, np.array(roi, np.float32), oh, ow)
    cache, ids = np.empty((2, 3, ow), np.float32), np.full(2, -1, np.int64)
    passes, holds = [], {}
    real = k._horizontal

    def counted(src, xa_, xb_, wx_, dst):
        slot = [s for s in (0, 1) if dst.ctypes.data == cache[s].ctypes.data]
        assert len(slot) == 1, "an x-pass wrote outside the cache's two slots"
        row = [r for r in range(frame.shape[0]) if src.ctypes.data == frame[r].ctypes.data][0]
        passes.append(row)
        holds[slot[0]] = row
        real(src, xa_, xb_, wx_, dst)

    rows, expected = np.empty((oh, 3, ow), np.float32), np.empty((oh, 3, ow), np.float32)
    plain_ids = np.full(2, -1, np.int64)
    plain_cache = np.empty((2, 3, ow), np.float32)
    with monkeypatch.context() as patched:
        patched.setattr(k, "_horizontal", counted)  # the plain-Python _resized_row looks it up at call time
        for oy in range(oh):
            k._resized_row.py_func(frame, oy, ya, yb, wy, xa, xb, wx, cache, ids, rows[oy])
            assert all(holds.get(s) == ids[s] for s in (0, 1) if ids[s] >= 0), f"row {oy}: slots {ids}, wrote {holds}"
    for oy in range(oh):
        k._resized_row(frame, oy, ya, yb, wy, xa, xb, wx, plain_cache, plain_ids, expected[oy])
    assert sorted(passes) == sorted(set(ya.tolist()) | set(yb.tolist()))
    assert np.array_equal(rows, expected)
