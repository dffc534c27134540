"""The fidelity benchmark: its data keep appearance from giving the class away; its rows are valid runs."""
import json
import os

import numpy as np
import pytest

from benchmarks import fidelity, fidelity_data
from benchmarks.fidelity_data import CLASSES, in_train, render, scene_spec
from motionssl import evaluate as eval_cli
from motionssl import train as train_cli
from motionssl.models.training import load_config
from motionssl.pipelines.index import load_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("scenes", [2, 4, 16])
def test_split_puts_one_of_each_mirrored_pair_in_train_and_each_class_in_train_for_half_the_scenes(scenes):
    for s in range(scenes):
        train = [c for c in range(len(CLASSES)) if in_train(s, c)]
        assert sorted(c // 2 for c in train) == list(range(len(CLASSES) // 2))  # one per mirrored pair
    for c in range(len(CLASSES)):
        assert sum(in_train(s, c) for s in range(scenes)) == scenes // 2


def test_mirrored_pairs_are_mirrored_motions():
    for a, b in zip(CLASSES[0::2], CLASSES[1::2]):
        assert a.split("_")[0] == b.split("_")[0] and a != b


def _moving_mask(frames):
    return np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).max(-1).max(0) > 40


def test_a_scene_looks_the_same_in_every_class_and_scenes_differ():
    """Background pixels (never covered by the object) are the scene's in every class; other scenes differ."""
    size, t = 48, 16
    spec = scene_spec(0, 3, size)
    videos = [render(spec, c, np.random.default_rng(c), size, t) for c in range(len(CLASSES))]
    still = ~np.any([_moving_mask(v) for v in videos], axis=0)
    assert still.sum() > 100
    first = videos[0][0].astype(float)
    for v in videos[1:]:
        assert np.abs(v[0].astype(float) - first)[still].mean() < 8  # sensor noise only
    other = render(scene_spec(0, 4, size), 0, np.random.default_rng(0), size, t)[0].astype(float)
    assert np.abs(other - first)[still].mean() > 20


def _object_mask(spec, frames):
    return np.abs(frames.astype(float) - spec["background"] * spec["contrast"]).max(-1) > 30


def _circular_centre(mask, axis, size):
    """Centre of the mask along an axis on the torus the object wraps around (radians)."""
    coords = np.nonzero(mask)[axis]
    return np.angle(np.exp(2j * np.pi * coords / size).mean())


@pytest.mark.parametrize("seed", range(3))
def test_motion_classes_move_as_named(seed):
    """up/down/left/right move the object's centre that way; zoom in/out grow and shrink it."""
    size = 48
    spec = scene_spec(0, seed, size)

    def frames(label):
        return render(spec, label, np.random.default_rng([seed, label]), size, 6)

    for label, axis, sign in ((0, 0, -1), (1, 0, 1), (2, 1, -1), (3, 1, 1)):
        v = frames(label)
        step = np.angle(np.exp(1j * (_circular_centre(_object_mask(spec, v[-1]), axis, size)
                                     - _circular_centre(_object_mask(spec, v[0]), axis, size))))
        assert np.sign(step) == sign, CLASSES[label]
    grow = [_object_mask(spec, frames(label)[[0, -1]]).sum(axis=(1, 2)) for label in (6, 7)]
    assert grow[0][1] > grow[0][0] and grow[1][1] < grow[1][0]


def test_render_is_a_pure_function_of_the_seed():
    spec = scene_spec(1, 2, 32)
    a = render(spec, 4, np.random.default_rng([1, 2, 4, 0]), 32, 8)
    b = render(scene_spec(1, 2, 32), 4, np.random.default_rng([1, 2, 4, 0]), 32, 8)
    assert a.dtype == np.uint8 and np.array_equal(a, b)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fidelity") / "data")
    return fidelity_data.generate(root, seed=0, scenes=2, per_class=1, size=32, num_frames=24, workers=1)


def test_generate_writes_a_prepared_dataset_with_scenes(tiny_data):
    train, test = load_index(tiny_data, split="train"), load_index(tiny_data, split="test")
    assert len(train) == len(test) == 8
    assert train.classes == list(CLASSES)
    with open(os.path.join(tiny_data, "scenes.txt")) as f:
        scenes = dict(line.split() for line in f)
    assert len(scenes) == 16 and set(scenes.values()) == {"0", "1"}
    # Every class appears once per split, from different scenes.
    assert sorted(train.labels.tolist()) == sorted(test.labels.tolist()) == list(range(8))
    again = fidelity_data.generate(tiny_data, seed=0, scenes=2, per_class=1, size=32, num_frames=24)
    assert again == tiny_data  # complete: not written again


