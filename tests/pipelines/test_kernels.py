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
# AVX-512, Numba 0.68, LLVM 22): 879 (rgb), 987 (rad), 1113 (be), 291 (residual), of which
# 512-bit: 452, 476, 532, 141; before the one-pass rows and 512-bit vectors, 153 to 198, and
# the kernels before they were written to vectorise had 0. The floor fails when the pixel
# loops go scalar (the jitter alone is ~70) and leaves room for other targets and LLVM versions.
FLOOR = 100
WIDE_FLOOR = 60  # 512-bit vector operations, where the target has AVX-512 (the kernels ask LLVM for them)
ENTRY_POINTS = ("run_rgb", "run_rad", "run_be", "run_residual")

PROBE = r"""
import importlib, json, re, sys
kernels = importlib.import_module(sys.argv[1])
vector = re.compile(r"^\s*%\S+ = (?:fadd|fsub|fmul|fdiv|fneg|fcmp \w+|call [^@]*@llvm\.\w+\.v\d+f32)\b[^\n]*<\d+ x float>",
                    re.M)
ir = {name: getattr(kernels, name).inspect_llvm() for name in sys.argv[2:] if hasattr(kernels, name)}
print(json.dumps({"vector": {name: len(vector.findall(text)) for name, text in ir.items()},
                  "wide": {name: sum("<16 x float>" in op for op in vector.findall(text)) for name, text in ir.items()},
                  "permute": {name: text.count("@llvm.x86.avx512.vpermi2var.ps.512(") for name, text in ir.items()},
                  "PERMUTE": bool(getattr(kernels, "PERMUTE", False))}))
"""


