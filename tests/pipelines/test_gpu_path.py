"""The GPU path, checked on a machine without a GPU.

A GPU graph is *defined* here exactly as a GPU run defines it (only building and running
need CUDA): every operator must have a backend for where it is placed, take its
per-sample arguments from the CPU, and every output must leave on the GPU, clips in
float16. The models then run on batches laid out as the GPU iterator lays them out
(clips float16, every key on one device — ``meta`` standing in for CUDA). And the
decisions a GPU run makes before its first batch — which decoder reads which file, how
decoding workers start once CUDA is up — are checked on the data the project ships.
"""
import numpy as np
import pytest
import torch

from benchmarks.make_data import SMALL
from motionssl.models.methods import create_method
from motionssl.pipelines import PIPELINES, contract, demo, make_iterator
from motionssl.pipelines import pipeline as pipeline_module
from motionssl.pipelines.decoders import choose_decoder
from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE, decoder_problems, nvdec_problem
from motionssl.pipelines.evaluation import make_eval_iterator
from motionssl.pipelines.index import load_index
from motionssl.pipelines.inspection import define, operators, output_devices, output_dtype, placement_problems
from motionssl.pipelines.pipeline import clip_dtype, start_method
from motionssl.pipelines.video_io import Media, write_video
from tests.fixtures import coloured_id_frames, id_frames, write_id_videos, write_turned

B = 4
SMALL_CLIP = {"frames": 4, "augment": {"size": [32, 32]}}
# Every switch that changes a method's graph.
VARIANTS = [
    ("moquad", {}), ("moquad", {"mode": "warmup"}), ("moquad", {"appearance": {"op": "rad_intra"}}),
    ("moquad", {"appearance": {"op": "be"}}), ("moquad", {"appearance": {"op": "none"}, "motion": "shuffle"}),
    ("moquad", {"intra_neg": False, "intra_neg_ad": False}),
    ("mcpnet", {}), ("mcpnet", {"residual_view": "rgb"}), ("mcpnet", {"cip_speed": "random"}),
    ("simclr", {}),
]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return demo.generate(str(tmp_path_factory.mktemp("demo") / "d"), per_class=3, test_per_class=1, workers=1)


@pytest.fixture(scope="module")
def demo_index(small_demo):
    return load_index(small_demo, split="train")


def config(name, extra):
    clip = dict(SMALL_CLIP, speeds=[1, 2] if name != "simclr" else [1])
    return {"clip": clip, **extra}


@pytest.mark.parametrize("decoder", ["pyav", "dali"])
@pytest.mark.parametrize("name,extra", VARIANTS, ids=lambda v: str(v))
def test_gpu_graph_is_placed_right_and_keeps_the_contract(demo_index, name, extra, decoder):
    it = make_iterator(name, demo_index, B, config=config(name, extra), num_workers=0)  # a CPU iterator
    nodes = define(it.make_source(decoder=decoder), it.planner, "gpu")  # the GPU graph of the same samples
    assert placement_problems(nodes.values()) == []
    assert list(nodes) == list(it.output_names)
    assert set(output_devices(nodes).values()) == {"gpu"}, output_devices(nodes)  # every key on the GPU
    for clip in it.planner.clip_outputs:
        assert output_dtype(nodes[clip]) == clip_dtype("gpu"), clip
    if decoder == "dali":
        ops = {op.schema: op.device for op in operators(nodes.values())}
        assert ops["decoders__Video"] == "mixed"  # NVDEC


@pytest.mark.parametrize("decoder", ["pyav", "dali"])
def test_gpu_evaluation_graph_is_placed_right(demo_index, decoder):
    loader = make_eval_iterator(demo_index, frames=4, size=(32, 32), num_clips=2, num_crops=3, batch_size=4,
                                num_workers=0)
    nodes = define(loader._source(decoder), loader.planner, "gpu")
    assert placement_problems(nodes.values()) == []
    assert set(output_devices(nodes).values()) == {"gpu"}
    assert all(output_dtype(nodes[f"crop{c}"]) == clip_dtype("gpu") for c in range(3))