def test_generate_rejects_an_odd_number_of_scenes(tmp_path):
    with pytest.raises(ValueError, match="even number"):
        fidelity_data.generate(str(tmp_path / "d"), scenes=3)


def test_rows_groups_and_selection():
    assert [r.name for r in fidelity.select(["main"])] == ["random", "simclr", "moquad", "mcpnet"]
    every = fidelity.select(["all"])
    assert len(every) == len(fidelity.ROWS) and {r.group for r in every} == set(fidelity.GROUPS)
    assert [r.name for r in fidelity.select(["mcpnet,random", "random"])] == ["random", "mcpnet"]
    with pytest.raises(SystemExit, match="unknown row or group 'moquad-nope'"):
        fidelity.select(["moquad-nope"])


@pytest.mark.parametrize("name", sorted(fidelity.ROWS))
def test_every_row_is_a_valid_command_and_config(name, tmp_path):
    """Each row's train.py and eval.py command lines parse, and its config files and overrides load."""
    row = fidelity.ROWS[name]
    cmds = fidelity.commands(row, 1, "DATA", str(tmp_path / "run"), 10, 8, 2)
    for cmd in cmds:
        assert cmd[1] in ("train.py", "eval.py")
        if cmd[1] == "train.py":
            args = train_cli.parse_args(cmd[2:])
            assert args.pipeline == row.method and args.data == "DATA" and args.test_split == "test"
            files = [os.path.join(ROOT, c) for c in args.config]
            cfg = load_config(files, args.overrides, pipeline=args.pipeline)
            assert (cfg.seed, cfg.steps, cfg.batch_size, cfg.retrieval) == (1, 10, 8, False)
        else:
            args = eval_cli.parse_args(cmd[2:])
            assert args.seed == 1 and args.num_clips == 2
            assert args.random_init == (row.method == "random")
    assert len(cmds) == (2 if row.method == "random" else 3)


def test_summary_is_mean_and_sample_deviation():
    runs = [{"retrieval_top1": v, "retrieval_top5": 2 * v, "linear_top1": 10.0, "train_seconds": 1.0}
            for v in (1.0, 2.0, 6.0)]
    s = fidelity.summarise(runs + [{"row": "x", "failed": "train.py"}, {}])
    assert s["retrieval_top1"]["mean"] == pytest.approx(3.0)
    assert s["retrieval_top1"]["std"] == pytest.approx(float(np.std([1, 2, 6], ddof=1)))
    assert s["retrieval_top1"]["n"] == 3 and s["linear_top1"]["std"] == 0.0
    assert "3.0 ± 2.6" in fidelity.table([fidelity.ROWS["simclr"]], {"simclr": s})


@pytest.mark.slow
def test_random_row_end_to_end_writes_the_tables(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    md = tmp_path / "FIDELITY.md"
    record = fidelity.main(["--rows", "random", "--seeds", "0", "--data", tiny_data, "--out", str(out),
                            "--num-clips", "1", "--markdown", str(md)])
    run = record["runs"]["random"][0]
    assert 0 <= run["retrieval_top1"] <= 100 and 0 <= run["linear_top1"] <= 100
    assert json.load(open(out / "fidelity.json"))["summary"]["random"]["retrieval_top1"]["n"] == 1
    text = md.read_text()
    assert "| random | 1 |" in text and "--rows random --seeds 0" in text
    md.write_text(text + "\n" + fidelity.KEEP + "\nnotes by hand\n")
    # A second call reads the cached result instead of evaluating again.
    again = fidelity.main(["--rows", "random", "--seeds", "0", "--data", tiny_data, "--out", str(out),
                           "--num-clips", "1"])
    assert again["runs"]["random"][0] == run
    fidelity.main(["--rows", "random", "--seeds", "0", "--data", tiny_data, "--out", str(out), "--cached",
                   "--markdown", str(md)])
    text = md.read_text()
    assert text.count("| random | 1 |") == 1 and text.endswith(fidelity.KEEP + "\nnotes by hand\n")
