"""The three method pipelines through their iterators: contract, exact indices, ablations,
parity with the reference loader, seeding, sharding and resume."""
import os

import numpy as np
import pytest
import torch

from motionssl.pipelines import PIPELINES, make_iterator
from motionssl.pipelines.index import load_index
from motionssl.pipelines.reference_loader import ReferenceBatches, reference_loader
from tests.fixtures import decode_ids, write_id_videos

B, T, SIZE = 4, 4, (24, 32)
# Identity augmentation: the whole frame, no flip, no colour, and normalisation that keeps
# pixel levels, so the frame index can be read back from any clip.
PLAIN = {"size": list(SIZE), "crop_area": [1.0, 1.0], "crop_ratio": [1.5, 1.5], "flip_prob": 0.0,
         "jitter_prob": 0.0, "grayscale_prob": 0.0, "mean": [0, 0, 0], "std": [1, 1, 1], "residual_std": 1.0}
SMALL = {"size": list(SIZE)}


def cfg(name, augment=None, **extra):
    clip = {"frames": T, "augment": augment or SMALL}
    if name == "moquad":
        clip["speeds"] = [1, 2]
    return {"clip": clip, **extra}


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ids")
    return load_index(write_id_videos(str(folder), [40, 36, 30, 44, 38, 33, 42, 31], height=32, width=48))


def batches(it, n=None):
    out = []
    for i, b in enumerate(it):
        out.append({k: v.clone() for k, v in b.items()})
        if n is not None and i + 1 == n:
            break
    return out


def levels(clip):
    """(C, T, H, W) clip in pixel units → frame index per frame."""
    return decode_ids(clip.permute(1, 2, 3, 0).numpy() * 255.0)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_contract_and_parity_with_reference_loader(ids, name):
    it = make_iterator(name, ids, B, seed=1, config=cfg(name), num_workers=0)
    got = batches(it, 2)
    ref = list(reference_loader(it, num_workers=0))[:2]
    for batch, want in zip(got, ref):
        assert set(batch) == set(it.output_names) == set(want)
        for key, value in batch.items():
            if value.ndim == 5:
                assert value.shape == (B, 3, T, *SIZE) and value.dtype == torch.float32
                diff = (value - want[key]).abs()
                assert diff.max() < 0.05 and diff.mean() < 2e-3, key  # uint8 rounding only
            else:
                assert value.shape == (B,)
                assert torch.equal(value, want[key]), key
        assert batch["label"].dtype == torch.int64 and batch["index"].dtype == torch.int64
        assert len(set(batch["index"].tolist())) == B  # distinct videos
        assert torch.equal(batch["label"], batch["index"] % 2)


@pytest.mark.parametrize("op", ["rad_inter", "rad_intra", "be"])
def test_appearance_ops_match_reference(ids, op):
    it = make_iterator("moquad", ids, B, seed=2, config=cfg("moquad", appearance={"op": op}), num_workers=0)
    (got,) = batches(it, 1)
    want = ReferenceBatches(it)[0]
    for key in ("positive", "intra_neg_ad"):
        assert (got[key] - want[key]).abs().max() < 0.05
        assert (got[key] - got["anchor"]).abs().mean() > 0.05  # it did disturb


def test_moquad_speeds_exact(ids):
    it = make_iterator("moquad", ids, B, seed=3, config=cfg("moquad", PLAIN, appearance={"op": "none"}),
                       num_workers=0)
    for batch in batches(it):
        for s in range(B):
            n, m = int(batch["speed_n"][s]), int(batch["speed_m"][s])
            assert n != m and {n, m} <= {1, 2}
            for key, speed in (("anchor", n), ("positive", n), ("intra_neg", m), ("intra_neg_ad", m)):
                assert np.all(np.diff(levels(batch[key][s])) == speed), key


def test_moquad_motion_ops_and_members(ids):
    rev = make_iterator("moquad", ids, B, config=cfg("moquad", PLAIN, motion="reverse", appearance={"op": "none"}),
                        num_workers=0)
    (b,) = batches(rev, 1)
    for s in range(B):
        n = int(b["speed_n"][s])
        assert int(b["speed_m"][s]) == n
        assert np.all(np.diff(levels(b["anchor"][s])) == n)
        assert np.all(np.diff(levels(b["intra_neg"][s])) == -n)
    shuf = make_iterator("moquad", ids, B, config=cfg("moquad", PLAIN, motion="shuffle", appearance={"op": "none"}),
                         num_workers=0)
    orders = [levels(b["intra_neg"][s]) for b in batches(shuf) for s in range(B)]
    assert all(np.all(np.diff(np.sort(o)) == np.diff(np.sort(o))[0]) for o in orders)
    assert any(np.any(np.diff(o) < 0) for o in orders)  # some really are out of order
    only_pos = make_iterator("moquad", ids, B, config=cfg("moquad", intra_neg=False, intra_neg_ad=False),
                             num_workers=0)
    (b,) = batches(only_pos, 1)
    assert "intra_neg" not in b and "intra_neg_ad" not in b and "positive" in b
    warm = make_iterator("moquad", ids, B, config=cfg("moquad", PLAIN, mode="warmup"), num_workers=0)
    (b,) = batches(warm, 1)
    assert set(b) == {"clip_n", "clip_m", "speed_n", "speed_m", "label", "index"}
    for s in range(B):
        assert np.all(np.diff(levels(b["clip_n"][s])) == int(b["speed_n"][s]))
        assert np.all(np.diff(levels(b["clip_m"][s])) == int(b["speed_m"][s]))


