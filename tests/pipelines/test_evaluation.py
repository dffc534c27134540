"""Evaluation: clip starts and crops, exact views on frame-index videos, DALI vs NumPy parity,
per-video averaging, top-k with ties and clipped k, linear probe and fine-tuning loops."""
import numpy as np
import pytest
import torch

from motionssl.models.backbones import create_backbone
from motionssl.models.evaluation import (
    FineTuneClassifier,
    average_views,
    distinct_views,
    fine_tune,
    rank_gallery,
    retrieval_accuracy,
    topk_accuracy,
    train_linear_probe,
    video_features,
    video_probabilities,
)
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.evaluation import clip_starts, make_eval_iterator, reference_batch, spatial_crops
from motionssl.pipelines.index import load_index
from motionssl.pipelines.video_io import write_video
from tests.fixtures import decode_ids, write_coloured_videos, write_id_videos

LENGTHS = [40, 23, 5, 43, 10]  # 5 frames: shorter than a clip, padded
T, STRIDE, CLIPS = 4, 2, 3  # span (T-1)·STRIDE + 1 = 7
PLAIN = {"mean": (0, 0, 0), "std": (1, 1, 1)}  # keeps pixel levels, so frame ids can be read back


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    return load_index(write_id_videos(str(tmp_path_factory.mktemp("ids")), LENGTHS, height=32, width=48))


@pytest.fixture(scope="module")
def coloured_ids(tmp_path_factory):
    """The same lengths as coloured, asymmetric videos, landscape and portrait, at non-square sizes NVDEC reads
    (its VP9 minimum is 128×128), each with a short side of 128: a 128×128 view is cut, not resized."""
    shapes = [(128, 200), (176, 128), (128, 232), (232, 128), (128, 170)]
    return load_index(write_coloured_videos(str(tmp_path_factory.mktemp("coloured")), shapes, num_frames=LENGTHS))


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """Two lossless videos of moving smooth colour patterns (resizing them is not trivial)."""
    folder = tmp_path_factory.mktemp("textured")
    y, x = np.mgrid[0:40, 0:56].astype(np.float64)
    lines = []
    for v, n in enumerate((18, 11)):
        t = np.arange(n)[:, None, None, None]
        phase = np.array([0.0, 2.0, 4.0]) + v
        frames = 127.5 + 120 * np.sin(0.21 * x[None, ..., None] + 0.13 * y[None, ..., None] * (1 + v) + 0.4 * t + phase)
        write_video(str(folder / f"t{v}.webm"), frames.astype(np.uint8), codec="vp9", lossless=True, gop=8)
        lines.append(f"t{v}.webm {v}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return load_index(str(folder / "list.txt"))


def pixel_views_of(loader):
    """All rows of one pass: list of (video, clip_id, frames as (T, H, W, 3) levels, label)."""
    return [(int(video), int(cid), np.rint(clip.float().permute(1, 2, 3, 0).cpu().numpy() * 255.0), int(label))
            for batch in loader
            for clip, video, cid, label in zip(batch["clips"], batch["index"], batch["clip_id"], batch["label"])]


def views_of(loader):
    """All rows of one pass: list of (video, clip_id, frame ids, label)."""
    rows = []
    for batch in loader:
        for clip, video, cid, label in zip(batch["clips"], batch["index"], batch["clip_id"], batch["label"]):
            frames = decode_ids(clip.float().permute(1, 2, 3, 0).cpu().numpy() * 255.0)
            rows.append((int(video), int(cid), tuple(frames), int(label)))
    return rows


# --- geometry ----------------------------------------------------------------------------------
def test_clip_starts_are_uniform_and_exact():
    # 10 clips of 16 frames in 100: room 84, start_k = floor(84·k / 9).
    assert clip_starts(100, 16, 10).tolist() == [0, 9, 18, 28, 37, 46, 56, 65, 74, 84]
    assert clip_starts(100, 16, 1).tolist() == [42]  # one clip: the centre
    assert clip_starts(16, 16, 3).tolist() == [0, 0, 0]  # exactly one span
    assert clip_starts(10, 16, 4).tolist() == [0, 0, 0, 0]  # shorter than a clip: padded
    with pytest.raises(ValueError, match="num_clips"):
        clip_starts(100, 16, 0)


def test_spatial_crops_slide_along_the_free_axis():
    # 32×48 frame, square output: a 32×32 crop at x = 0, 8, 16.
    np.testing.assert_allclose(spatial_crops((32, 48), (16, 16), 3),
                               [[0, 0, 32, 32], [0, 8, 32, 40], [0, 16, 32, 48]])
    np.testing.assert_allclose(spatial_crops((48, 32), (16, 16), 3),
                               [[0, 0, 32, 32], [8, 0, 40, 32], [16, 0, 48, 32]])
    np.testing.assert_allclose(spatial_crops((32, 48), (16, 16), 1), [[0, 8, 32, 40]])
    # A frame of the output's aspect: three identical crops.
    assert (spatial_crops((30, 40), (15, 20), 3) == [[0, 0, 30, 40]] * 3).all()
    with pytest.raises(ValueError, match=r"num_crops=2; choose one of \(1, 3\)"):
        spatial_crops((32, 48), (16, 16), 2)


# --- the pipeline ------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder,device", [("pyav", "cpu"), ("dali", "cpu"),
                                            pytest.param("dali", "gpu", marks=pytest.mark.gpu)])