def test_the_cpu_graph_keeps_cpu_outputs(demo_index):
    it = make_iterator("mcpnet", demo_index, B, config=config("mcpnet", {}), num_workers=0)
    nodes = define(it.source, it.planner, "cpu")
    assert placement_problems(nodes.values()) == [] and set(output_devices(nodes).values()) == {"cpu"}


def test_placement_check_can_fail():
    """DALI's front end already refuses inputs on the wrong device while the graph is defined;
    an operator placed where it has no backend passes that and is caught by the check."""
    from nvidia.dali import Pipeline, fn

    with Pipeline(batch_size=2, num_threads=1, device_id=0):
        encoded = fn.external_source(source=lambda: [np.zeros(16, np.uint8)] * 2, batch=True)
        wrong = fn.decoders.video(encoded.gpu(), device="gpu", sequence_length=2)  # its GPU variant is "mixed"
        frames = fn.external_source(source=lambda: [np.zeros((2, 8, 8, 3), np.uint8)] * 2, batch=True,
                                    layout="FHWC")
        with pytest.raises(ValueError, match="Named arguments must be on CPU"):
            fn.resize(frames.gpu(), size=fn.external_source(source=lambda: [np.float32([4, 4])] * 2,
                                                            batch=True).gpu())
    assert placement_problems([wrong]) == ["__Video_1: decoders__Video placed on gpu but has backends "
                                           "['cpu', 'mixed']"]


def test_contract_dtypes_agree_between_dali_and_torch():
    import nvidia.dali.types as types

    names = {types.FLOAT: torch.float32, types.FLOAT16: torch.float16}
    assert {d: names[clip_dtype(d)] for d in ("cpu", "gpu")} == contract.CLIP_DTYPES


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_cpu_batches_keep_the_contract_and_the_check_can_fail(demo_index, name):
    it = make_iterator(name, demo_index, B, config=config(name, {}), num_workers=0)
    batch = next(iter(it))
    contract.check_batch(batch, it.planner, "cpu", batch_size=B)
    assert contract.violations(batch, it.planner, "gpu")  # CPU tensors are not a GPU batch
    broken = dict(batch, label=batch["label"].int())
    with pytest.raises(ValueError, match="label: torch.int32"):
        contract.check_batch(broken, it.planner, "cpu")
    if "cip_same" in batch:
        stray = contract.to_device(batch, torch.device("meta"), torch.float16)
        stray["cip_same"] = batch["cip_same"]  # the defect this contract fixes: a flag left on the CPU
        assert any(p.startswith("cip_same: on cpu") for p in contract.violations(stray, it.planner, "gpu", on="meta"))


@pytest.mark.parametrize("name,extra", [v for v in VARIANTS if v[0] != "mcpnet" or not v[1]], ids=str)
def test_methods_run_on_batches_laid_out_as_the_gpu_iterator_lays_them(demo_index, name, extra):
    """``meta`` stands in for CUDA: a key on another device than the clips fails here as it would on a GPU."""
    it = make_iterator(name, demo_index, B, config=config(name, extra), num_workers=0)
    gpu_like = contract.to_device(next(iter(it)), torch.device("meta"), contract.CLIP_DTYPES["gpu"])
    contract.check_batch(gpu_like, it.planner, "gpu", on="meta", batch_size=B)
    method = create_method(name, backbone="tiny", proj_hidden_dim=32, proj_dim=16).to("meta")
    out = method(gpu_like)
    assert out["loss"].device.type == "meta" and out["loss"].dim() == 0
    out["loss"].backward()
    if name == "mcpnet":  # the negative control: the same forward with one key left on the CPU fails
        gpu_like["cip_same"] = torch.zeros(B, dtype=torch.bool)
        with pytest.raises(RuntimeError):
            method(gpu_like)


