"""The fidelity benchmark: its data keep appearance from giving the class away; its controls see what they
claim to see; its rows are valid runs."""
import dataclasses
import json
import os

import numpy as np
import pytest

from benchmarks import fidelity, fidelity_data, fidelity_rows
from benchmarks.fidelity_data import CLASSES, in_train, render, scene_spec
from motionssl import evaluate as eval_cli
from motionssl import train as train_cli
from motionssl.pipelines.index import load_index
from motionssl.training import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("per_class", [3, 4, 6])
def test_split_puts_every_scene_and_class_in_both_splits(per_class):
    """Three in four (at least one of every three) copies of a scene and class train, the rest test."""
    copies = [in_train(k) for k in range(per_class)]
    assert any(copies) and not all(copies)
    assert sum(copies) == per_class - per_class // 3


def test_mirrored_pairs_are_mirrored_motions():
    for a, b in zip(CLASSES[0::2], CLASSES[1::2]):
        assert a.split("_")[0] == b.split("_")[0] and a != b


def test_a_scene_looks_the_same_in_every_class_and_scenes_differ():
    """Background pixels (never covered by the object) are the scene's in every class; other scenes differ."""
    size, t = 48, 16
    spec = scene_spec(0, 3, size)
    videos = [render(spec, c, np.random.default_rng(c), size, t) for c in range(len(CLASSES))]
    first = videos[0][0].astype(float)
    for v in videos[1:]:
        still = ~(_object_mask(spec, v[:1]) | _object_mask(spec, videos[0][:1]))[0]  # under neither object
        assert still.sum() > 100
        assert np.abs(v[0].astype(float) - first)[still].mean() < 8  # sensor noise only
    other = render(scene_spec(0, 4, size), 0, np.random.default_rng(0), size, t)[0].astype(float)
    assert np.abs(other - first).mean() > 20


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
    return fidelity_data.generate(root, seed=0, scenes=2, per_class=3, size=32, num_frames=24, workers=1)


def test_generate_writes_a_prepared_dataset_with_scenes(tiny_data):
    train, test = load_index(tiny_data, split="train"), load_index(tiny_data, split="test")
    assert len(train) == 2 * len(test) == 32
    assert train.classes == list(CLASSES)
    with open(os.path.join(tiny_data, "scenes.txt")) as f:
        scenes = dict(line.split() for line in f)
    assert len(scenes) == 48 and set(scenes.values()) == {"0", "1"}
    # Every scene in every class, in both splits.
    for index in (train, test):
        pairs = {(scenes[os.path.relpath(p, tiny_data)], int(label)) for p, label in zip(index.paths, index.labels)}
        assert pairs == {(s, c) for s in ("0", "1") for c in range(8)}
    again = fidelity_data.generate(tiny_data, seed=0, scenes=2, per_class=3, size=32, num_frames=24)
    assert again == tiny_data  # complete: not written again


def test_generate_needs_videos_in_both_splits(tmp_path):
    with pytest.raises(ValueError, match="per_class >= 3"):
        fidelity_data.generate(str(tmp_path / "d"), scenes=2, per_class=2)


def test_rows_groups_and_selection():
    assert [r.name for r in fidelity.select(["main"])] == ["motion-control", "appearance-control", "supervised",
                                                           "random", "simclr", "moquad", "mcpnet", "mcpnet-paper"]
    every = fidelity.select(["all"])
    assert len(every) == len(fidelity.ROWS) and {r.group for r in every} == set(fidelity.GROUPS)
    assert [r.name for r in fidelity.select(["mcpnet,random", "random"])] == ["random", "mcpnet"]
    with pytest.raises(SystemExit, match="unknown row or group 'moquad-nope'"):
        fidelity.select(["moquad-nope"])


def _train_config(name, tmp_path):
    row = fidelity.ROWS[name]
    train = fidelity.commands(row, 0, "DATA", str(tmp_path / name), 10, 8, 2)[0]
    args = train_cli.parse_args(train[2:])
    return load_config([os.path.join(ROOT, c) for c in args.config], args.overrides, pipeline=args.pipeline)


