"""The peer loader of the throughput benchmark: the batch contract, and clips that are what was asked.

Frame-index videos (every frame flat grey at level 4·frame) make each clip's frames
readable: un-normalised, a clip's levels give its frame indices, so a wrong speed, gap,
partner or blend weight shows as a wrong number.
"""
import numpy as np
import pytest
import torch

from benchmarks.decode_only import build_iterator
from benchmarks.peer import collate, peer_loader
from motionssl.pipelines import make_iterator
from motionssl.pipelines.contract import violations
from motionssl.pipelines.decoders.torchcodec import torchcodec_available
from motionssl.pipelines.ops.config import KINETICS_MEAN, KINETICS_STD
from motionssl.pipelines.reference_loader import reference_batch
from tests.fixtures import write_id_videos

SIZE = [16, 20]
PLAIN = {"size": SIZE, "jitter_prob": 0.0, "grayscale_prob": 0.0}  # flat grey stays flat: frames stay readable


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_id_videos(str(tmp_path_factory.mktemp("peer")), [40, 36, 40, 33, 40, 40])


def levels(clip, mean=KINETICS_MEAN, std=KINETICS_STD):
    """``(C, T, H, W)`` normalised clip → the grey level of every frame (mean over pixels and channels)."""
    x = clip.double() * torch.tensor(std).view(3, 1, 1, 1) + torch.tensor(mean).view(3, 1, 1, 1)
    return (255 * x).mean(dim=(0, 2, 3)).numpy()


def source_params(it, iteration=0):
    """The planner's draws of every sample of batch ``iteration`` (what the peer was asked to build).

    Clip indices are window positions; ``start`` is the video frame the window starts at. Drawn by a source
    that hands over the file (DALI's decoder): the same draws, positions in the whole window (a frame decoder's
    source renumbers them among the frames the clips read).
    """
    source = it.make_source(decoder="dali")
    out = []
    for slot in range(it.batch_size):
        sample = dict(zip(source.keys, source.sample(0, iteration, slot)))
        sample["start"] = int(sample.pop("window_start"))
        out.append(sample)
    return out


def first_batch(it, **options):
    return next(iter(peer_loader(it, num_workers=0, **options)))


@pytest.mark.parametrize("name", ["simclr", "mcpnet", "moquad"])
def test_peer_batch_keeps_the_contract(data, name):
    it = make_iterator(name, data, 3, device="cpu", config={"clip": {"frames": 4, "augment": {"size": SIZE}}},
                       num_workers=0)
    batch = first_batch(it)
    assert violations(batch, it.planner, "cpu", batch_size=3) == []
    for key in it.planner.clip_specs:
        assert torch.isfinite(batch[key]).all() and batch[key].is_contiguous()
    # the same windows, labels and values as the pipeline's reference loader
    want = reference_batch(it.make_source(decoder="pyav"), it.planner, 0, 0)
    for key in ["label", "index"] + list(it.planner.values):
        assert torch.equal(batch[key], want[key])
    it.close()


def test_speeds_are_what_was_asked(data):
    config = {"clip": {"frames": 5, "speeds": [1, 2, 3], "augment": PLAIN}, "appearance": {"op": "none"}}
    it = make_iterator("moquad", data, 4, device="cpu", config=config, num_workers=0)
    batch, params = first_batch(it), source_params(it)
    for slot, p in enumerate(params):
        for name in ("anchor", "positive", "intra_neg", "intra_neg_ad"):
            got = np.rint(levels(batch[name][slot]) / 4).astype(int)
            np.testing.assert_array_equal(got, p["start"] + p[f"{name}.idx"])  # the drawn frames, in order
            speed = int(batch["speed_m" if "intra" in name else "speed_n"][slot])
            steps = np.diff(got)
            assert np.all((steps == speed) | (got[1:] == got[-1])), (name, got, speed)  # clamped at the end only
    it.close()