@pytest.mark.parametrize("residual_bn", ["split", "own"])
def test_mcpnet_residual_norm_settings_run_on_gpu_laid_out_batches(demo_index, residual_bn):
    it = make_iterator("mcpnet", demo_index, B, config=config("mcpnet", {}), num_workers=0)
    gpu_like = contract.to_device(next(iter(it)), torch.device("meta"), contract.CLIP_DTYPES["gpu"])
    method = create_method("mcpnet", backbone="tiny", proj_hidden_dim=32, proj_dim=16,
                           residual_bn=residual_bn).to("meta")
    out = method(gpu_like)
    assert out["loss"].device.type == "meta"
    out["loss"].backward()
    if residual_bn == "own":
        assert all(p.grad is not None and p.grad.device.type == "meta" for p in method.residual_norms.parameters())


def test_start_method_follows_dalis_own_driver_check(monkeypatch):
    monkeypatch.setattr(pipeline_module.backend, "IsDriverInitialized", lambda: False)
    assert start_method("cpu") == "fork" and start_method("gpu") == "spawn"
    monkeypatch.setattr(pipeline_module.backend, "IsDriverInitialized", lambda: True)  # e.g. after is_available()
    assert start_method("cpu") == "spawn"


# --- which decoder reads which file ----------------------------------------------------------------
def test_nvdec_capability_rules():
    assert nvdec_problem(Media(240, 320, "h264", "yuv420p")) is None
    assert nvdec_problem(Media(128, 128, "vp9", "yuv420p")) is None
    assert "below NVDEC's 128x128" in nvdec_problem(Media(64, 64, "vp9", "yuv420p"))
    assert "below NVDEC's 48x16" in nvdec_problem(Media(16, 32, "h264", "yuv420p"))
    assert "yuv444p" in nvdec_problem(Media(240, 320, "h264", "yuv444p"))  # lossless x264: High 4:4:4
    assert "yuv420p10le" in nvdec_problem(Media(240, 320, "hevc", "yuv420p10le"))
    assert "mjpeg" in nvdec_problem(Media(240, 320, "mjpeg", "yuvj420p"))  # DALI's GPU decoder refuses MJPEG
    assert "mpeg1video" in nvdec_problem(Media(240, 320, "mpeg1video", "yuv420p"))
    assert set(NVDEC_MIN_SIZE) == {"h264", "hevc", "vp8", "vp9", "mpeg4", "av1"}
    # NVDEC decodes the frames as stored: a video displayed 64 high and 20 wide is stored 64 wide when turned
    assert "20x64 frames are below" in nvdec_problem(Media(64, 20, "h264", "yuv420p"))
    assert nvdec_problem(Media(64, 20, "h264", "yuv420p", rotation=90)) is None


@pytest.mark.parametrize("name", ["moquad", "simclr"])
def test_the_gpu_graph_turns_rotated_videos_upright_on_the_gpu(tmp_path, demo_index, name):
    """NVDEC ignores the display matrix: the graph turns each window by its video's rotation, on the GPU,
    the per-sample angle from the CPU; a dataset without rotated videos has no turning step at all."""
    frames = coloured_id_frames(12, 40, 64)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{write_turned(str(tmp_path / f'r{v}.mp4'), frames, r)} {v % 2}\n"
                               for v, r in enumerate((0, 90, 180, 270))))
    turned = load_index(str(listing))
    for index, rotated in ((turned, True), (demo_index, False)):
        it = make_iterator(name, index, B, config=config(name, {}), num_workers=0)
        source = it.make_source(decoder="dali")
        assert ("rotation" in source.keys) == rotated
        nodes = define(source, it.planner, "gpu")
        assert placement_problems(nodes.values()) == []
        assert set(output_devices(nodes).values()) == {"gpu"}
        ops = operators(nodes.values())
        rotations = [op for op in ops if op.schema == "Rotate"]
        assert len(rotations) == rotated
        if rotated:
            assert rotations[0].device == "gpu"
            assert any(op.schema == "decoders__Video" and op.device == "mixed" for op in ops)
            for slot in range(B):  # each sample carries its own video's turn
                sample = dict(zip(source.keys, source.sample(0, 0, slot)))
                assert float(sample["rotation"]) == (0, 90, 180, 270)[int(sample["index"])]