@pytest.mark.parametrize("view,gap", [("long_range", 3), ("residual", 3)])
def test_mcpnet_residual_gaps_exact(ids, view, gap):
    it = make_iterator("mcpnet", ids, B, seed=4, config=cfg("mcpnet", PLAIN, gap=gap, residual_view=view),
                       num_workers=0)
    t = 1 if view == "residual" else gap
    for batch in batches(it):
        for s in range(B):
            sr, sd = int(batch["speed_rgb"][s]), int(batch["speed_diff"][s])
            assert sr != sd
            assert np.all(np.diff(levels(batch["rgb"][s])) == sr)
            # |F_i − F_{i+t·s}| is flat grey 4·t·s (all windows here are long enough)
            for key, speed in (("res_same", sr), ("res_diff", sd)):
                np.testing.assert_allclose(batch[key][s].mean(dim=(0, 2, 3)).numpy() * 255, 4 * t * speed, atol=1.5)
        assert not batch["cip_same"].any()


def test_mcpnet_cip_speed_and_rgb_view(ids):
    same = batches(make_iterator("mcpnet", ids, B, config=cfg("mcpnet", cip_speed="same"), num_workers=0), 1)[0]
    assert same["cip_same"].all()
    rand = batches(make_iterator("mcpnet", ids, B, config=cfg("mcpnet", cip_speed="random"), num_workers=0))
    flags = torch.cat([b["cip_same"] for b in rand])
    assert flags.any() and not flags.all()
    rgb = batches(make_iterator("mcpnet", ids, B, config=cfg("mcpnet", PLAIN, residual_view="rgb"), num_workers=0), 1)[0]
    for s in range(B):
        assert np.all(np.diff(levels(rgb["res_same"][s])) == int(rgb["speed_rgb"][s]))


def test_seeded_iterators_reproduce(ids):
    a = batches(make_iterator("mcpnet", ids, B, seed=7, config=cfg("mcpnet"), num_workers=0), 2)
    b = batches(make_iterator("mcpnet", ids, B, seed=7, config=cfg("mcpnet"), num_workers=2), 2)
    c = batches(make_iterator("mcpnet", ids, B, seed=8, config=cfg("mcpnet"), num_workers=0), 2)
    for x, y in zip(a, b):
        for k in x:
            assert torch.equal(x[k], y[k]), k
    assert not torch.equal(a[0]["rgb"], c[0]["rgb"])


def test_close_stops_the_workers_and_iterating_again_rebuilds(ids):
    import multiprocessing

    before = set(multiprocessing.active_children())
    it = make_iterator("simclr", ids, B, seed=7, config=cfg("simclr"), num_workers=2)
    first = batches(it, 1)
    assert len(set(multiprocessing.active_children()) - before) == 2  # the two decoding workers
    it.close()
    assert not set(multiprocessing.active_children()) - before
    it.seek(0, 0)
    again = batches(it, 1)
    assert torch.equal(first[0]["view1"], again[0]["view1"])
    it.close()


def test_two_shards_cover_an_epoch_once(ids):
    seen = []
    for rank in range(2):
        it = make_iterator("simclr", ids, 2, seed=5, shard_id=rank, num_shards=2, config=cfg("simclr"), num_workers=0)
        assert len(it) == 2
        seen += [i for b in batches(it) for i in b["index"].tolist()]
    assert sorted(seen) == list(range(8))


def test_state_dict_resumes_on_the_next_batch(ids):
    run = make_iterator("moquad", ids, 2, seed=9, config=cfg("moquad"), num_workers=0)
    assert len(run) == 4
    full = batches(run) + batches(run)  # two epochs
    partial = make_iterator("moquad", ids, 2, seed=9, config=cfg("moquad"), num_workers=0)
    batches(partial, 3)
    state = partial.state_dict()
    assert (state["epoch"], state["iteration"]) == (0, 3)
    resumed = make_iterator("moquad", ids, 2, seed=9, config=cfg("moquad"), num_workers=0)
    resumed.load_state_dict(state)
    rest = batches(resumed) + batches(resumed)
    assert len(rest) == 5
    for x, y in zip(rest, full[3:]):
        for k in x:
            assert torch.equal(x[k], y[k]), k
    wrong = make_iterator("moquad", ids, 2, seed=10, config=cfg("moquad"), num_workers=0)
    with pytest.raises(ValueError, match="seed"):
        wrong.load_state_dict(state)