def test_residual_gaps_are_what_was_asked(data):
    gap = 3
    config = {"clip": {"frames": 4, "speeds": [1, 2], "augment": PLAIN}, "gap": gap}
    it = make_iterator("mcpnet", data, 4, device="cpu", config=config, num_workers=0)
    batch, params = first_batch(it), source_params(it)
    residual_std = it.planner.cfg.clip.augment.residual_std
    for slot, p in enumerate(params):
        for name, speed_key in (("res_same", "speed_rgb"), ("res_diff", "speed_diff")):
            level = levels(batch[name][slot], (0.0, 0.0, 0.0), (residual_std,) * 3)
            idx = p[f"{name}.idx"]
            first, second = idx[:4], idx[4:]
            np.testing.assert_allclose(level, 4 * (second - first), atol=1.0)  # |F_i − F_{i+t·s}| of id frames
            speed = int(batch[speed_key][slot])
            assert np.all((second - first == gap * speed) | (second == second.max()))  # clamped at the end only
        assert int(batch["speed_rgb"][slot]) != int(batch["speed_diff"][slot])
    it.close()


def test_rad_noise_comes_from_the_partner_with_the_drawn_weight(data):
    config = {"clip": {"frames": 4, "speeds": [1, 2], "augment": PLAIN},
              "appearance": {"op": "rad_inter", "grid": 3, "rad_lambda": [0.2, 0.5]}}
    it = make_iterator("moquad", data, 4, device="cpu", config=config, num_workers=0)
    batch, params = first_batch(it), source_params(it)
    for slot, p in enumerate(params):
        partner = int(p["positive.partner"])
        assert partner != slot
        lam = float(p["positive.lam"])
        lent = 4 * (params[partner]["start"] + int(params[partner]["positive.frame"][0]))  # flat: a flat mosaic
        want = (1 - lam) * 4 * (p["start"] + p["positive.idx"]) + lam * lent
        np.testing.assert_allclose(levels(batch["positive"][slot]), want, atol=1.0)
    it.close()


def test_be_blends_a_frame_of_the_clip_itself(data):
    config = {"clip": {"frames": 4, "speeds": [1, 2], "augment": PLAIN}, "appearance": {"op": "be"}}
    it = make_iterator("moquad", data, 3, device="cpu", config=config, num_workers=0)
    batch, params = first_batch(it), source_params(it)
    for slot, p in enumerate(params):
        lam, idx = float(p["positive.lam"]), p["start"] + p["positive.idx"]
        want = (1 - lam) * 4 * idx + lam * 4 * idx[int(p["positive.frame"][0])]
        np.testing.assert_allclose(levels(batch["positive"][slot]), want, atol=1.0)
    it.close()


def test_gpu_recipe_builds_the_same_batch_in_the_main_process(data):
    """On GPU the workers only decode and the main process augments; run that path on the CPU."""
    it = make_iterator("moquad", data, 3, device="cpu", config={"clip": {"frames": 4, "augment": {"size": SIZE}}},
                       num_workers=0)
    in_workers, in_main = first_batch(it), first_batch(it, augment_in_main=True)
    assert in_workers.keys() == in_main.keys()
    for key in in_workers:
        assert torch.equal(in_workers[key], in_main[key]), key
    it.close()