def test_the_demo_on_a_gpu_falls_back_to_pyav_with_one_line(demo_index, caplog):
    problems = decoder_problems(demo_index.with_media(), "gpu")
    assert len(problems) == len(demo_index) and "64x64" in problems[0][1]  # 64×64 VP9 < NVDEC's VP9 minimum
    with caplog.at_level("WARNING"):
        decoder, _ = choose_decoder(demo_index, None, "gpu")
    assert decoder == "pyav" and len(caplog.records) == 1 and "PyAV workers instead of NVDEC" in caplog.text
    with pytest.raises(ValueError, match=r"demo.*\.webm: 64x64 frames are below NVDEC's 128x128 minimum.*prepare"):
        choose_decoder(demo_index, "dali", "gpu")
    assert choose_decoder(demo_index, None, "cpu")[0] == "pyav"
    assert choose_decoder(demo_index, "dali", "cpu")[0] == "dali"  # VP9 is read by DALI's CPU decoder


def test_test_fixtures_and_benchmark_data_against_nvdec(tmp_path):
    ids = load_index(write_id_videos(str(tmp_path / "ids"), [12, 12])).with_media()
    assert all("below" in reason for _, reason in decoder_problems(ids, "gpu"))  # 48×32 VP9: PyAV on GPU
    big = load_index(write_id_videos(str(tmp_path / "big"), [12], height=128, width=128)).with_media()
    assert decoder_problems(big, "gpu") == []  # the size the GPU tests use
    lossless = load_index(write_id_videos(str(tmp_path / "h264"), [12], codec="h264")).with_media()
    assert "yuv444p" in decoder_problems(lossless, "gpu")[0][1]
    # benchmarks.make_data's H.264 (320×240, yuv420p, short GOP) is what NVDEC is benchmarked on.
    write_video(str(tmp_path / "bench.mp4"), id_frames(8, 240, 320), codec="h264")
    (tmp_path / "bench.txt").write_text("bench.mp4 0\n")
    bench = load_index(str(tmp_path / "bench.txt")).with_media()
    assert bench.media[0].pix_fmt == "yuv420p" and decoder_problems(bench, "gpu") == []
    assert (SMALL["width"], SMALL["height"]) >= NVDEC_MIN_SIZE["h264"]


def test_a_gpu_that_refuses_a_kind_of_video_is_asked_not_assumed(tmp_path):
    """AV1 passes the published table but not every GPU decodes it: a probe decode per kind decides."""
    from motionssl.pipelines.decoders.dali import probe_problems

    lst = write_id_videos(str(tmp_path), [8, 8, 8], height=128, width=128)
    index = load_index(lst).with_media()
    asked = []

    def refuses_vp9(path):
        asked.append(path)
        return "Codec configuration not supported on this GPU" if path.endswith(".webm") else None

    problems = probe_problems(index, refuses_vp9)
    assert len(asked) == 1  # one kind (vp9, yuv420p), all of one size: one probe
    assert len(problems) == 3 and "NVDEC refused a video of this kind on this GPU" in problems[0][1]
    assert probe_problems(index, lambda path: None) == []


def _probe_with(monkeypatch, failure):
    """``nvdec_probe`` with DALI's pipeline replaced by one whose run raises ``failure``; the device ids asked for."""
    import nvidia.dali

    devices = []

    def fake_pipeline_def(**kwargs):
        devices.append(kwargs["device_id"])

        def wrap(fn):
            class Pipe:
                def build(self):
                    pass

                def run(self):
                    if failure:
                        raise RuntimeError(f"Critical error in pipeline:\nError in MIXED operator "
                                           f"`decoders__Video` encountered:\n\n{failure}\nC++ context: [...]")
            return lambda: Pipe()
        return wrap

    monkeypatch.setattr(nvidia.dali, "pipeline_def", fake_pipeline_def)
    return devices