def test_views_are_the_uniform_clips_and_every_view_once(coloured_ids, decoder, device):
    """Each view is its crop (left / centre / right, or top / centre / bottom) of its clip's frames, and the three
    crops of a clip differ: the videos are coloured, asymmetric and not of the output's aspect."""
    size = (128, 128)
    loader = make_eval_iterator(coloured_ids, frames=T, size=size, stride=STRIDE, num_clips=CLIPS, num_crops=3,
                                batch_size=4, device=device, decoder=decoder, num_workers=0, **PLAIN)
    rows = pixel_views_of(loader)
    # 15 (video, clip) samples in batches of 4: one padded repeat of 3 crops.
    assert len(loader) == 4 and len(rows) == 16 * 3
    expected = {}
    for v, n in enumerate(LENGTHS):
        for k, start in enumerate(clip_starts(n, (T - 1) * STRIDE + 1, CLIPS)):
            for crop in range(3):
                expected[(v, 3 * k + crop)] = tuple(int(i) for i in np.minimum(start + STRIDE * np.arange(T), n - 1))
    assert expected[(1, 3)] == (8, 10, 12, 14) and expected[(2, 8)] == (0, 2, 4, 4)  # 23 frames: starts 0, 8, 16
    frames = [read_window(path, 0, n) for path, n in zip(coloured_ids.paths, LENGTHS)]  # PyAV's decode
    # NVDEC converts YUV to RGB its own way (a few levels off); another crop or frame is tens of levels off.
    tolerance = 4.0 if device == "gpu" else 1.0
    got = {}
    for video, cid, clip, label in rows:
        assert label == video % 2
        assert np.array_equal(got.setdefault((video, cid), clip), clip)  # a repeat is the same view
        ids = list(expected[(video, cid)])
        diffs = [np.abs(clip - frames[video][ids, y0:y1, x0:x1]).mean()
                 for y0, x0, y1, x1 in spatial_crops(frames[video].shape[1:3], size, 3).astype(int)]
        crop = cid % 3
        assert diffs[crop] < tolerance, (video, cid, diffs)
        assert min(d for c, d in enumerate(diffs) if c != crop) > 3 * tolerance, (video, cid, diffs)
    assert sorted(got) == sorted(expected)
    again = pixel_views_of(loader)  # deterministic: a second pass is identical
    assert all(a[:2] == b[:2] and np.array_equal(a[2], b[2]) for a, b in zip(again, rows))


