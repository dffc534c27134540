"""On a CUDA GPU only (``pytest -m gpu``; skipped cleanly elsewhere): NVDEC, the GPU graphs, training.

* every method's pipeline on the GPU, NVDEC- and PyAV-decoded, keeps the batch contract
  (every key on the GPU, clips float16) and matches the reference loader;
* NVDEC decodes H.264 with B-frames frame-exactly (the same frames as PyAV);
* one ``train.py`` step of each method on NVDEC-decoded data;
* two ranks on NCCL when the machine has two GPUs.

``python -m benchmarks.gpu_check`` runs these with the GPU benchmarks and writes a report.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipelines import PIPELINES, contract, make_iterator
from pipelines.index import load_index
from pipelines.planner import Planner
from pipelines.reference_loader import reference_loader
from pipelines.sources import WindowSource
from pipelines.video_io import read_window, write_video
from tests.fixtures import write_id_videos

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B, T = 4, 4
STEP = 6  # grey level per frame index in the B-frame videos: survives lossy coding


@pytest.fixture(scope="module")
def nvdec_ids(tmp_path_factory):
    """Frame-index videos at 128×128 (NVDEC's VP9 minimum), lossless VP9 4:2:0."""
    return load_index(write_id_videos(str(tmp_path_factory.mktemp("ids")), [40, 36, 30, 44, 38, 33, 42, 31],
                                      height=128, width=128))


@pytest.fixture(scope="module")
def bframes(tmp_path_factory):
    """H.264 (yuv420p, B-frames, GOP 12) whose left half is flat grey at STEP·frame, right half textured."""
    folder = tmp_path_factory.mktemp("bframes")
    y, x = np.mgrid[0:144, 0:96]
    lines = []
    for v in range(2):
        frames = np.empty((40, 144, 192, 3), np.uint8)
        for i in range(40):
            frames[i, :, :96] = STEP * i
            frames[i, :, 96:] = (127 + 100 * np.sin(0.2 * x + 0.15 * y + 0.3 * i + v)[..., None]).astype(np.uint8)
        path = folder / f"b{v}.mp4"
        write_video(str(path), frames, codec="h264", gop=12, crf=12)
        lines.append(f"{path.name} {v}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return load_index(str(folder / "list.txt"))


def clip_config(name):
    return {"clip": {"frames": T, "speeds": [1, 2] if name != "simclr" else [1], "augment": {"size": [64, 64]}}}


@pytest.mark.parametrize("decoder", ["dali", "pyav"])
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_gpu_pipelines_keep_the_contract_and_match_the_reference(nvdec_ids, name, decoder):
    it = make_iterator(name, nvdec_ids, B, device="gpu", seed=1, config=clip_config(name), decoder=decoder,
                       num_workers=2)
    assert it.decoder == decoder
    got = next(iter(it))
    contract.check_batch(got, it.planner, "gpu", batch_size=B)
    want = next(iter(reference_loader(it, num_workers=0)))
    contract.check_batch(want, it.planner, "gpu", batch_size=B)  # the reference loader lands on the GPU too
    for key in it.output_names:
        if got[key].ndim == 5:
            diff = (got[key].float() - want[key].float()).abs()
            assert diff.max() < 0.06 and diff.mean() < 3e-3, key  # uint8 rounding and float16
        else:
            assert torch.equal(got[key], want[key]), key
    it.close()


def test_nvdec_decodes_h264_with_bframes_frame_exactly(bframes):
    index = bframes.apply_window(10)
    starts = [(v, s) for v in range(2) for s in (0, 5, 13, 30)]
    source = WindowSource(index, _Window(10), batch_size=4, shuffle=False, samples=starts, decoder="dali")
    from pipelines import build_pipeline

    pipe = build_pipeline(source, source.planner, "gpu", num_workers=1)
    pipe.build()
    for iteration in range(len(source)):
        windows, _, videos = pipe.run()
        for slot in range(4):
            video, start = starts[iteration * 4 + slot]
            nvdec = np.array(windows.as_cpu()[slot])
            pyav = read_window(index.paths[video], start, 10)
            ids = np.rint(nvdec[:, :, :96].mean(axis=(1, 2, 3)) / STEP).astype(int)
            np.testing.assert_array_equal(ids, start + np.arange(10))  # the right frames, in display order
            assert np.abs(nvdec.astype(float) - pyav).mean() < 3.0  # and the same pixels, up to colour rounding


class _Window(Planner):
    """A planner that outputs the decoded window itself."""

    outputs = ("window",)

    def __init__(self, window):
        self.window = window

    def draw(self, *args):
        return {}

    def graph(self, window, params, dtype):
        return {"window": window}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_one_training_step_on_nvdec_data(nvdec_ids, tmp_path, name):
    lst = tmp_path / "list.txt"
    nvdec_ids.to_list(str(lst))
    out = str(tmp_path / "run")
    run = subprocess.run([sys.executable, "train.py", "--pipeline", name, "--data", str(lst), "--out", out,
                          "device=gpu", "max_steps=1", "batch_size=4", "retrieval=false", "loader.decoder=dali",
                          "pipeline_config.clip.frames=4", "pipeline_config.clip.augment.size=[64,64]"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dali decoding" in run.stdout and "on gpu" in run.stdout
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert np.isfinite(json.loads(f.readline())["loss"])


def test_two_ranks_on_nccl(nvdec_ids, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    lst = tmp_path / "list.txt"
    nvdec_ids.to_list(str(lst))
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "train.py", "--pipeline", "mcpnet", "--data", str(lst), "--out", out, "device=gpu", "max_steps=2",
           "batch_size=2", "retrieval=false", "pipeline_config.clip.frames=4",
           "pipeline_config.clip.augment.size=[64,64]"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
