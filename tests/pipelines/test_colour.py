"""One YUV → RGB conversion for every decoder: PyAV workers return the bytes DALI's decoder returns.

Textured videos with real chroma detail (stripes and colour blocks; flat grey frames cannot
show a colour-conversion difference), at even and odd sizes, limited-range VP9 and
full-range MJPEG, decoded through the pipeline's two decoders.
"""
import numpy as np
import pytest

from motionssl.pipelines import build_pipeline
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.index import load_index
from motionssl.pipelines.planners.base import Planner
from motionssl.pipelines.sources import WindowSource
from motionssl.pipelines.video_io import write_video

FRAMES = 6


class Window(Planner):
    """Outputs the decoded window."""

    outputs = ("window",)
    window = FRAMES

    def draw(self, *args):
        return {}

    def graph(self, window, params, dtype):
        return {"window": window}


def textured(height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(FRAMES):
        waves = np.stack([127 + 120 * np.sin(0.37 * x + 0.21 * y + 0.3 * i),
                          127 + 120 * np.sin(0.29 * x - 0.33 * y + 0.2 * i + 1),
                          127 + 120 * np.sin(0.5 * x + 0.1 * y - 0.4 * i + 2)], -1)
        blocks = ((x // 4 + y // 4) % 2)[..., None] * rng.uniform(-60, 60, 3)
        frames.append(np.clip(waves + blocks, 0, 255).astype(np.uint8))
    return np.stack(frames)


def decoded_both_ways(folder, codec, height, width):
    ext = ".webm" if codec == "vp9" else ".mkv"
    lines = []
    for v in range(2):
        name = f"t{v}{ext}"
        write_video(str(folder / name), textured(height, width, v), codec=codec, crf=24)
        lines.append(f"{name} {v}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    index = load_index(str(folder / "list.txt"))
    source = WindowSource(index, Window(), batch_size=2, shuffle=False, samples=[(0, 0), (1, 0)], decoder="dali")
    pipe = build_pipeline(source, source.planner, device="cpu", num_workers=0)
    pipe.build()
    windows = pipe.run()[0]
    dali = [np.array(windows[i]) for i in range(2)]
    pyav = [read_window(path, 0, FRAMES) for path in index.paths]
    return dali, pyav


@pytest.mark.parametrize("codec,height,width", [("vp9", 48, 64), ("vp9", 49, 65), ("vp9", 120, 160),
                                                ("mjpeg", 48, 64)])
def test_pyav_workers_and_dalis_decoder_agree(tmp_path, codec, height, width):
    dali, pyav = decoded_both_ways(tmp_path, codec, height, width)
    for d, p in zip(dali, pyav):
        assert d.shape == p.shape == (FRAMES, height, width, 3)
        assert p.std() > 40  # real chroma detail
        diff = np.abs(d.astype(int) - p)
        assert diff.max() <= 1 and diff.mean() < 0.05, (diff.mean(), diff.max())


def test_pyav_default_conversion_would_differ(tmp_path):
    """The check can fail: PyAV's default conversion is libswscale's fast path at even sizes."""
    import av

    dali, _ = decoded_both_ways(tmp_path, "vp9", 48, 64)
    with av.open(str(tmp_path / "t0.webm")) as container:
        default = np.stack([f.to_ndarray(format="rgb24") for f, _ in zip(container.decode(video=0), range(FRAMES))])
    assert np.abs(dali[0].astype(int) - default).mean() > 1.0