@pytest.mark.parametrize("failure,unsupported", [
    ("Codec configuration not supported on this GPU. Codec: AV1, chroma format: YUV 4:2:0, bit depth: 8", True),
    ("Video is too small in at least one dimension. Provided: 96x96 vs supported:128x128", True),
    ("Video is too large in at least one dimension. Provided: 8192x8192 vs supported:4096x4096", True),
    ("CUDA error 'out of memory' (cudaErrorMemoryAllocation)", False),
    ("CUDA driver API error CUDA_ERROR_DEVICES_UNAVAILABLE: all CUDA-capable devices are busy or unavailable", False),
])
def test_the_nvdec_probe_falls_back_only_for_what_nvdec_cannot_decode(tmp_path, monkeypatch, failure, unsupported):
    """A probe failing for a reason that is not the video's (no memory, an exclusive GPU) must not move one rank to
    PyAV while the others use NVDEC: only "this codec or size is unsupported" falls back; the rest is an error."""
    from motionssl.pipelines.decoders.dali import ProbeError, nvdec_probe

    path = tmp_path / "v.webm"
    path.write_bytes(b"\x1a\x45\xdf\xa3")
    devices = _probe_with(monkeypatch, failure)
    if unsupported:
        assert nvdec_probe(str(path), device_id=3) == failure.splitlines()[0]
    else:
        with pytest.raises(ProbeError, match=r"v\.webm with NVDEC on GPU 3 failed: CUDA .*decoder='pyav'"):
            nvdec_probe(str(path), device_id=3)
    assert devices == [3]  # the rank's own GPU, not GPU 0


def test_each_process_probes_on_its_own_gpu_once(tmp_path, monkeypatch):
    """MoQuad builds two loaders: the second asks the GPU nothing again; rank 3 asks GPU 3."""
    from motionssl.pipelines.decoders import dali as decoding

    index = load_index(write_id_videos(str(tmp_path), [8, 8], height=128, width=128))
    asked = []
    monkeypatch.setattr(decoding, "_probed", {})
    monkeypatch.setattr(decoding, "nvdec_probe", lambda path, device_id=0: asked.append(device_id))
    for _ in range(2):
        assert choose_decoder(index, None, "gpu", device_id=3)[0] == "dali"
    assert asked == [3]


def _agreeing_rank(rank: int, init_file: str, lst: str, refuse_on: int, fail_on: int, out: str) -> None:
    import json
    import logging

    import torch.distributed as dist

    from motionssl.pipelines.decoders import dali as decoding

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("motionssl.pipelines.decoders").addHandler(handler)

    def probe(path, device_id=0):
        assert device_id == rank
        if rank == fail_on:
            raise decoding.ProbeError("out of memory")
        return "Codec configuration not supported on this GPU" if rank == refuse_on else None

    decoding.nvdec_probe = probe
    try:
        result = {"decoder": choose_decoder(load_index(lst), None, "gpu", device_id=rank)[0]}
    except decoding.ProbeError as exc:
        result = {"error": str(exc)}
    result["log"] = records
    with open(f"{out}.{rank}", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("refuse_on,fail_on", [(1, -1), (-1, 1)], ids=["rank 1 refuses", "rank 1 fails"])
def test_ranks_agree_on_the_decoder(tmp_path, refuse_on, fail_on):
    """One rank's GPU refusing a kind of video moves every rank to PyAV, said once with the rank; one rank's probe
    failing for another reason stops every rank (none waits in the collective for ever)."""
    import json

    import torch.multiprocessing as mp

    lst = write_id_videos(str(tmp_path / "v"), [8, 8], height=128, width=128)
    out = str(tmp_path / "result")
    mp.start_processes(_agreeing_rank, args=(str(tmp_path / "init"), lst, refuse_on, fail_on, out), nprocs=2,
                       start_method="spawn")
    results = [json.load(open(f"{out}.{rank}")) for rank in range(2)]
    if refuse_on == 1:
        assert [r["decoder"] for r in results] == ["pyav", "pyav"]
        assert any("rank 1's GPU refused" in line for line in results[0]["log"])
    else:
        assert all("rank 1: " in r["error"] and "out of memory" in r["error"] for r in results)