def test_mcpnet_ablations_vary_the_papers_pairs_and_the_main_row_the_small_config(tmp_path):
    """The small config reverses MIP's negative; the Tab. 1-3 rows build on the paper's pairs instead, each
    changing only what its table changes."""
    main = _train_config("mcpnet", tmp_path).pipeline_config
    assert (main.mip_negative, main.cip_speed) == ("reverse", "same")
    paper = dataclasses.asdict(_train_config("mcpnet-paper", tmp_path).pipeline_config)
    assert (paper["mip_negative"], paper["cip_speed"]) == ("speed", "different")
    rows = [r.name for r in fidelity.select(["mcpnet_ablations"])]
    assert len(rows) == 8
    changed = {}
    for name in rows:
        cfg = _train_config(name, tmp_path)
        assert cfg.pipeline_config.mip_negative == "speed", name
        diff = {k: v for k, v in dataclasses.asdict(cfg.pipeline_config).items() if paper.get(k) != v}
        diff.update({f"method.{k}": v for k, v in cfg.method.items()
                     if _train_config("mcpnet-paper", tmp_path).method.get(k) != v})
        changed[name] = diff
    assert changed["mcpnet-gap1"] == {"gap": 1} and changed["mcpnet-gap4"] == {"gap": 4}
    assert changed["mcpnet-cip-same"] == {"cip_speed": "same"}
    assert changed["mcpnet-cip-random"] == {"cip_speed": "random"}
    assert changed["mcpnet-rgb"] == {"residual_view": "rgb"}
    assert changed["mcpnet-cip-only"] == {"method.alpha": 0.0}
    assert changed["mcpnet-mip-only"] == {"method.alpha": 1.0}


@pytest.mark.parametrize("name", sorted(fidelity.ROWS))
def test_every_row_is_a_valid_command_and_config(name, tmp_path):
    """Each row's train.py and eval.py command lines parse, and its config files and overrides load."""
    row = fidelity.ROWS[name]
    cmds = fidelity.commands(row, 1, "DATA", str(tmp_path / name / "seed1"), 10, 8, 2, train_videos=40)
    for cmd in cmds:
        assert cmd[1] in ("train.py", "eval.py") or cmd[1:3] == ["-m", "benchmarks.controls"]
        if cmd[1] == "-m":
            from benchmarks import controls
            controls.register()
            args = eval_cli.parse_args(cmd[3:])
            assert args.random_init and args.backbone == row.method
        elif cmd[1] == "train.py":
            args = train_cli.parse_args(cmd[2:])
            assert args.pipeline == row.method and args.data == "DATA" and args.test_split == "test"
            files = [os.path.join(ROOT, c) for c in args.config]
            cfg = load_config(files, args.overrides, pipeline=args.pipeline)
            assert (cfg.seed, cfg.steps, cfg.batch_size, cfg.retrieval) == (1, row.steps or 10, 8, False)
        else:
            args = eval_cli.parse_args(cmd[2:])
            assert args.seed == 1 and args.num_clips == 2
            scratch = row.method in ("random", "supervised") or (row.method == "finetune" and not row.pretrained)
            assert args.random_init == scratch
            if row.method in ("supervised", "finetune"):  # as many clips as a pre-training run: 10 steps x 8 / 40,
                # or as the row's own steps (supervised-steps3600: 3600 x 8 / 40)
                epochs = round((row.steps or 10) * 8 / 40)
                assert args.task == "finetune" and args.labels == row.labels and args.augment == row.augment
                assert args.epochs == (round(epochs / row.labels) if row.same_steps else epochs)
                assert args.backbone == ("tiny" if scratch else None)
            if row.pretrained:  # the pre-training row's run of the same seed
                assert args.checkpoint == str(tmp_path / row.pretrained / "seed1" / "train")
    runs = {"supervised": 1, "finetune": 1, "random": 2, **{c: 2 for c in fidelity.CONTROLS}}
    assert len(cmds) == runs.get(row.method, 3)


def test_summary_is_mean_and_sample_deviation():
    runs = [{"retrieval_top1": v, "retrieval_top5": 2 * v, "linear_top1": 10.0, "train_seconds": 1.0}
            for v in (1.0, 2.0, 6.0)]
    s = fidelity.summarise(runs + [{"row": "x", "failed": "train.py"}, {}])
    assert s["retrieval_top1"]["mean"] == pytest.approx(3.0)
    assert s["retrieval_top1"]["std"] == pytest.approx(float(np.std([1, 2, 6], ddof=1)))
    assert s["retrieval_top1"]["n"] == 3 and s["linear_top1"]["std"] == 0.0
    assert "3.0 ± 2.6" in fidelity.table([fidelity.ROWS["simclr"]], {"simclr": s})


def _stats(values):
    return fidelity.summarise([{"linear_top1": v, "retrieval_top1": v} for v in values])


def test_every_ablation_names_an_existing_base_and_a_direction():
    ablations = [r for r in fidelity.ROWS.values() if r.base]
    groups = ["moquad_ablations", "mcpnet_ablations", "sweeps", "mcpnet-tau0.2",
              *[r.name for r in fidelity.select(["finetuning"]) if r.pretrained]]
    assert {r.name for r in ablations} == {r.name for r in fidelity.select(groups)}
    for r in ablations:
        assert r.base in fidelity.ROWS and fidelity.ROWS[r.base].method == r.method and r.paper in ("worse", "better", "")


