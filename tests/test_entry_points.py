"""train.py and eval.py as a newcomer uses them: one vocabulary for data and splits, no silent nonsense.

The README's worked example — a dataset folder with split lists, trained on one split and
evaluated on another — runs here end to end on generated data.
"""
import json
import logging
import os
import subprocess
import sys

import pytest

from motionssl import evaluate, train
from motionssl.data import resolve_data
from motionssl.pipelines import demo, load_index
from motionssl.training import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["device=cpu", "batch_size=4", "log_every=1", "loader.num_workers=0", "pipeline_config.clip.frames=4",
         "pipeline_config.clip.augment.size=[32,32]"]
EVAL = ["--num-clips", "2", "--num-workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A prepared dataset folder: classes.txt, train.txt, test.txt, all.txt and videos/."""
    return demo.generate(str(tmp_path_factory.mktemp("data") / "demo"), per_class=3, test_per_class=1, workers=1)


@pytest.mark.slow
def test_the_readme_worked_example(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # eval.py writes its results to runs/eval-<run>/ in the current folder
    run = str(tmp_path / "runs" / "demo")
    train.main(["--pipeline", "simclr", "--data", dataset, "--split", "train", "--test-split", "test", "--out", run,
                "steps=4"] + SMALL)
    printed = capsys.readouterr().out
    assert "retrieval: 16 videos of" in printed and "[train], 8 test videos of" in printed and "[test]" in printed
    record = evaluate.main(["retrieval", "--checkpoint", run] + EVAL)  # the run's own data and splits
    assert "data (the checkpoint's run): 16 videos of" in capsys.readouterr().out
    assert record["counts"]["train_videos"] == 16 and record["counts"]["test_videos"] == 8
    assert record["json"] == os.path.join("runs", "eval-demo", "ckpt-00000004.retrieval.json")
    linear = evaluate.main(["linear", "--checkpoint", run, "--data", dataset, "--split", "train", "--test-split",
                            "test", "--epochs", "2"] + EVAL)
    assert linear["data"]["from"] == "the arguments" and linear["counts"]["num_classes"] == 8


def test_both_entry_points_name_data_and_splits_the_same_way():
    helps = [subprocess.run([sys.executable, script, *args, "--help"], cwd=ROOT, capture_output=True, text=True).stdout
             for script, args in (("train.py", []), ("eval.py", ["retrieval"]))]
    for flag in ("--data", "--split", "--test-data", "--test-split"):
        assert all(flag in text for text in helps), flag


def test_retrieval_on_the_training_videos_is_an_error_not_a_table(dataset, tmp_path):
    listed = os.path.join(dataset, "train.txt")
    with pytest.raises(SystemExit, match=r"train.txt is a file list, so split='test' cannot apply"):
        train.main(["--pipeline", "simclr", "--data", listed, "--test-split", "test", "--out", str(tmp_path / "a"),
                    "max_steps=1"] + SMALL)
    with pytest.raises(SystemExit, match=r"test videos would be the training videos"):
        train.main(["--pipeline", "simclr", "--data", listed, "--test-data", listed, "--out", str(tmp_path / "b"),
                    "max_steps=1"] + SMALL)
    with pytest.raises(SystemExit) as error:
        evaluate.main(["retrieval", "--random-init", "--data", dataset, "--split", "train", "--test-split", "train"]
                      + EVAL)
    assert error.value.code == 2


def test_a_prepared_folder_without_a_split_and_its_videos_folder(dataset, tmp_path, caplog):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "classes.txt").write_text(open(os.path.join(dataset, "classes.txt")).read())
    (bare / "train.txt").write_text("")
    with pytest.raises(SystemExit, match=r"^train.py: error: .*bare: a prepared dataset needs a split; choose one of"):
        train.main(["--pipeline", "simclr", "--data", str(bare), "--out", str(tmp_path / "c")] + SMALL)
    with caplog.at_level(logging.WARNING):
        index = load_index(os.path.join(dataset, "videos"))
    assert "is the videos folder of the prepared dataset" in caplog.text and "(all, test, train)" in caplog.text
    classes = open(os.path.join(dataset, "classes.txt")).read().split()
    assert index.classes == classes  # its classes.txt order, not alphabetical
    first = next(i for i, p in enumerate(index.paths) if "/move_up/" in p)
    assert index.labels[first] == classes.index("move_up") != sorted(classes).index("move_up")


@pytest.mark.slow
def test_a_run_sized_in_steps_sizes_its_schedule(dataset, tmp_path, capsys):
    out = str(tmp_path / "steps")
    train.main(["--pipeline", "simclr", "--data", dataset, "--split", "train", "--out", out, "steps=6",
                "optim.warmup_epochs=0"] + SMALL)
    assert "6 steps (steps=6: 1.5 epochs of 4)" in capsys.readouterr().out
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == list(range(1, 7)) and rows[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert load_checkpoint(out)["step"] == 6


def test_eval_defaults_follow_the_checkpoint_and_say_so(dataset, tmp_path, monkeypatch, capsys):
    from tests.test_eval_cli import save_checkpoint

    elsewhere = str(tmp_path / "elsewhere.pt")
    save_checkpoint(elsewhere, {"pipeline": "simclr", "backbone": "tiny", "backbone_kwargs": {}, "data": dataset,
                                "split": "train", "test_split": None,
                                "pipeline_config": {"clip": {"frames": 4, "augment": {
                                    "size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}}}})
    with pytest.raises(SystemExit):
        evaluate.main(["retrieval", "--checkpoint", elsewhere] + EVAL)
    err = capsys.readouterr().err
    assert f"trained on {dataset} without test videos: give --test-split" in err and "Traceback" not in err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate.demo, "generate", lambda: dataset)
    config = tmp_path / "run.yaml"
    config.write_text("pipeline_config: {clip: {frames: 4, augment: {size: [24, 24], mean: [0.5, 0.5, 0.5]}}}\n")
    record = evaluate.main(["retrieval", "--random-init", "--config", str(config)] + EVAL)
    assert record["views"]["frames"] == 4 and tuple(record["views"]["size"]) == (24, 24)
    assert tuple(record["views"]["mean"]) == (0.5, 0.5, 0.5)
    assert record["json"] == os.path.join("runs", "eval-random-init-tiny", "random-init-tiny.retrieval.json")
    assert "data (the demo data)" in capsys.readouterr().out


def test_clips_per_second_is_steady_across_epochs(monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(clock))
    rate = train.ClipRate(window=5)
    for _ in range(20):
        rate.step(8)  # 8 clips a second, whatever the epoch boundaries
    assert rate.rate == pytest.approx(8.0)
    for _ in range(10):  # a batch arrives 1 s after the step ended, the step then takes 1 s: half the time waiting
        rate.arrived()
        rate.step(8)
    assert rate.wait_share == pytest.approx(0.5) and rate.rate == pytest.approx(4.0)


def test_one_rule_chooses_the_videos_of_train_and_eval():
    default = resolve_data()
    assert default.demo and (default.split, default.test_split) == ("train", "test")
    given = resolve_data("d", "train_split1", None, "test_split1")
    assert (given.data, given.split, given.test_split, given.source) == ("d", "train_split1", "test_split1",
                                                                       "the arguments")
    run = {"data": "k400", "split": "train", "test_data": None, "test_split": "val"}
    saved = resolve_data(split="train_small", saved=run, need_test=True)
    assert (saved.data, saved.split, saved.test_split) == ("k400", "train_small", "val")
    queries = resolve_data(test_data="other.txt", saved=run)
    assert (queries.data, queries.split, queries.test_data, queries.test_split) == ("k400", "train", "other.txt", None)
    with pytest.raises(ValueError, match="give the training videos"):
        resolve_data(test_data="other.txt")
    with pytest.raises(ValueError, match="give --data too"):
        resolve_data(split="train_split1")
    with pytest.raises(ValueError, match="without test videos"):
        resolve_data(saved=dict(run, test_split=None), need_test=True)
    with pytest.raises(ValueError, match="no test videos"):
        resolve_data("d", "train", need_test=True)
    assert not resolve_data("d", "train").has_test  # training alone needs none
