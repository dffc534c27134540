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
            if row.method in ("supervised", "finetune"):  # as many clips as a pre-training run: 10 steps x 8 / 40
                assert args.task == "finetune" and args.labels == row.labels and args.augment == row.augment
                assert args.epochs == (round(2 / row.labels) if row.same_steps else 2)
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


def test_report_reads_an_unselected_base_from_its_finished_runs(tmp_path):
    """`--rows moquad-be` alone still shows its direction against moquad's finished runs in --out."""
    for seed, value in enumerate((60.0, 62.0, 64.0)):
        os.makedirs(tmp_path / "moquad" / f"seed{seed}")
        (tmp_path / "moquad" / f"seed{seed}" / "result.json").write_text(
            json.dumps({"row": "moquad", "seed": seed, "linear_top1": value, "retrieval_top1": value}))
    args = fidelity.parse_args(["--rows", "moquad-be", "--out", str(tmp_path), "--data", str(tmp_path)])
    results = {"moquad-be": [{"linear_top1": v, "retrieval_top1": v + 30} for v in (40.0, 41.0, 42.0)]}
    text = fidelity.report(args, [fidelity.ROWS["moquad-be"]], results, str(tmp_path), 0.0)
    line = next(x for x in text.splitlines() if x.startswith("| moquad-be | moquad |"))
    assert "| -21.0 ± 2.5 | reproduced |" in line and "| +9.0 ± 2.5 | not reproduced |" in line
    assert "| moquad |" not in text.split("## The papers' directions")[0]  # the base is not tabulated itself


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