@pytest.mark.parametrize("values, paper, verdict, half", [
    ((40.0, 42.0, 44.0), "worse", "reproduced", 0.0),  # 20 below at every seed
    ((40.0, 42.0, 44.0), "better", "not reproduced", 0.0),
    # 2 below at every seed: paired, a clear effect that the seed spread (2) of either row would hide
    ((58.0, 60.0, 62.0), "worse", "reproduced", 0.0),
    ((60.0, 61.0, 62.0), "worse", "interval crosses 0", 4.303 / 3 ** 0.5),  # differences 0, -1, -2
    ((40.0, 42.0), "worse", "n < 3", 0.0),
    ((40.0, 42.0, 44.0), "", "lower", 0.0),  # not in the paper (a sweep): the direction seen
])
def test_direction_verdicts_read_paired_seeds(values, paper, verdict, half):
    row = fidelity.Row("x", "moquad", "moquad_ablations", "", base="moquad", paper=paper)
    summary = {"moquad": _stats((60.0, 62.0, 64.0)), "x": _stats(values)}
    d = fidelity.direction(row, summary)
    assert d["verdict"] == verdict and d["n"] == len(values)
    assert d["delta"] == pytest.approx(sum(values) / len(values) - sum((60.0, 62.0, 64.0)[:len(values)]) / len(values))
    assert d["half"] == pytest.approx(half, abs=1e-3)
    assert fidelity.direction(row, {"x": summary["x"]})["verdict"] == "not run"
    line = fidelity.directions_table([row], summary).splitlines()[-1]
    assert line.startswith("| x | moquad |") and verdict in line


def test_directions_pair_runs_by_seed_not_by_position():
    """Seeds 0 and 2 of the base finished, 0 1 2 of the ablation: only seeds 0 and 2 are compared."""
    base = fidelity.summarise([{"seed": 0, "linear_top1": 50.0}, {"seed": 2, "linear_top1": 70.0}])
    row = fidelity.summarise([{"seed": s, "linear_top1": v} for s, v in ((0, 49.0), (1, 10.0), (2, 69.0))])
    d = fidelity.paired(row["linear_top1"], base["linear_top1"])
    assert d["n"] == 2 and d["mean"] == pytest.approx(-1.0) and d["half"] == pytest.approx(0.0)


def test_report_reads_an_unselected_base_from_its_finished_runs(tmp_path, capsys):
    """`--rows moquad-be` alone still shows its direction against moquad's finished runs in --out, those that are
    moquad's setting now."""
    data = _fake_data(tmp_path / "data")
    for seed, value in enumerate((60.0, 62.0, 64.0)):
        _fake_cell(tmp_path, fidelity.ROWS["moquad"], seed, data, value=value)
    args = fidelity.parse_args(["--rows", "moquad-be", "--out", str(tmp_path), "--data", data])
    results = {"moquad-be": [{"linear_top1": v, "retrieval_top1": v + 30} for v in (40.0, 41.0, 42.0)]}
    text = fidelity.report(args, [fidelity.ROWS["moquad-be"]], results, data, 0.0)
    line = next(x for x in text.splitlines() if x.startswith("| moquad-be | moquad |"))
    assert "| -21.0 ± 2.5 | reproduced |" in line and "| +9.0 ± 2.5 | not reproduced |" in line
    assert "| moquad |" not in text.split("## The papers' directions")[0]  # the base is not tabulated itself
    os.remove(tmp_path / "moquad" / "seed2" / "train" / "config.yaml")  # no record of what it trained with
    text = fidelity.report(args, [fidelity.ROWS["moquad-be"]], results, data, 0.0)
    assert "| moquad-be | moquad | worse | 2 |" in text
    assert "moquad: seed 2 has no record of its config: not tabulated" in capsys.readouterr().out


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
                   "--num-clips", "1", "--markdown", str(md)])
    text = md.read_text()
    assert text.count("| random | 1 |") == 1 and text.endswith(fidelity.KEEP + "\nnotes by hand\n")