def test_bad_options_are_named(ids):
    with pytest.raises(ValueError, match=r"unknown pipeline 'byol'.*mcpnet.*moquad.*simclr"):
        make_iterator("byol", ids, B)
    with pytest.raises(ValueError, match=r"unknown moquad key\(s\) \['beta'\]"):
        make_iterator("moquad", ids, B, config={"beta": 0.1})
    with pytest.raises(ValueError, match=r"unknown moquad.clip.augment key\(s\) \['blur'\]"):
        make_iterator("moquad", ids, B, config={"clip": {"augment": {"blur": 1}}})
    with pytest.raises(ValueError, match="unknown iterator option"):
        make_iterator("moquad", ids, B, workers=3)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        make_iterator("simclr", ids, 16, config=cfg("simclr"))
    with pytest.raises(ValueError, match="two different speeds"):
        make_iterator("mcpnet", ids, B, config={"clip": {"speeds": [2]}})
    with pytest.raises(ValueError, match="appearance op"):
        make_iterator("moquad", ids, B, config={"appearance": {"op": "cutmix"}})
    with pytest.raises(ValueError, match="shorter than the"):  # window 61 > every video
        make_iterator("simclr", ids, B, config={"clip": {"frames": 31, "speeds": [2]}}, short_videos="error")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("first", [True, False])
def test_a_decode_failure_names_its_file_in_one_line(tmp_path, workers, first):
    """Decoding runs batches ahead (and the first ones while the pipeline is built), so the batch
    being awaited is not where the failure is: the message must come from the failing sample."""
    from motionssl.pipelines.sources import PipelineError

    index = load_index(write_id_videos(str(tmp_path), [30] * 12))
    it = make_iterator("simclr", index, 2, seed=0, config=cfg("simclr"), num_workers=workers)
    order = [i for b in range(len(it)) for i in it.source.batch_ids(0, b)]
    victim = index.paths[order[0] if first else order[9]]  # batch 0, or batch 4 of 6
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 4)
    with pytest.raises(PipelineError) as error:
        batches(it)
    message = str(error.value)
    assert message.startswith(f"{victim}: ") and "\n" not in message
    assert sum(os.path.basename(p) in message for p in index.paths) == 1  # no innocent file named
    it.close()


def test_a_dali_decoder_failure_names_the_candidate_files(tmp_path):
    """DALI's own decoder reports a sample number only: the few files it can be are named with the cause."""
    from motionssl.pipelines.sources import PipelineError

    write_id_videos(str(tmp_path), [30] * 8)
    rows = [f"videos/v{v:03d}.webm {v % 2} {120 if v == 5 else 30}" for v in range(8)]  # a stale frame count
    (tmp_path / "stale.txt").write_text("\n".join(rows) + "\n")
    index = load_index(str(tmp_path / "stale.txt"))
    index.counted[:] = True  # taken as checked, so the stale count reaches DALI's decoder (see test_index)
    it = make_iterator("simclr", index, 2, seed=0, config=cfg("simclr"), num_workers=0, decoder="dali")
    with pytest.raises(PipelineError, match=r"^Start frame \d+ is out of bounds .*v005\.webm.*decoder='pyav'"):
        for _ in range(4):
            batches(it)


def test_mcpnet_reversed_mip_negatives(ids):
    """mip_negative=reverse: l2 is the clip at the RGB clip's own speed played backwards, pairs kept; CIP pairs
    r with l1 (another setting is refused with the reason)."""
    from motionssl.pipelines.planners.mcpnet import MCPNetConfig, MCPNetPlanner
    from motionssl.pipelines.ops.config import ClipConfig

    rgb = batches(make_iterator("mcpnet", ids, B, seed=3, config=cfg("mcpnet", PLAIN, residual_view="rgb",
                                                                    mip_negative="reverse", cip_speed="same"),
                                num_workers=0), 2)
    for batch in rgb:
        assert torch.equal(batch["speed_rgb"], batch["speed_diff"]) and batch["cip_same"].all()
        for s in range(B):
            speed = int(batch["speed_rgb"][s])
            assert np.all(np.diff(levels(batch["res_same"][s])) == speed)
            assert np.all(np.diff(levels(batch["res_diff"][s])) == -speed)
    planner = MCPNetPlanner(MCPNetConfig(clip=ClipConfig(frames=4, speeds=(2,)), gap=3, mip_negative="reverse",
                                         cip_speed="same"))
    p = planner.draw(np.random.default_rng(0), np.random.default_rng(1), 0, 1, 40, (32, 48))
    idx = p["res_diff.idx"]
    assert np.all(np.diff(idx[:4]) == -2) and np.all(idx[4:] - idx[:4] == 6)  # backwards, each pair 3·2 apart
    with pytest.raises(ValueError, match="needs cip_speed=same"):
        MCPNetConfig(mip_negative="reverse")
    with pytest.raises(ValueError, match="mip_negative='back'"):
        MCPNetConfig(mip_negative="back", cip_speed="same")