def probe(module: str, cache_dir, path=None, env=None):
    """What the kernel module ``module``'s entry points compiled to, compiled afresh in a subprocess.

    ``{"vector": {entry point: vector float operations in its LLVM IR}, "wide": {…: of them on
    512-bit vectors}, "permute": {…: calls of the x-pass's permute}, "PERMUTE": the module's flag}``;
    ``path``: a folder put first on ``sys.path`` (to probe a copy of the module kept elsewhere);
    ``env``: more environment (another CPU target for Numba).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=os.pathsep.join(
        p for p in (path, os.environ.get("PYTHONPATH")) if p), **(env or {}))
    done = subprocess.run([sys.executable, "-c", PROBE, module, *ENTRY_POINTS], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def vector_ops(module: str, cache_dir, path=None):
    """``{entry point: vector float operations in its LLVM IR}`` of the kernel module ``module``, compiled afresh."""
    return probe(module, cache_dir, path)["vector"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return probe("motionssl.pipelines.ops._kernels", tmp_path_factory.mktemp("numba-cache"))


def test_every_fused_kernel_compiles_to_vector_code(compiled):
    counts = compiled["vector"]
    assert set(counts) == set(ENTRY_POINTS)
    scalar = {name: n for name, n in counts.items() if n < FLOOR}
    assert not scalar, (f"fused kernels no longer vectorise: {scalar} vector float operations (floor {FLOOR}; all: "
                        f"{counts}) — see pipelines/ops/_kernels.py's docstring for what keeps them vectorised")


def test_with_avx512_the_kernels_use_512_bit_vectors_and_the_permute(compiled):
    """Where the target has AVX-512F the pixel loops are 512 bits wide and the x-pass permutes (a guard, no clock).

    LLVM prefers 256-bit vectors on these CPUs unless a function asks otherwise
    (``_wide_vectors``); losing that costs a quarter of a 224² clip's CPU and no output changes.
    """
    if not compiled["PERMUTE"]:
        pytest.skip("the compile target has no AVX-512F: the kernels use the vector width LLVM prefers, no permute")
    narrow = {name: n for name, n in compiled["wide"].items() if n < WIDE_FLOOR}
    assert not narrow, f"pixel loops no longer 512 bits wide: {narrow} (floor {WIDE_FLOOR}; all {compiled['wide']})"
    assert all(compiled["permute"][name] > 0 for name in ENTRY_POINTS), compiled["permute"]


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
                                      ((0.0, 0.0, 24.0, 32.0), (25, 16)),   # 24 rows for 25: nearly every row new
                                      ((30.0, 0.0, 48.0, 32.0), (25, 8))])  # down to the last row (both taps clamp)
def test_each_input_row_is_resampled_once_per_frame_and_never_copied(roi, out, monkeypatch):
    """The x-pass cache: one ``_horizontal`` per input row a frame's output rows read, into the slot it stays in.

    ``_resized_rows`` runs as plain Python around the compiled passes, in bands of 5 rows as
    the kernels call it (the cache carries over from band to band): every x-pass is recorded
    with the slot it wrote, and every output row must blend the two slots that hold its
    input rows' x-passes (a row moved between slots would be a copy of 3·W floats per row).
    """
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    oh, ow = out
    ya, yb, wy, xt, wx, blocks, lo, buf, rows_first = k._geometry(frame[None], np.array(roi, np.float32), oh, ow)
    assert not rows_first, "x first: the crop has no more rows read than output rows"
    pitch = 3 * frame.shape[1]
    passes, holds, blended = [], {}, []
    real_h, real_v = k._horizontal, k._vertical

    def counted(flat, start, buf_, xt_, wx_, blocks_, cache_, s):
        row, rest = divmod(int(start), pitch)
        assert rest == 3 * lo
        passes.append(row)
        holds[s] = row
        real_h(flat, start, buf_, xt_, wx_, blocks_, cache_, s)

    def checked(cache_, sa, sb, w, rows_, d):
        oy = len(blended)
        assert (holds.get(sa), holds.get(sb)) == (ya[oy], yb[oy]), f"row {oy}: slots {sa, sb} hold {holds}"
        blended.append(oy)
        real_v(cache_, sa, sb, w, rows_, d)

    rows, expected = np.empty((oh, 3, ow), np.float32), np.empty((oh, 3, ow), np.float32)
    cache, ids = np.empty((2, 3, ow), np.float32), np.full(2, -1, np.int64)
    geometry = (ya, yb, wy, xt, wx, blocks, lo, buf, rows_first)
    with monkeypatch.context() as patched:
        patched.setattr(k, "_horizontal", counted)  # the plain-Python _resized_rows looks them up at call time
        patched.setattr(k, "_vertical", checked)
        for oy0 in range(0, oh, 5):
            k._resized_rows.py_func(frame, oy0, *geometry, cache, ids, rows[oy0:oy0 + 5])
    k._resized_rows(frame, 0, *geometry, np.empty((2, 3, ow), np.float32), np.full(2, -1, np.int64), expected)
    assert sorted(passes) == sorted(set(ya.tolist()) | set(yb.tolist()))
    assert blended == list(range(oh))
    assert np.array_equal(rows, expected)


@pytest.mark.parametrize("roi, out", [((0.0, 0.0, 48.0, 32.0), (12, 16)),    # reduced: each output row reads 2 rows
                                      ((2.0, 30.0, 47.0, 3.0), (30, 20)),     # 45 rows read for 30, flipped along x
                                      ((10.0, 5.0, 48.0, 32.0), (37, 40))])   # 38 rows for 37 rows, enlarged along x
def test_a_crop_taller_than_the_output_blends_rows_first_and_matches_x_first(roi, out, monkeypatch):
    """Rows first when more input rows are read than there are output rows: one blend and one x-pass per output row.

    The same bilinear sum as along x first: the two orders may differ by float32 rounding,
    which moves a value on a rounding tie by one level, never more.
    """
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    oh, ow = out
    ya, yb, wy, xt, wx, blocks, lo, buf, rows_first = k._geometry(frame[None], np.array(roi, np.float32), oh, ow)
    assert rows_first and len(set(ya.tolist()) | set(yb.tolist())) > oh
    columns = max(xt[0].max(), xt[1].max()) // (1 if blocks else 3) + 1  # offsets 3a, 3b without blocks
    assert buf.size == 3 * (columns + k.TABLE) and min(xt[0].min(), xt[1].min()) == 0
    cache, ids = np.empty((2, 3, ow), np.float32), np.full(2, -1, np.int64)
    geometry = (ya, yb, wy, xt, wx, blocks, lo, buf)
    rows_first, x_first = np.empty((oh, 3, ow), np.float32), np.empty((oh, 3, ow), np.float32)
    with monkeypatch.context() as patched:
        patched.setattr(k, "_horizontal", lambda *a: pytest.fail("an x-pass of an input row with rows first"))
        k._resized_rows.py_func(frame, 0, *geometry, True, cache, ids, rows_first)
    k._resized_rows(frame, 0, *geometry, False, cache, ids, x_first)
    assert np.array_equal(rows_first, np.floor(rows_first)) and rows_first.min() >= 0 and rows_first.max() <= 255
    assert np.abs(rows_first - x_first).max() <= 1
    assert np.mean(rows_first != x_first) < 0.01


@pytest.mark.parametrize("kernel", ["rgb", "residual"])
def test_rows_are_resized_in_bands_not_one_call_per_row(kernel, monkeypatch):
    """A kernel resizes a frame's output rows a band at a time: one ``_resized_rows`` call per ``BAND`` rows.

    A call (or a view) per output row, with the arrays it takes, cost as much as a 112² row's
    arithmetic; the kernels run as plain Python around the compiled passes and the calls are counted.
    """
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    assert k.BAND >= 8
    rng = np.random.default_rng(2)
    window = rng.integers(0, 256, (6, 30, 40, 3), dtype=np.uint8)
    pack = np.zeros(k.PACK_LENGTH, np.float32)
    pack[k.OFFSETS["colour"]:k.OFFSETS["colour"] + 4] = (1.1, 0.9, 1.2, 10.0)
    pack[k.OFFSETS["std"]:k.OFFSETS["std"] + 3] = 60.0
    roi, oh, ow = np.array([2.0, 3.0, 28.0, 37.0], np.float32), 20, 12
    calls, real = [], k._resized_rows

    def counted(frame, oy0, *rest):
        calls.append((oy0, rest[11].shape[0]))  # the band's rows (the rgb kernel also passes what finishes them)
        real(frame, oy0, *rest)

    idx = np.array([0, 2, 4] if kernel == "rgb" else [0, 1, 2, 1, 2, 3], np.int32)  # residual: 4 distinct frames
    out = np.empty((3, 3, oh, ow), np.float32)
    expected = np.empty_like(out)
    run = (lambda f, o: f(o, idx, window, roi, pack, window[:1], k.PLAIN)) if kernel == "rgb" else \
        (lambda f, o: f(o, idx, window, roi, pack))
    compiled = k._rgb_kernel if kernel == "rgb" else k._residual_kernel
    with monkeypatch.context() as patched:
        patched.setattr(k, "_resized_rows", counted)
        run(compiled.py_func, out)
    run(compiled, expected)
    frames = 3 if kernel == "rgb" else 4
    bands = [(oy0, min(k.BAND, oh - oy0)) for oy0 in range(0, oh, k.BAND)]
    assert sorted(calls) == sorted(bands * frames)
    assert np.allclose(out, expected, atol=1e-5)


def _row_passes(k, frame, roi, oh, ow, planar):
    """Every output row's x-pass (``_horizontal`` of its first input row) and rows-first blend, with the permute
    (``planar``, as ``_geometry`` lays it out) or column by column (the interleaved row, as without AVX-512)."""
    import numpy as np

    ya, yb, wy, xt, wx, blocks, lo, buf, _ = k._geometry(frame[None], np.asarray(roi, np.float32), oh, ow)
    if not planar:  # the same taps, counted in columns (offsets 3a, 3b when the geometry chose no blocks)
        a, b = (xt[0], xt[1]) if blocks else (xt[0] // 3, xt[1] // 3)
        xt, blocks = k._x_taps(a.astype(np.int64), b.astype(np.int64), False)
    flat, pitch = frame.reshape(-1), 3 * frame.shape[1]
    x_first, blended = np.empty((oh, 3, ow), np.float32), np.empty((oh, 3, ow), np.float32)
    for oy in range(oh):
        top, bottom = np.uint64(ya[oy] * pitch + 3 * lo), np.uint64(yb[oy] * pitch + 3 * lo)
        k._horizontal(flat, top, buf, xt, wx, blocks, x_first, oy)
        k._blended_row(flat, top, bottom, wy[oy], buf, xt, wx, blocks, blended, oy, False)
    return x_first, blended, blocks


@pytest.mark.skipif("not __import__('motionssl.pipelines.ops._kernels', fromlist=['PERMUTE']).PERMUTE",
                    reason="no AVX-512F here: the x-pass has no permute")
@pytest.mark.parametrize("roi, out", [((10.0, 20.0, 200.0, 250.0), (224, 224)),   # enlarged along x
                                      ((10.0, 60.0, 200.0, 160.0), (112, 112)),   # 100 columns for 112
                                      ((5.0, 300.0, 235.0, 90.0), (224, 160)),    # flipped, 210 for 160
                                      ((0.0, 0.0, 240.0, 320.0), (60, 250)),      # a width not a multiple of LANES
                                      ((0.0, 0.0, 240.0, 320.0), (100, 100))])    # 320 for 100: column by column
def test_the_permute_x_pass_matches_the_column_by_column_one(roi, out):
    """The x-pass's table permute (AVX-512) computes each output column's two taps as the scalar loop does.

    Textured frame, crops enlarged, reduced, flipped, and widths that leave a tail after
    the last block; where the columns read exceed ``PLANAR_READ`` times the output's the
    geometry picks the column-by-column pass itself (no blocks).
    """
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    frame = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    permuted, blended_p, blocks = _row_passes(k, frame, roi, *out, True)
    columns, blended_c, none = _row_passes(k, frame, roi, *out, False)
    read = abs(roi[3] - roi[1])
    assert none == 0 and (blocks == out[1] // k.LANES if read <= k.PLANAR_READ * out[1] else blocks == 0)
    assert np.allclose(permuted, columns, atol=2e-4) and np.allclose(blended_p, blended_c, atol=2e-4)
    assert 0 <= columns.min() and columns.max() <= 255 and columns.std() > 50  # textured: taps that differ


def portable_clips(k):
    """RGB and residual clips of a textured window, two crops (one flipped), a drawn jitter: what both targets build."""
    import numpy as np

    rng = np.random.default_rng(7)
    window = rng.integers(0, 256, (6, 120, 160, 3), dtype=np.uint8)
    pack = np.zeros(k.PACK_LENGTH, np.float32)
    pack[k.OFFSETS["colour"]:k.OFFSETS["colour"] + 4] = (1.2, 0.8, 1.3, 12.0)
    pack[k.OFFSETS["std"]:k.OFFSETS["std"] + 3] = 1.0
    out = []
    for roi, size in (((4.0, 10.0, 100.0, 120.0), 112), ((2.0, 150.0, 118.0, 5.0), 64)):
        rgb = np.empty((3, 3, size, size), np.float32)
        k._rgb_kernel(rgb, np.array([0, 2, 4], np.int32), window, np.array(roi, np.float32), pack, window[:1],
                      k.PLAIN)
        res = np.empty((3, 3, size, size), np.float32)
        k._residual_kernel(res, np.array([0, 1, 2, 1, 2, 3], np.int32), window, np.array(roi, np.float32), pack)
        out += [rgb, res]
    return out


PORTABLE = r"""
import sys, numpy as np
from motionssl.pipelines.ops import _kernels as k
from tests.pipelines.test_kernels import portable_clips
assert not k.PERMUTE, "an AVX2 target must not compile the AVX-512 permute"
np.savez(sys.argv[1], *portable_clips(k))
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="an x86-64 target (AVX2) is named")
def test_the_kernels_compile_and_agree_without_avx512(tmp_path):
    """For a CPU without AVX-512 (Numba told to compile for an AVX2 target) the kernels build without the permute
    and their clips equal this machine's within one resize level times the jitter's gain."""
    import numpy as np

    from motionssl.pipelines.ops import _kernels as k

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBA_CPU_NAME="haswell",
               NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+f16c,+popcnt,+sse4.2,+bmi,+bmi2,+lzcnt,+movbe,+cx16",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", PORTABLE, str(tmp_path / "avx2.npz")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    from tests.pipelines.test_fused import jitter_gain

    avx2 = np.load(tmp_path / "avx2.npz")
    gain = jitter_gain([1.2, 0.8, 1.3, 12.0])  # the jitter's pack in portable_clips; std 1: one level is 1
    for name, native in zip(avx2.files, portable_clips(k)):
        a = avx2[name]
        assert a.shape == native.shape
        assert np.abs(a - native).max() <= gain + 1e-3 and np.mean(np.abs(a - native) > 1e-3) < 0.01, name