# --- the controls -------------------------------------------------------------------------------
def _clip(frames):
    """(T, H, W, 3) uint8 → (1, 3, T, H, W) float, as the evaluation views hand clips to a backbone."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float()


def test_the_motion_descriptor_reads_each_motion_as_named():
    """Over rendered videos of six scenes (objects anywhere on the torus, some straddling an edge): translation
    along its axis with its sign, mostly the largest component; rotation and zoom in their own components with
    opposite signs for the two directions. (Deterministic: the videos are a pure function of their seeds.)"""
    from benchmarks.controls import MotionDescriptor

    size, descriptor = 48, MotionDescriptor()
    named = {0: (1, -1), 1: (1, 1), 2: (0, -1), 3: (0, 1), 4: (2, None), 5: (2, None), 6: (3, 1), 7: (3, -1)}
    values = {label: [] for label in named}
    for scene in range(6):
        spec = scene_spec(0, scene, size)
        for label in named:
            for copy in range(2):
                frames = render(spec, label, np.random.default_rng([scene, label, copy]), size, 8)
                values[label].append(descriptor.features(_clip(frames))[0].numpy())
    for label, (component, sign) in named.items():
        f = np.stack(values[label])
        if sign is not None:
            assert (np.sign(f[:, component]) == sign).mean() >= 0.75, CLASSES[label]
        if label < 4:  # translation dominates the other components
            assert (np.abs(f).argmax(1) == component).mean() >= 0.75, CLASSES[label]
    clockwise, anticlockwise = np.stack(values[4])[:, 2], np.stack(values[5])[:, 2]
    assert np.median(clockwise) * np.median(anticlockwise) < 0  # the two rotations turn opposite ways
    assert (np.sign(clockwise) == np.sign(np.median(clockwise))).mean() >= 0.75
    assert (np.sign(anticlockwise) == np.sign(np.median(anticlockwise))).mean() >= 0.75


def test_the_still_appearance_control_sees_one_frame_only():
    """Two clips that share their first frame and nothing else give the same features; the look of the frame
    (a scene's colours) changes them."""
    from benchmarks.controls import StillAppearance

    spec = scene_spec(0, 5, 32)
    moving = render(spec, 0, np.random.default_rng(1), 32, 6)
    still = np.repeat(moving[:1], 6, axis=0)
    control = StillAppearance()
    np.testing.assert_allclose(control.features(_clip(moving)), control.features(_clip(still)))
    other = render(scene_spec(0, 6, 32), 0, np.random.default_rng(1), 32, 6)
    assert not np.allclose(control.features(_clip(other)), control.features(_clip(moving)))


@pytest.mark.slow
def test_a_trained_row_end_to_end(tiny_data, tmp_path):
    """train.py, then eval.py on its checkpoint: the runner's own log lives beside train.py's run folder, which
    train.py would refuse to share."""
    record = fidelity.main(["--rows", "simclr", "--seeds", "0", "--data", tiny_data, "--out", str(tmp_path / "out"),
                            "--num-clips", "1", "--steps", "10", "--batch-size", "4"])
    run = record["runs"]["simclr"][0]
    assert "failed" not in run, run
    assert 0 <= run["retrieval_top1"] <= 100 and run["train_seconds"] > 0 and "loss" in run["final"]
    # The config train.py recorded is the one the row resolves to: the cell is served, not run again.
    again = fidelity.main(["--rows", "simclr", "--seeds", "0", "--data", tiny_data, "--out", str(tmp_path / "out"),
                           "--num-clips", "1", "--steps", "10", "--batch-size", "4", "--cached"])
    assert again["runs"]["simclr"] == [run]


def test_one_speed_variant_changes_only_the_speed():
    """--one-speed: every video of a class moves at one speed; position, size, texture and noise draws stay."""
    from benchmarks import fidelity_data

    spec = fidelity_data.scene_spec(0, 3, 48)
    for label in range(len(fidelity_data.CLASSES)):
        drawn = [fidelity_data.render(spec, label, np.random.default_rng([0, 3, label, k]), 48, 8) for k in (0, 1)]
        fixed = [fidelity_data.render(spec, label, np.random.default_rng([0, 3, label, k]), 48, 8, one_speed=True)
                 for k in (0, 1)]
        # the middle frame (t = 0 after centring is between frames 3 and 4) differs little; the ends move apart
        assert not np.array_equal(drawn[0], fixed[0])
        assert np.abs(drawn[0][0].astype(int) - fixed[0][0].astype(int)).mean() > 0
    assert fidelity_data.default_root(one_speed=True).endswith("-onespeed")
    assert fidelity_data.default_root() == fidelity_data.default_root(one_speed=False)
    assert fidelity_data._speed(np.random.default_rng(1), 0.1, 0.2, True) == pytest.approx(0.15)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    fidelity_data._speed(a, 0.1, 0.2, True), fidelity_data._speed(b, 0.1, 0.2, False)
    assert a.uniform() == b.uniform()  # the later draws of a video are the same in both variants


# --- the --unpaired variant: no class is another's motion reversed ------------------------------------------------
def _reversal_gap(a, b):
    """How far class ``a`` played backwards is from class ``b``'s motion: ``None`` where they differ in what moves
    (a turn or zoom of its own sign, a translation or not), else the angle in degrees between the translations
    (0 where neither translates)."""
    step_a, turn_a, zoom_a = fidelity_data.MOTIONS[a]
    step_b, turn_b, zoom_b = fidelity_data.MOTIONS[b]
    if (-turn_a, -zoom_a) != (turn_b, zoom_b) or (step_a is None) != (step_b is None):
        return None
    if step_a is None:
        return 0.0
    cos = -np.dot(step_a, step_b) / (np.linalg.norm(step_a) * np.linalg.norm(step_b))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def test_unpaired_classes_are_no_class_played_backwards():
    """In the standard data every class reversed is its partner; in --unpaired no class reversed is any class
    (itself included: no oscillation) nor within 90° of a class's translation with the same turn and zoom."""
    assert len(fidelity_data.UNPAIRED) == len(set(fidelity_data.UNPAIRED)) == len(CLASSES)
    for a, b in zip(CLASSES[0::2], CLASSES[1::2]):
        assert _reversal_gap(a, b) == _reversal_gap(b, a) == 0.0
    for a in fidelity_data.UNPAIRED:
        for b in fidelity_data.UNPAIRED:
            gap = _reversal_gap(a, b)
            assert gap is None or gap >= 90 - 1e-6, (a, b, gap)
    assert fidelity_data.classes() == CLASSES and fidelity_data.classes(unpaired=True) == fidelity_data.UNPAIRED


def test_unpaired_classes_move_as_designed_and_scenes_are_drawn_as_in_the_standard_data():
    """--unpaired: each class's trajectory translates, turns and zooms as its entry says, the turn the way the
    standard data's clockwise class turns; in rendered videos the translations go their way (motion descriptor,
    median over scenes) and the zooming objects grow; a class that moves as a standard one gives that class's very
    frames (the scene, position, size and noise draws are the standard data's)."""
    from benchmarks.controls import MotionDescriptor

    size, descriptor = 48, MotionDescriptor()
    clockwise = np.sign(np.diff(fidelity_data.trajectory("rotate_clockwise", np.random.default_rng(0), size, 8)[1]))
    assert set(clockwise) == {1.0}
    for label, name in enumerate(fidelity_data.UNPAIRED):
        step, turn, zoom = fidelity_data.MOTIONS[name]
        position, angle, scale = fidelity_data.trajectory(name, np.random.default_rng(label), size, 8)
        moved = np.diff(position, axis=0)
        if step is None:
            assert np.all(moved == 0), name
        else:
            np.testing.assert_allclose(moved / np.linalg.norm(moved, axis=1, keepdims=True),
                                       np.broadcast_to(step, moved.shape), atol=1e-6, err_msg=name)
        assert set(np.sign(np.diff(angle))) == {float(turn)}, name
        assert set(np.sign(np.diff(scale))) == {float(zoom)}, name
        videos = [(scene_spec(0, scene, size), render(scene_spec(0, scene, size), label,
                                                      np.random.default_rng([scene, label, copy]), size, 8,
                                                      unpaired=True)) for scene in range(4) for copy in range(2)]
        if step is not None:  # the descriptor's (x, y) against the class's (row, column) step
            x, y = np.median([descriptor.features(_clip(v))[0].numpy()[:2] for _, v in videos], axis=0)
            seen = np.degrees(np.arctan2(y, x) - np.arctan2(step[0], step[1]))
            assert abs((seen + 180) % 360 - 180) < 15, (name, seen)
        if zoom:  # the object's area, first frame against last
            for spec, v in videos:
                area = _object_mask(spec, v[[0, -1]]).sum(axis=(1, 2))
                assert area[1] > area[0], name
    spec = scene_spec(0, 3, 32)
    for standard, unpaired in ((4, 4), (6, 5)):  # rotate_clockwise, zoom_in
        assert CLASSES[standard] == fidelity_data.UNPAIRED[unpaired]
        assert np.array_equal(render(spec, standard, np.random.default_rng([0, 3, 1]), 32, 8),
                              render(spec, unpaired, np.random.default_rng([0, 3, 1]), 32, 8, unpaired=True))


def test_unpaired_flag_names_its_data_and_the_standard_record_stays(tmp_path, monkeypatch):
    """--unpaired reaches the data's folder name, its record and classes, the runner's generate call and the
    report's command lines; without it the cache name and the record are the standard data's as before."""
    from benchmarks import fidelity_report

    assert fidelity_data.default_root(unpaired=True).endswith("-unpaired")
    assert os.path.basename(fidelity_data.default_root()) == "fidelity-v4-seed0-16x4-48px-32f"
    assert os.path.basename(fidelity_data.default_root(one_speed=True, unpaired=True)).endswith("-onespeed-unpaired")
    root = fidelity_data.generate(str(tmp_path / "unpaired"), seed=0, scenes=1, per_class=3, size=32, num_frames=8,
                                  workers=1, unpaired=True)
    assert load_index(root, split="train").classes == list(fidelity_data.UNPAIRED)
    with open(os.path.join(root, fidelity_data.MARKER)) as f:
        assert json.load(f)["unpaired"] is True
    standard = fidelity_data.generate(str(tmp_path / "standard"), seed=0, scenes=1, per_class=3, size=32,
                                      num_frames=8, workers=1)
    with open(os.path.join(standard, fidelity_data.MARKER)) as f:
        record = json.load(f)
    assert {k: v for k, v in record.items() if k in ("dataset", "version", "seed", "scenes", "per_class", "size",
                                                      "frames", "one_speed", "unpaired")} == {
        "dataset": "motionssl fidelity", "version": 4, "seed": 0, "scenes": 1, "per_class": 3, "size": 32,
        "frames": 8}
    calls = []
    monkeypatch.setattr(fidelity_data, "generate", lambda **kw: calls.append(kw) or _fake_data(tmp_path / "fake"))
    argv = ["--unpaired", "--rows", "random", "--seeds", "0", "--out", str(tmp_path / "out"), "--dry-run"]
    fidelity.main(argv)
    assert calls and calls[0]["unpaired"] is True and calls[0]["one_speed"] is False
    args = fidelity.parse_args(argv)
    assert "--unpaired" in fidelity_report._argv_of(args)
    assert "--unpaired" in fidelity_report._origin(args, root)


def test_finetuning_rows_start_from_the_same_seeds_checkpoint_or_say_it_is_missing(tmp_path, capsys):
    """Each method's fine-tuning row is judged against scratch at the same share of labels; without the
    pre-training run of its seed it fails in one line naming the row to run first, and runs nothing."""
    rows = fidelity.select(["finetuning"])
    assert {r.labels for r in rows} == {1.0, 0.1} and len(rows) == 24
    for r in rows:
        if r.pretrained:
            assert r.base == (f"finetune-scratch-{round(100 * r.labels)}" + ("-steps" if r.same_steps else "")
                              + ("-papersaug" if r.augment == "papers" else ""))
            assert r.paper == "better"
    args = fidelity.parse_args(["--rows", "finetuning", "--out", str(tmp_path), "--data", str(tmp_path)])
    os.makedirs(tmp_path / "moquad" / "seed2" / "train" / "checkpoints")  # an interrupted run: no result.json
    result = fidelity.run_one(fidelity.ROWS["finetune-moquad-10"], 2, args, str(tmp_path))
    assert result["failed"] == "no moquad checkpoint"
    assert "no finished moquad run of seed 2" in capsys.readouterr().out
    assert not (tmp_path / "finetune-moquad-10").exists()


def test_papers_augmentation_rows_differ_from_their_twins_by_the_augmentation_only(tmp_path):
    """Each fine-tuning row has a twin that trains with the papers' augmentation (eval.py --augment papers): the
    same command line otherwise (scratch keeps the small config's clips and normalisation), after the
    checkpoint-augmentation rows, judged against scratch of the same share and augmentation."""
    rows = fidelity.select(["finetuning"])
    papers = [r for r in rows if r.augment == "papers"]
    assert len(papers) == 12 and rows[:12] == [r for r in rows if r.augment == "checkpoint"]
    for row in papers:
        twin = fidelity.ROWS[row.name[:-len("-papersaug")]]
        assert row.name.endswith("-papersaug") and twin.augment == "checkpoint"
        assert dataclasses.replace(twin, name=row.name, what=row.what, base=row.base, augment="papers") == row
        assert "papers' fine-tuning augmentation" in row.what and twin.what in row.what
        run = str(tmp_path / "seed1")  # the same folder for both: only the flags may differ
        cmd, = fidelity.commands(row, 1, "DATA", run, 10, 8, 2, train_videos=40)
        twin_cmd, = fidelity.commands(twin, 1, "DATA", run, 10, 8, 2, train_videos=40)
        at = cmd.index("--augment")
        assert cmd[at:at + 2] == ["--augment", "papers"] and cmd[:at] + cmd[at + 2:] == twin_cmd
        assert "--augment" not in twin_cmd
        if not row.pretrained:
            assert twin_cmd[twin_cmd.index("--config") + 1] == fidelity_rows.BASE["simclr"]
        else:
            assert fidelity.ROWS[row.base].augment == "papers" and not fidelity.ROWS[row.base].pretrained
            assert fidelity.ROWS[row.base].labels == row.labels and fidelity.ROWS[row.base].same_steps == row.same_steps


def test_every_row_says_what_it_is_evidence_for():
    assert set(fidelity.GROUPS) <= set(fidelity_rows.EVIDENCE)
    for row in fidelity.ROWS.values():
        assert row.evidence_for().strip()
    text = fidelity.table([fidelity.ROWS["random"], fidelity.ROWS["moquad-be"]], {}, markdown=True)
    assert "| evidence for |" in text.splitlines()[0]
    assert "the floor a method must clear" in text and fidelity_rows.EVIDENCE["moquad_ablations"] in text


# --- a cached cell is served only while its row still runs what made it ------------------------------------------
def _fake_data(folder):
    """A dataset folder as far as the runner reads it: its split lists."""
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", 6), ("test", 2)):
        with open(os.path.join(folder, f"{split}.txt"), "w") as f:
            f.write("".join(f"v{i}.mp4 {i % 2}\n" for i in range(n)))
    return str(folder)


def _fake_cell(out, row, seed, data, old=(), num_clips=5, value=None):
    """A finished cell of ``row`` as the runner leaves it, without training: made by the row's commands of now with
    the train.py overrides ``old`` added; train.py's config.yaml (written by train.py's writer) and result.json
    (``value``: its top-1 accuracies)."""
    from benchmarks import fidelity_runs
    from motionssl.models.methods import get_method

    run = os.path.join(str(out), row.name, f"seed{seed}")
    cmds = fidelity.commands(row, seed, data, run, 1200, 32, num_clips,
                             train_videos=fidelity_runs.split_size(data, "train"))
    if cmds[0][1] == "train.py":  # train.py's resolved config, as it saves it into its run folder
        args = train_cli.parse_args(cmds[0][2:] + list(old))
        args.config = [os.path.join(ROOT, c) for c in args.config]
        cfg, _, _ = train_cli.run_config(args, get_method(args.pipeline))
        saved = dataclasses.replace(cfg, method=train_cli.method_settings(get_method(cfg.pipeline), cfg.method),
                                    data=os.path.abspath(cfg.data))
        os.makedirs(os.path.join(run, "train"))
        train_cli.write_config(os.path.join(run, "train"), saved)
    os.makedirs(run, exist_ok=True)
    value = 60.0 + seed if value is None else value
    result = {"row": row.name, "seed": seed, "retrieval_top1": value, "retrieval_top5": 90.0,
              "linear_top1": value, "linear_top5": 95.0, "train_seconds": 1.0, "eval_seconds": 1.0, "final": {},
              "commands": [" ".join(c[1:]) for c in cmds]}
    with open(os.path.join(run, "result.json"), "w") as f:
        json.dump(result, f)
    return result


def _files(folder):
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_cached_cell_is_tabulated_only_while_its_row_trains_with_the_same_config(tmp_path, monkeypatch, capsys):
    """A config file of the row changes after its seeds ran: --cached leaves them out of the table with one line
    naming the row, the seeds and the key (old → new); a run refuses in one line and touches nothing."""
    data = _fake_data(tmp_path / "data")
    extra = tmp_path / "tau.yaml"
    extra.write_text("method: {temperature: 0.07}\n")
    row = fidelity.Row("mcpnet-tau-test", "mcpnet", "sweeps", "a row whose config file changes", configs=(str(extra),))
    monkeypatch.setitem(fidelity.ROWS, row.name, row)
    out = tmp_path / "out"
    for seed in (0, 1):
        _fake_cell(out, row, seed, data)
    argv = ["--rows", row.name, "--seeds", "0", "1", "--data", data, "--out", str(out)]
    record = fidelity.main(argv + ["--cached"])
    assert record["summary"][row.name]["linear_top1"]["n"] == 2
    assert "not tabulated" not in capsys.readouterr().out

    extra.write_text("method: {temperature: 0.1}\n")  # the row now trains at another temperature
    record = fidelity.main(argv + ["--cached"])
    assert record["runs"][row.name] == [] and record["summary"][row.name] == {}
    said = [line for line in capsys.readouterr().out.splitlines() if "not tabulated" in line]
    assert said == [f"{row.name}: seeds 0 1 were trained with method.temperature=0.07, the row now has 0.1: not "
                    "tabulated; run them again into a new --out"]

    before = _files(out)
    with pytest.raises(SystemExit) as refused:
        fidelity.main(argv)
    message = str(refused.value)
    assert "\n" not in message and f"{row.name}: seeds 0 1" in message
    assert "method.temperature=0.07, the row now has 0.1" in message and "new --out" in message
    args = fidelity.parse_args(argv)
    with pytest.raises(SystemExit, match="seed 1 .*was trained with method.temperature=0.07"):
        fidelity.run_one(row, 1, args, data)
    assert _files(out) == before  # nothing run, overwritten or deleted


def test_a_cell_is_current_wherever_its_out_folder_and_data_lie(tmp_path):
    """The same settings in a moved --out (every recorded path elsewhere) and a dataset copied elsewhere: served, by
    a run as by --cached, for a trained row, a fine-tuning row from its checkpoint and a row without training."""
    import shutil

    first = tmp_path / "first"
    names = ("mcpnet", "random", "finetune-mcpnet-10", "supervised")
    made = {name: _fake_cell(first, fidelity.ROWS[name], 2, _fake_data(tmp_path / "a")) for name in names}
    shutil.copytree(first, tmp_path / "moved")
    data = _fake_data(tmp_path / "b")
    for cached in ([], ["--cached"]):
        args = fidelity.parse_args(["--seeds", "2", "--out", str(tmp_path / "moved"), "--data", data, *cached])
        for name in names:
            assert fidelity.run_one(fidelity.ROWS[name], 2, args, data) == made[name], name
    saved = (tmp_path / "moved" / "mcpnet" / "seed2" / "train" / "config.yaml").read_text()
    assert str(first) in saved and str(tmp_path / "a") in saved  # the record names the old folders


def test_stale_cells_name_what_differs(tmp_path):
    """An evaluation run with other options, a checkpoint trained with another config, a run without its
    config.yaml: each is stale, and says why."""
    from benchmarks import fidelity_runs

    data = _fake_data(tmp_path / "data")
    out = tmp_path / "out"
    _fake_cell(out, fidelity.ROWS["random"], 0, data, num_clips=5)
    _fake_cell(out, fidelity.ROWS["mcpnet"], 0, data, old=("method.temperature=0.0123",))
    _fake_cell(out, fidelity.ROWS["finetune-mcpnet-10"], 0, data)
    _fake_cell(out, fidelity.ROWS["simclr"], 0, data)
    os.remove(out / "simclr" / "seed0" / "train" / "config.yaml")  # a run from before train.py recorded it
    now = _train_config("mcpnet", tmp_path).method["temperature"]

    def why(name, *options):
        args = fidelity.parse_args(["--seeds", "0", "--out", str(out), "--data", data, "--cached", *options])
        return fidelity.run_one(fidelity.ROWS[name], 0, args, data).get("stale")

    assert why("random") is None
    assert why("random", "--num-clips", "3") == "was run with --num-clips 5, the row now has --num-clips 3"
    assert why("mcpnet") == f"was trained with method.temperature=0.0123, the row now has {now}"
    assert why("finetune-mcpnet-10") == (f"started from mcpnet's checkpoint, which was trained with "
                                         f"method.temperature=0.0123, mcpnet now has {now}")
    assert why("simclr") == "has no record of its config"
    line = fidelity_runs.stale_line("x", {0: "has no record of its config", 1: "has no record of its config",
                                          2: "was run with --seed 2, the row now has --seed 3"})
    assert line == ("x: seeds 0 1 have no record of their config, seed 2 was run with --seed 2, the row now has "
                    "--seed 3: not tabulated; run them again into a new --out")


def test_one_run_per_out_folder_and_the_lock_ends_with_the_run(tmp_path, monkeypatch, capsys):
    """A second run into an --out that another run holds stops at once, in one line naming the holder, and writes
    nothing; --cached and --dry-run read the folder meanwhile; a run that fails lets the next one in."""
    from motionssl.pipelines.files import FolderLock

    data = _fake_data(tmp_path / "data")
    out = tmp_path / "out"
    made = _fake_cell(out, fidelity.ROWS["random"], 0, data)
    argv = ["--rows", "random", "--seeds", "0", "1", "--data", data, "--out", str(out)]
    holder = FolderLock(str(out), "python -m benchmarks.fidelity --rows moquad").acquire()
    try:
        before = _files(out)
        with pytest.raises(SystemExit) as refused:
            fidelity.main(argv)
        message = str(refused.value)
        assert "\n" not in message and f"process {os.getpid()}" in message and "--rows moquad" in message
        assert "one fidelity run per --out" in message
        assert _files(out) == before  # seed 1 was not started
        capsys.readouterr()
        assert fidelity.main(argv + ["--cached"])["runs"]["random"] == [made]
        fidelity.main(argv + ["--dry-run"])
        assert "eval.py retrieval" in capsys.readouterr().out  # seed 1's commands
    finally:
        holder.release()

    def fails(*args):
        raise RuntimeError("a run that stops")

    monkeypatch.setattr(fidelity, "_main", fails)
    with pytest.raises(RuntimeError):
        fidelity.main(argv)
    FolderLock(str(out)).acquire().release()  # free again


def test_trainings_elsewhere_on_the_machine_are_named(tmp_path):
    """Another training process (here a script called train.py) is named with its pid; once it is gone, no more."""
    import subprocess
    import sys
    import time

    script = tmp_path / "train.py"
    script.write_text("import time\ntime.sleep(60)\n")
    other = subprocess.Popen([sys.executable, str(script)])
    try:
        for _ in range(100):  # until its command line can be read
            if any(f"process {other.pid} " in line for line in fidelity.other_trainings()):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the other training was not named")
    finally:
        other.kill()
        other.wait()
    assert not any(f"process {other.pid} " in line for line in fidelity.other_trainings())
    assert not any(f"process {os.getpid()} " in line for line in fidelity.other_trainings())