def test_workers_and_jitter(data):
    """Two worker processes, full colour jitter: values stay in the normalised range of [0, 255]."""
    it = make_iterator("simclr", data, 2, device="cpu", config={"clip": {"frames": 4, "augment": {"size": SIZE}}},
                       num_workers=0)
    loader = peer_loader(it, num_workers=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    lo = (0 - max(KINETICS_MEAN)) / min(KINETICS_STD)
    hi = (1 - min(KINETICS_MEAN)) / min(KINETICS_STD)
    for b in batches:
        for key in ("view1", "view2"):
            assert lo - 1e-4 <= float(b[key].min()) and float(b[key].max()) <= hi + 1e-4
    it.close()


def test_decode_only_peer_yields_the_windows(data):
    it = build_iterator("decode", make_iterator("simclr", data, 2, device="cpu", num_workers=0).index, 2, "cpu", 0,
                        {"window": 6}, num_workers=0)
    batch = first_batch(it)
    want = reference_batch(it.make_source(decoder="pyav"), it.planner, 0, 0)
    assert torch.equal(batch["window"], want["window"]) and torch.equal(batch["index"], want["index"])
    it.close()


def test_peer_refuses_dali_decoder(data):
    it = make_iterator("simclr", data, 2, device="cpu", num_workers=0)
    with pytest.raises(ValueError, match="'pyav' or 'torchcodec'"):
        peer_loader(it, decoder="dali")
    with pytest.raises(ValueError, match="decode_in_main"):
        peer_loader(it, decoder="pyav", decode_in_main=True)
    it.close()


def test_collate_rejects_nothing_silently():
    """An empty batch is a caller's bug: torch.stack says so rather than yielding an empty batch."""
    with pytest.raises(RuntimeError):
        collate([], make_iterator_planner())


def make_iterator_planner():
    from motionssl.pipelines.planners.simclr import SimCLRConfig, SimCLRPlanner

    return SimCLRPlanner(SimCLRConfig())


def skip_without_torchcodec():
    reason = torchcodec_available()  # asked inside the test, never while collecting
    if reason:
        pytest.skip(f"torchcodec unusable: {reason}")


def test_peer_with_torchcodec_reads_the_same_frames(data):
    skip_without_torchcodec()
    config = {"clip": {"frames": 5, "speeds": [1, 2], "augment": PLAIN}, "appearance": {"op": "none"}}
    it = make_iterator("moquad", data, 3, device="cpu", config=config, num_workers=0)
    with_pyav, with_torchcodec = first_batch(it), first_batch(it, decoder="torchcodec")
    for key in ("anchor", "intra_neg"):
        for slot in range(3):
            a = np.rint(levels(with_pyav[key][slot]) / 4)
            b = np.rint(levels(with_torchcodec[key][slot]) / 4)
            np.testing.assert_array_equal(a, b)
    it.close()


def test_peer_decoding_in_the_main_process_builds_the_same_batch(data):
    """The GPU recipe with torchcodec's CUDA decoder (decode and augment in the main process), run on the CPU."""
    skip_without_torchcodec()
    it = make_iterator("mcpnet", data, 3, device="cpu", config={"clip": {"frames": 4, "augment": {"size": SIZE}}},
                       num_workers=0)
    in_workers = first_batch(it, decoder="torchcodec")
    in_main = next(iter(peer_loader(it, decoder="torchcodec", num_workers=1, decode_in_main=True)))
    assert in_workers.keys() == in_main.keys()
    for key in in_workers:
        assert torch.equal(in_workers[key], in_main[key]), key
    it.close()


def test_op_costs_lists_every_step_and_the_fused_operator(capsys):
    from benchmarks.peer import main, op_costs

    costs = op_costs(16, frames=2, height=24, width=32, repeats=1)
    assert list(costs)[:6] == ["crop+flip+resize", "brightness", "contrast", "saturation", "hue",
                               "to float + normalise + layout"]
    assert all(v >= 0 for v in costs.values())
    main(["--sizes", "16", "--frames", "2"])
    assert "peer total" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.parametrize("decode_in_main", [False, True], ids=["cpu-decode", "torchcodec-cuda"])
def test_peer_on_gpu_keeps_the_contract(data, decode_in_main):
    if decode_in_main:
        skip_without_torchcodec()
    it = make_iterator("moquad", data, 3, device="gpu", config={"clip": {"frames": 4, "augment": {"size": SIZE}}},
                       decoder="pyav", num_workers=1)
    loader = peer_loader(it, decoder="torchcodec" if decode_in_main else "pyav", num_workers=1,
                         decode_in_main=decode_in_main)
    batch = next(iter(loader))
    assert violations(batch, it.planner, "gpu", batch_size=3) == []  # float16 clips, every key on the GPU
    it.close()