def test_shards_cover_every_view(ids):
    opts = dict(frames=T, size=(16, 16), stride=STRIDE, num_clips=CLIPS, batch_size=4, num_workers=0, **PLAIN)
    whole = {(v, c) for v, c, _, _ in views_of(make_eval_iterator(ids, **opts))}
    shards = [views_of(make_eval_iterator(ids, shard_id=r, num_shards=2, **opts)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])  # ranks stay in step
    assert {(v, c) for rows in shards for v, c, _, _ in rows} == whole and len(whole) == len(LENGTHS) * CLIPS


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_dali_graph_matches_numpy_reference(textured, device):
    mean, std = (0.45, 0.4, 0.35), (0.22, 0.25, 0.2)
    loader = make_eval_iterator(textured, frames=5, size=(24, 32), mean=mean, std=std, stride=2, num_clips=4,
                                num_crops=3, batch_size=3, device=device, decoder="pyav", num_workers=0)
    batches = list(loader)
    level = 1.0 / 255 / min(std)  # one uint8 step after normalisation
    for iteration, got in enumerate(batches):
        want = reference_batch(loader, iteration)
        assert got["clips"].shape == want["clips"].shape == (9, 3, 5, 24, 32)
        diff = (got["clips"].float().cpu() - want["clips"]).abs()
        assert diff.max() < 1.5 * level and diff.mean() < 0.1 * level  # uint8 rounding of the resize only
        for key in ("index", "label", "clip_id"):
            assert got[key].device == got["clips"].device  # every key on the pipeline's device
            assert torch.equal(got[key].cpu(), want[key]), key
    assert batches[0]["clips"].dtype == (torch.float16 if device == "gpu" else torch.float32)
    # 3:4 output on 40×56 frames: a 40×53.3 crop slides along x; the crops differ.
    assert (batches[0]["clips"][0] - batches[0]["clips"][2]).abs().mean() > 0.1


def test_bad_options_are_named(ids):
    with pytest.raises(ValueError, match="num_crops"):
        make_eval_iterator(ids, num_crops=5)
    with pytest.raises(ValueError, match="device"):
        make_eval_iterator(ids, device="tpu")
    with pytest.raises(ValueError, match="decoder"):
        make_eval_iterator(ids, decoder="ffmpeg")


# --- averaging ---------------------------------------------------------------------------------
def test_ten_clips_three_crops_average_exactly_and_padding_is_dropped():
    gen = torch.Generator().manual_seed(0)
    videos, views, dim = 3, 30, 5
    values = torch.randint(-50, 50, (videos, views, dim), generator=gen).double()
    video = torch.arange(videos).repeat_interleave(views)
    view = torch.arange(views).repeat(videos)
    flat = values.reshape(-1, dim)
    # Shuffle the rows and append padded repeats holding other numbers: only first occurrences count.
    order = torch.randperm(len(flat), generator=gen)
    rows = torch.cat([flat[order], torch.full((4, dim), 1e6, dtype=torch.float64)])
    video_ids = torch.cat([video[order], video[order[:4]]])
    view_ids = torch.cat([view[order], view[order[:4]]])
    means, counts = average_views(rows, video_ids, view_ids, videos)
    assert counts.tolist() == [30, 30, 30]
    assert torch.equal(means, values.sum(1) / 30)  # integer sums: exact
    assert torch.equal(distinct_views(video_ids, view_ids), torch.arange(len(flat)))
    feats = video_features(rows.float(), video_ids, view_ids, videos)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(videos))
    torch.testing.assert_close(feats, torch.nn.functional.normalize(values.mean(1).float(), dim=1))


def test_probabilities_are_averaged_not_logits():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])  # softmax: [.5, .5] and ≈ [1, 0]
    probs = video_probabilities(logits, torch.tensor([0, 0]), torch.tensor([0, 1]), 1)
    torch.testing.assert_close(probs, torch.softmax(logits, 1).mean(0, keepdim=True))


