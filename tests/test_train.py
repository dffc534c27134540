"""train.py: the default run, exact resume, DDP on gloo, config errors, the MoQuad warm-up switch."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

import train
from models.training import load_checkpoint, load_config
from pipelines import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["batch_size=4", "log_every=1", "retrieval=false", "loader.num_workers=0",
        "pipeline_config.clip.augment.size=[32,32]", "pipeline_config.clip.frames=4"]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return demo.generate(str(tmp_path_factory.mktemp("demo") / "d"), per_class=3, test_per_class=1, workers=1)


def losses(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return {r["step"]: r for r in map(json.loads, f)}


@pytest.mark.parametrize("pipeline", ["moquad", "mcpnet", "simclr"])
def test_runs_and_writes_config_logs_checkpoint(small_demo, tmp_path, pipeline):
    out = str(tmp_path / "run")
    path = train.main(["--pipeline", pipeline, "--data", small_demo, "--out", out, "split=train", "max_steps=3"] + FAST)
    state = load_checkpoint(path)
    assert state["step"] == 3 and state["config"]["pipeline"] == pipeline
    assert state["config"]["pipeline_config"]["clip"]["frames"] == 4  # the resolved config is saved
    assert os.path.exists(os.path.join(out, "config.yaml"))
    rows = losses(out)
    assert sorted(rows) == [1, 2, 3] and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows.values())


def test_resume_continues_exactly(small_demo, tmp_path):
    common = ["--pipeline", "moquad", "--data", small_demo, "split=train", "epochs=3", "appearance_warmup=0.34"] + FAST
    full = str(tmp_path / "full")
    train.main(common + ["--out", full, "max_steps=9"])
    part = str(tmp_path / "part")
    train.main(common + ["--out", part, "max_steps=5"])  # stops mid-epoch (4 steps per epoch)
    train.main(["--pipeline", "moquad", "--resume", part, "max_steps=9"])
    a, b = losses(full), losses(part)
    for step in range(6, 10):
        assert abs(a[step]["loss"] - b[step]["loss"]) < 1e-6, step
    assert len(glob.glob(os.path.join(part, "checkpoints", "ckpt-*.pt"))) <= 3  # keep_checkpoints


def test_appearance_warmup_switches_graph(small_demo, tmp_path):
    out = str(tmp_path / "warm")
    train.main(["--pipeline", "moquad", "--data", small_demo, "--out", out, "split=train", "epochs=5",
                "appearance_warmup=0.4"] + FAST)
    rows = losses(out)
    steps_per_epoch = 4
    for step, row in rows.items():
        warm = step <= 2 * steps_per_epoch  # round(0.4 · 5) = 2 epochs of the appearance task
        assert ("loss_appearance" in row) == warm and ("loss_quadruple" in row) == (not warm), step


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\].*valid keys"):
        load_config([], ["epoch=3"])
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['lrate'\]"):
        load_config([], ["optim.lrate=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml"):
        load_config([str(bad)])
    with pytest.raises(SystemExit):
        train.main(["--pipeline", "byol"])
    result = subprocess.run([sys.executable, "train.py", "--pipeline", "byol"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "invalid choice: 'byol'" in result.stderr and "moquad" in result.stderr


def test_override_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nbatch_size: 8\noptim: {lr: 0.5}\n")
    cfg = load_config([str(f)], ["batch_size=2", "optim.weight_decay=0.1"])
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == (7, 2, 0.5, 0.1)
    assert load_config().epochs == 20  # defaults


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)))
def test_every_shipped_config_builds(path):
    from models.methods import create_method
    from pipelines.iterators import build_config, pipeline_spec

    base = os.path.basename(path)
    files = [path]
    if "ablations" in path:  # an override file stacks onto its method's paper config
        files = [os.path.join(ROOT, "configs", base.split("_")[0] + "_r3d18.yaml"), path]
    pipeline = base.split("_")[0] if "demo" not in path else base[:-5]
    cfg = load_config(files, pipeline=pipeline)
    build_config(pipeline_spec(pipeline).config, cfg.pipeline_config, pipeline)
    create_method(pipeline, backbone="tiny", **cfg.method)


def test_ddp_two_processes_on_gloo(small_demo, tmp_path):
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "train.py", "--pipeline", "simclr", "--data", small_demo, "--out", out, "split=train", "max_steps=2"] + FAST
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(os.path.join(out, "checkpoints"))
    assert state["step"] == 2
    rows = losses(out)
    assert sorted(rows) == [1, 2]


def test_the_default_command_runs_on_the_embedded_demo(tmp_path):
    """`python train.py --pipeline moquad` as the README says, cut to two steps."""
    out = str(tmp_path / "default")
    path = train.main(["--pipeline", "moquad", "--out", out, "max_steps=2", "retrieval=false"])
    assert load_checkpoint(path)["step"] == 2
