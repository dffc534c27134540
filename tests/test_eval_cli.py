"""eval.py: checkpoints per the motionssl/1 contract, clear errors for bad ones, and each
sub-command end to end on a small demo dataset (tiny backbone, 4-frame 32×32 clips)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from motionssl import evaluate
from motionssl.models.methods import create_method
from motionssl.pipelines import demo, load_index
from motionssl.pipelines.ops.config import AugmentConfig
from motionssl.protocols import run_retrieval
from motionssl.training import CheckpointError, load_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = {"frames": 4, "speeds": [1], "augment": {"size": [32, 32], "mean": [0.45, 0.45, 0.45],
                                                "std": [0.25, 0.25, 0.25], "flip_prob": 0.0}}
SMALL = ["--num-clips", "2", "--num-workers", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return demo.generate(str(tmp_path_factory.mktemp("data") / "demo"), per_class=3, test_per_class=1)


def save_checkpoint(path, config=None, model=None, fmt="motionssl/1"):
    torch.manual_seed(0)
    method = create_method("simclr", "tiny", proj_hidden_dim=32, proj_dim=16)
    config = config or {"pipeline": "simclr", "backbone": "tiny", "backbone_kwargs": {},
                        "pipeline_config": {"clip": CLIP}}
    torch.save({"format": fmt, "config": config, "model": method.state_dict() if model is None else model,
                "optimizer": {}, "scheduler": {}, "step": 10, "epoch": 1, "iterator": {}, "rng": {}}, path)
    return method


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run") / "ckpt-00000010.pt")
    return path, save_checkpoint(path)


def test_load_backbone_takes_the_backbone_weights(checkpoint):
    path, method = checkpoint
    backbone, config = load_backbone(path)
    assert config["backbone"] == "tiny" and config["pipeline_config"]["clip"]["frames"] == 4
    want = method.backbone.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in backbone.state_dict().items())


def _base_config():
    return {"pipeline": "simclr", "backbone": "tiny", "backbone_kwargs": {}, "pipeline_config": {"clip": CLIP}}


@pytest.mark.parametrize("case,match", [
    ("corrupt", "cannot be read .* corrupt"),
    ("format", "not a motionssl/1 checkpoint"),
    ("widths", r"do not match backbone 'tiny' with \{'widths': \[8, 16\]\}: unexpected keys \['trunk.10.bias'"),
    ("name", r"cannot build backbone 'r4d' .*choose one of \['r2plus1d_18'"),
    ("config", r"lacks \['pipeline_config'\]"),
    ("no_backbone", r"no 'backbone.\*' entries \(its keys start \['head."),
    ("missing", r"missing keys \['trunk.0.weight'\]"),
])
def test_bad_checkpoints_name_the_mismatch(tmp_path, case, match):
    path = str(tmp_path / "bad.pt")
    config = _base_config()
    if case == "corrupt":
        with open(path, "wb") as f:
            f.write(b"not a checkpoint" * 8)
    elif case == "format":
        save_checkpoint(path, fmt="something/2")
    elif case == "widths":
        save_checkpoint(path, dict(config, backbone_kwargs={"widths": [8, 16]}))
    elif case == "name":
        save_checkpoint(path, dict(config, backbone="r4d"))
    elif case == "config":
        save_checkpoint(path, {k: v for k, v in config.items() if k != "pipeline_config"})
    else:
        state = create_method("simclr", "tiny", proj_hidden_dim=32, proj_dim=16).state_dict()
        drop = "backbone." if case == "no_backbone" else "backbone.trunk.0.weight"
        save_checkpoint(path, config, {k: v for k, v in state.items() if not k.startswith(drop)})
    with pytest.raises(CheckpointError, match=match):
        load_backbone(path)


def test_run_retrieval_contract(demo_root, checkpoint):
    backbone, _ = load_backbone(checkpoint[0])
    backbone.train()
    train, test = load_index(demo_root, split="train"), load_index(demo_root, split="test")
    result = run_retrieval(backbone, train, test, frames=4, size=(32, 32), mean=CLIP["augment"]["mean"],
                                    std=CLIP["augment"]["std"], num_clips=2, num_workers=1)
    assert (result["num_queries"], result["num_gallery"]) == (8, 16)
    assert all(0.0 <= result[f"top{k}"] <= 1.0 for k in (1, 5, 10, 20, 50))
    assert result["top20"] == result["top50"] == 1.0 and result["clipped_k"] == {"top20": 16, "top50": 16}
    assert backbone.training  # the caller's mode is restored


@pytest.mark.slow
def test_cli_retrieval_writes_table_json_and_figure(demo_root, checkpoint, tmp_path):
    path = checkpoint[0]
    run = subprocess.run([sys.executable, "eval.py", "retrieval", "--checkpoint", path, "--data", demo_root,
                          "--split", "train", "--test-split", "test", "--show", "2", "--out", str(tmp_path), *SMALL],
                         cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "top-1" in run.stdout and "top-50" in run.stdout
    stem = os.path.join(tmp_path, "ckpt-00000010")
    with open(stem + ".retrieval.json") as f:
        record = json.load(f)
    assert record["checkpoint"] == path and not record["random_init"]
    assert record["views"]["frames"] == 4 and record["views"]["size"] == [32, 32]  # from the checkpoint
    assert record["counts"] == {"train_videos": 16, "test_videos": 8, "train_clips": 32, "test_clips": 16}
    assert set(record["metrics"]) >= {"top1", "top5", "top10", "top20", "top50", "num_queries", "num_gallery"}
    assert os.path.getsize(stem + ".retrieval.png") > 0


@pytest.mark.slow
def test_cli_linear_and_finetune_on_the_demo_by_default(demo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluate.demo, "generate", lambda: demo_root)  # no data arguments → the demo data
    out = str(tmp_path / "out")
    common = ["--random-init", "--backbone", "tiny", "--frames", "4", "--size", "32", "--out", out, *SMALL]
    linear = evaluate.main(["linear", *common, "--epochs", "3", "--test-crops", "3"])
    assert linear["counts"] == {"train_videos": 16, "test_videos": 8, "train_clips": 32, "test_clips": 48,
                                "num_classes": 8}
    assert linear["data"]["data"] == demo_root and linear["data"]["from"] == "the demo data"
    assert os.path.exists(os.path.join(out, "random-init-tiny.linear.json"))
    finetune = evaluate.main(["finetune", *common, "--epochs", "1", "--batch-size", "8"])
    assert finetune["counts"]["test_clips"] == 8 * 2 * 3 and finetune["counts"]["train_clips_per_epoch"] == 16
    assert {"top1", "top5", "final_train_loss"} <= set(finetune["metrics"])
    printed = capsys.readouterr().out
    assert "linear:" in printed and "finetune:" in printed and "epoch 1/1" in printed


def test_cli_errors_are_one_clear_line(tmp_path, checkpoint, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["retrieval", "--checkpoint", str(corrupt), "--device", "cpu"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("eval.py retrieval: error: checkpoint") and "Traceback" not in err
    no_frames = str(tmp_path / "no_frames.pt")
    save_checkpoint(no_frames, dict(_base_config(), pipeline_config={"clip": {"augment": {"size": [32, 32]}}}))
    with pytest.raises(SystemExit):
        evaluate.main(["retrieval", "--checkpoint", no_frames, "--device", "cpu"])
    assert "pipeline_config.clip lacks ['frames', 'augment.mean', 'augment.std']" in capsys.readouterr().err
    for argv, message in ((["linear"], "give --checkpoint"),
                          (["retrieval", "--checkpoint", checkpoint[0], "--backbone", "tiny"], "--backbone chooses")):
        with pytest.raises(SystemExit):
            evaluate.main(argv + ["--device", "cpu"])
        assert message in capsys.readouterr().err


def test_a_network_without_checkpoint_takes_its_datas_clip_settings():
    """No checkpoint, no --config: the demo data get the demo configuration's clips (no colour jitter, no
    flip: left and right are classes), other data the papers' fine-tuning crop and flip without jitter —
    never AugmentConfig's self-supervised defaults (jitter 0.8, grayscale 0.2), under which a network
    trained from scratch on the demo stayed at chance."""
    from motionssl.configs import shipped
    from motionssl.models.methods import METHODS
    from motionssl.data import resolve_data

    frames, augment, where = evaluate.data_clip_settings(resolve_data())
    assert "demo" in where and frames == 8
    assert augment["jitter_prob"] == augment["grayscale_prob"] == augment["flip_prob"] == 0.0
    demo_clips = {m.demo_config: evaluate.own_clip_settings(m.demo_config) for m in METHODS.values() if m.demo_config}
    assert len(demo_clips) >= 3 and all(c == (frames, augment) for c in demo_clips.values())  # one for all
    assert evaluate.DEMO_CONFIG in shipped()

    frames, augment, where = evaluate.data_clip_settings(resolve_data("my/videos.txt", test_data="my/test.txt",
                                                                      saved={"data": "x"}))
    assert frames == 16 and tuple(augment["size"]) == (112, 112)
    assert augment["jitter_prob"] == augment["grayscale_prob"] == 0.0 and augment["flip_prob"] == 0.5


def test_labels_keeps_a_fixed_share_of_every_class_per_seed(demo_root, tmp_path, monkeypatch, capsys):
    """--labels 0.5: half of each class's training videos (at least one), the same for a seed, another for another
    seed; the test videos stay all; the results get their own name."""
    index = load_index(demo_root, split="train")
    counts = {c: int((index.labels == c).sum()) for c in set(index.labels.tolist())}
    for fraction in (0.5, 0.01):
        share = evaluate.labelled_share(index, fraction, seed=3)
        got = {c: int((share.labels == c).sum()) for c in counts}
        assert got == {c: max(1, round(fraction * n)) for c, n in counts.items()}
        assert share.paths == evaluate.labelled_share(index, fraction, seed=3).paths
    assert evaluate.labelled_share(index, 0.5, 3).paths != evaluate.labelled_share(index, 0.5, 4).paths
    assert evaluate.labelled_share(index, 1.0, 3).paths == index.paths
    monkeypatch.setattr(evaluate.demo, "generate", lambda: demo_root)
    out = str(tmp_path / "out")
    result = evaluate.main(["linear", "--random-init", "--backbone", "tiny", "--frames", "4", "--size", "32",
                            "--out", out, *SMALL, "--epochs", "2", "--labels", "0.5", "--seed", "3"])
    assert result["counts"]["train_videos"] == sum(max(1, round(0.5 * n)) for n in counts.values())
    assert result["counts"]["test_videos"] == 8 and result["data"]["labelled_videos"] == result["counts"]["train_videos"]
    assert os.path.exists(os.path.join(out, "random-init-tiny-labels0.5.linear.json"))
    assert "labels: 8 of 16 training videos" in capsys.readouterr().out
    for bad in ("0", "1.5", "nan"):
        with pytest.raises(SystemExit):
            evaluate.parse_args(["finetune", "--random-init", "--labels", bad])
        assert "--labels" in capsys.readouterr().err


def test_results_folders_with_and_without_labels():
    """--labels only adds to the results' name: the folder stays the run's (or the random network's)."""
    from types import SimpleNamespace

    def stem(state, **options):
        args = SimpleNamespace(out=None, random_init=False, task="linear", show=0, **options)
        return evaluate.results_stem(args, state, "tiny")

    assert stem(None, labels=1.0).replace(os.sep, "/") == "runs/eval-random-init-tiny/random-init-tiny"
    assert stem(None).replace(os.sep, "/") == "runs/eval-random-init-tiny/random-init-tiny"  # retrieval: no --labels
    run = {"path": os.path.join("/data", "runs", "moquad-1", "checkpoints", "ckpt-00000010.pt")}
    assert stem(run, labels=0.1).replace(os.sep, "/") == "runs/eval-moquad-1/ckpt-00000010-labels0.1"
    assert stem(run, labels=1.0).replace(os.sep, "/") == "runs/eval-moquad-1/ckpt-00000010"
    assert stem(run, labels=1.0, augment="checkpoint").replace(os.sep, "/") == "runs/eval-moquad-1/ckpt-00000010"
    assert stem(run, labels=0.1, augment="papers").replace(os.sep, "/") == \
        "runs/eval-moquad-1/ckpt-00000010-labels0.1-papersaug"


def test_finetune_augment_papers_drops_colour_jitter_but_keeps_the_networks_clips(demo_root, checkpoint, tmp_path,
                                                                                 monkeypatch, capsys):
    """--augment papers: the training clips lose the checkpoint's colour jitter and grayscale and take the
    papers' crop and flip, at the checkpoint's clip size and normalisation; the choice is recorded and printed,
    and its results never replace those of the checkpoint's augmentation."""
    seen = []

    def fake_finetune(backbone, train, test, views, augment, *args, **kwargs):
        seen.append((views, augment))
        return {"metrics": {"top1": 0.5, "top5": 1.0}, "counts": {"train_videos": len(train), "test_videos": len(test),
                                                                 "test_clips": 2 * len(test)}}

    monkeypatch.setattr(evaluate.protocols, "finetune", fake_finetune)
    out = str(tmp_path / "out")
    common = ["finetune", "--checkpoint", checkpoint[0], "--data", demo_root, "--split", "train", "--test-split",
              "test", "--out", out, *SMALL]
    default = evaluate.main(common)
    assert "augmentation of the checkpoint" in capsys.readouterr().out
    papers = evaluate.main(common + ["--augment", "papers"])
    printed = capsys.readouterr().out
    assert "augmentation of the checkpoint" not in printed and "papers" in printed
    (views, own), (papers_views, theirs) = seen
    assert views == papers_views  # the test clips are the same
    effective = AugmentConfig(**own)  # the checkpoint's, with AugmentConfig's defaults for what it leaves out
    assert (effective.jitter_prob, effective.grayscale_prob, effective.flip_prob) == (0.8, 0.2, 0.0)
    assert theirs["jitter_prob"] == theirs["grayscale_prob"] == 0.0
    assert (theirs["flip_prob"], tuple(theirs["crop_area"])) == (0.5, (0.3, 1.0))  # AugmentConfig's crop and flip
    for key in ("size", "mean", "std"):  # the network's clips and normalisation
        assert list(theirs[key]) == list(own[key]) == CLIP["augment"][key]
    assert default["options"]["augment"] == "checkpoint" and papers["options"]["augment"] == "papers"
    assert papers["train_augment"] == theirs and default["train_augment"] == own
    assert papers["json"] != default["json"] and os.path.exists(default["json"]) and os.path.exists(papers["json"])
    with open(default["json"]) as f:
        assert json.load(f)["options"]["augment"] == "checkpoint"  # not overwritten by the papers' run
    evaluate.main(common + ["--augment", "papers", "--flip-prob", "0"])
    assert seen[-1][1]["flip_prob"] == 0.0 and seen[-1][1]["jitter_prob"] == 0.0


def test_a_config_with_a_mistyped_key_is_refused_by_name(tmp_path):
    """eval.py --config reads only the clip section, but a key no training config has is still an error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipline_config: {clip: {frames: 8}}\n")
    with pytest.raises(Exception, match="unknown key 'pipline_config' in .*bad.yaml"):
        evaluate.own_clip_settings(str(bad))
    good = tmp_path / "good.yaml"
    good.write_text("appearance_warmup: 0.2\npipeline_config: {clip: {frames: 8}}\n")  # an older MoQuad file
    assert evaluate.own_clip_settings(str(good))[0] == 8