def test_a_video_without_views_is_an_error():
    with pytest.raises(ValueError, match=r"no views of videos \[1\]"):
        average_views(torch.ones(2, 3), torch.tensor([0, 2]), torch.tensor([0, 0]), 3)


# --- metrics -----------------------------------------------------------------------------------
def test_retrieval_top_k_ties_and_clipped_k():
    gallery = torch.tensor([[5.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])  # g0 and g2 tie for every query
    gallery_labels = torch.tensor([0, 1, 2, 0])
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    query_labels = torch.tensor([2, 0, 1])
    assert rank_gallery(queries, gallery, 4).tolist() == [[0, 2, 1, 3], [1, 0, 2, 3], [0, 2, 3, 1]]
    result = retrieval_accuracy(queries, query_labels, gallery, gallery_labels, ks=(1, 2, 5))
    # q0: g0 (label 0) before its tie g2 (label 2) → miss at 1, hit at 2; q1: hit at 2 (g0);
    # q2: its class sits last → hit only at 4 = the whole gallery.
    assert result["top1"] == 0.0 and result["top2"] == pytest.approx(2 / 3) and result["top5"] == 1.0
    assert result["clipped_k"] == {"top5": 4}
    assert (result["num_queries"], result["num_gallery"]) == (3, 4)


def test_classification_top_k_ties_and_clipped_k():
    scores = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    result = topk_accuracy(scores, torch.tensor([1, 0]), ks=(1, 2, 5))
    # Row 0: classes 0 and 1 tie, 0 ranks first → miss at 1, hit at 2. Row 1: class 0 is last.
    assert (result["top1"], result["top2"], result["top5"]) == (0.0, 0.5, 1.0)
    assert result["clipped_k"] == {"top5": 3}


# --- training loops ----------------------------------------------------------------------------
def test_linear_probe_learns_and_is_seeded():
    gen = torch.Generator().manual_seed(1)
    centres = 40 * torch.randn(3, 16, generator=gen)
    labels = torch.arange(3).repeat(30)
    feats = 1000 + centres[labels] + torch.randn(90, 16, generator=gen)  # far from zero: standardisation matters
    state = torch.get_rng_state()
    probe, losses = train_linear_probe(feats, labels, 3, epochs=20, lr=0.1, batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert (probe(feats).argmax(1) == labels).all() and losses[-1] < losses[0]
    again, _ = train_linear_probe(feats, labels, 3, epochs=20, lr=0.1, batch_size=16, seed=3)
    assert torch.equal(probe.fc.weight, again.fc.weight)
    with pytest.raises(ValueError, match="labels"):
        train_linear_probe(feats, labels - 1, 3, epochs=1)


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adamw"])
def test_fine_tune_trains_the_whole_network(optimizer):
    torch.manual_seed(0)
    model = FineTuneClassifier(create_backbone("tiny", widths=(8, 16)), num_classes=2, hidden_dim=12)
    assert [m.out_features for m in model.head if isinstance(m, torch.nn.Linear)] == [12, 2]
    clips = torch.randn(8, 3, 4, 16, 16)
    batches = [{"clips": clips[:4], "label": torch.tensor([0, 1, 0, 1])},
               {"clips": clips[4:], "label": torch.tensor([1, 0, 1, 0])}]
    before = [p.detach().clone() for p in model.backbone.parameters()]
    seen = []
    losses = fine_tune(model, batches, epochs=8, optimizer=optimizer, lr={"sgd": 0.5, "lars": 5.0, "adamw": 0.01}[optimizer],
                       weight_decay=0.0, on_epoch=lambda e, loss: seen.append(e))
    assert seen == list(range(8)) and losses[-1] < losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert model(clips).shape == (8, 2)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose one of"):
        fine_tune(model, batches, epochs=1, optimizer="rmsprop")
