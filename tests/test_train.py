"""train.py: the default run, exact resume, DDP on gloo, config errors, the MoQuad warm-up switch."""
import dataclasses
import glob
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from motionssl import train
from motionssl.models.methods import get_method
from motionssl.pipelines import demo
from motionssl.pipelines.config import ConfigError
from motionssl.training import load_checkpoint, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CPU tests stay CPU tests on a machine with a GPU: device=cpu everywhere.
FAST = ["device=cpu", "batch_size=4", "log_every=1", "retrieval=false", "loader.num_workers=0",
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


@pytest.mark.slow
def test_resume_from_every_checkpoint_equals_the_uninterrupted_run(small_demo, tmp_path):
    """Checkpoints mid-epoch, on an epoch's last step and at the warm-up → quadruple switch."""
    common = ["--pipeline", "moquad", "--data", small_demo, "split=train", "epochs=3", "method.appearance_warmup=0.34",
              "checkpoint_every=2", "keep_checkpoints=20"] + FAST
    full = str(tmp_path / "full")
    train.main(common + ["--out", full])  # 4 steps per epoch: epoch 0 warm-up, epochs 1-2 quadruples
    want = losses(full)
    assert sorted(want) == list(range(1, 13)) and "loss_appearance" in want[4] and "loss_quadruple" in want[5]
    checkpoints = sorted(glob.glob(os.path.join(full, "checkpoints", "ckpt-*.pt")))
    assert [load_checkpoint(c)["step"] for c in checkpoints] == [2, 4, 6, 8, 10, 12]
    for ckpt in checkpoints[:-1]:
        step = load_checkpoint(ckpt)["step"]
        run = str(tmp_path / f"from{step}")
        shutil.copytree(full, run)  # the finished run, resumed from an earlier checkpoint of its own
        final = train.main(["--pipeline", "moquad", "--resume", os.path.join(run, "checkpoints",
                                                                             os.path.basename(ckpt))])
        superseded = sorted(glob.glob(os.path.join(run, "checkpoints", "*.superseded")))
        assert len(superseded) == len([c for c in checkpoints if load_checkpoint(c)["step"] > step])  # kept aside
        got = losses(run)
        with open(os.path.join(run, "metrics.jsonl")) as f:
            assert [json.loads(r)["step"] for r in f] == list(range(1, 13)), step  # every step logged once
        for later in range(step + 1, 13):
            assert got[later]["epoch"] == want[later]["epoch"], (step, later)
            assert abs(got[later]["loss"] - want[later]["loss"]) < 1e-6, (step, later)
        assert load_checkpoint(final)["epoch"] == 3


def test_checkpoints_are_durable_and_stale_temporaries_go(tmp_path):
    """The writer removes the temporaries of dead writers, never a live one's; readers remove nothing."""
    import socket

    from motionssl.training import Checkpointer

    folder = tmp_path / "ckpts"
    folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    (folder / f"ckpt-00000004.pt.tmp-{host}-{gone}").write_bytes(b"half a checkpoint")  # a save killed midway
    (folder / f"ckpt-00000003.pt.tmp{gone}").write_bytes(b"the same, named by an older version")
    live = folder / f"ckpt-00000005.pt.tmp-{host}-{os.getpid()}"  # another run's save in progress
    live.write_bytes(b"being written")
    load_checkpoint_error = pytest.raises(FileNotFoundError)
    with load_checkpoint_error:
        load_checkpoint(str(folder))  # a reader: no checkpoint yet, and nothing removed
    assert len(list(folder.glob("*.tmp*"))) == 3
    saver = Checkpointer(str(folder), keep=2)
    assert [p.name for p in folder.glob("*.tmp*")] == [live.name]
    live.unlink()
    for step in (1, 2, 3):
        saver.save({"step": step}, step)
    assert [os.path.basename(p) for p in saver.list()] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    assert saver.latest_step() == 3 and load_checkpoint(str(folder))["step"] == 3


def test_a_fresh_run_refuses_a_folder_with_checkpoints(small_demo, tmp_path):
    out = str(tmp_path / "run")
    train.main(["--pipeline", "simclr", "--data", small_demo, "--out", out, "split=train", "max_steps=1"] + FAST)
    with pytest.raises(SystemExit, match="--resume"):
        train.main(["--pipeline", "simclr", "--data", small_demo, "--out", out, "split=train", "max_steps=1"] + FAST)


@pytest.mark.slow
def test_appearance_warmup_switches_graph(small_demo, tmp_path):
    out = str(tmp_path / "warm")
    train.main(["--pipeline", "moquad", "--data", small_demo, "--out", out, "split=train", "epochs=5",
                "method.appearance_warmup=0.4"] + FAST)
    rows = losses(out)
    steps_per_epoch = 4
    for step, row in rows.items():
        warm = step <= 2 * steps_per_epoch  # round(0.4 · 5) = 2 epochs of the appearance task
        assert ("loss_appearance" in row) == warm and ("loss_quadruple" in row) == (not warm), step


@pytest.mark.slow
def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\].*valid keys"):
        load_config([], ["epoch=3"])
    with pytest.raises(ValueError, match=r"unknown optim key\(s\) \['lrate'\]"):
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
    from motionssl.models.methods import create_method
    from motionssl.pipelines.iterators import build_config

    base = os.path.basename(path)
    files = [path]
    if "ablations" in path:  # an override file stacks onto its method's paper config
        files = [os.path.join(ROOT, "configs", base.split("_")[0] + "_r3d18.yaml"), path]
    folder = os.path.basename(os.path.dirname(path))
    pipeline = base[:-5] if folder in ("demo", "small") else base.split("_")[0]  # demo/<method>.yaml, small/<method>.yaml
    cfg = load_config(files, pipeline=pipeline)
    assert build_config(pipeline, cfg.pipeline_config) is cfg.pipeline_config  # built once, by load_config
    spec = get_method(pipeline)
    options = train.method_settings(spec, cfg.method)
    spec.phases(**{k: options[k] for k in spec.phase_options()})
    create_method(pipeline, backbone="tiny", **{k: options[k] for k in spec.model_options()})


def test_the_pipeline_config_is_built_once_into_the_methods_dataclass():
    from motionssl.pipelines.planners.mcpnet import MCPNetConfig

    cfg = load_config([os.path.join(ROOT, "configs", "small", "mcpnet.yaml")], ["pipeline_config.gap=3"],
                      pipeline="mcpnet")
    assert isinstance(cfg.pipeline_config, MCPNetConfig) and cfg.pipeline_config.clip.speeds == (1, 2)
    assert (cfg.pipeline_config.mip_negative, cfg.pipeline_config.gap) == ("reverse", 3)
    assert dataclasses.replace(cfg, epochs=2).pipeline_config is cfg.pipeline_config  # not built again
    with pytest.raises(ValueError, match=r"unknown pipeline_config key\(s\) \['motion'\]; valid keys: .*mip_negative"):
        load_config([], ["pipeline_config.motion=speed"], pipeline="mcpnet")  # MoQuad's key, not MCPNet's


def test_a_top_level_appearance_warmup_is_moquads_method_option_with_a_warning(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("epochs: 5\nappearance_warmup: 0.3\nmethod: {beta: 0.02}\n")
    with caplog.at_level(logging.WARNING):
        cfg = load_config([str(old)], pipeline="moquad")
    assert cfg.method == {"beta": 0.02, "appearance_warmup": 0.3}
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "old.yaml: appearance_warmup is deprecated; write method.appearance_warmup" in warned[0]
    assert load_config([str(old)], ["method.appearance_warmup=0.1"], pipeline="moquad").method["appearance_warmup"] == 0.1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cfg = load_config([], ["appearance_warmup=0"], pipeline="mcpnet")  # MCPNet never read it
    assert cfg.method == {} and "which mcpnet does not take: ignored" in caplog.records[0].getMessage()
    caplog.clear()
    saved = {"pipeline": "moquad", "appearance_warmup": 0.25, "method": {"beta": 0.01}}  # an older run's config
    with caplog.at_level(logging.WARNING):
        assert load_config([], [], base=saved).method == {"beta": 0.01, "appearance_warmup": 0.25}
        assert load_config([], [], base=dict(saved, pipeline="simclr", method={})).method == {}
    assert not caplog.records  # nothing for the user to change in a saved config
    with pytest.raises(SystemExit, match=r"^train.py: error: moquad: method\.appearance_warmup is a fraction of the "
                                         r"run in \[0, 1\), got 1\.0 "):
        train.main(["--pipeline", "moquad", "--out", str(tmp_path / "run"), "method.appearance_warmup=1"])
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"unknown method key\(s\) \['appearance_warmup'\]; valid keys: .*'temperature'"):
        train.method_settings(get_method("simclr"), {"appearance_warmup": 0.2})
    both = tmp_path / "both.yaml"  # the old and the new key in one file: which one was meant is not guessed
    both.write_text("appearance_warmup: 0.3\nmethod: {appearance_warmup: 0.1}\n")
    with pytest.raises(ConfigError, match=r"appearance_warmup and method\.appearance_warmup are both given in .*both\.yaml; "
                                          r"keep method\.appearance_warmup"):
        load_config([str(both)], pipeline="moquad")


def test_an_older_runs_checkpoint_resumes_and_may_change_the_warm_up(small_demo, tmp_path):
    """A checkpoint whose config has the top-level appearance_warmup (and no method.appearance_warmup) goes on;
    the warm-up may change on resuming, the method's model options may not."""
    out = str(tmp_path / "run")
    train.main(["--pipeline", "moquad", "--data", small_demo, "--out", out, "split=train", "steps=4",
                "checkpoint_every=2", "method.appearance_warmup=0.5"] + FAST)
    with open(os.path.join(out, "config.yaml")) as f:
        saved = yaml.safe_load(f)
    assert saved["method"]["appearance_warmup"] == 0.5 and "appearance_warmup" not in saved
    assert saved["pipeline_config"]["clip"]["frames"] == 4 and saved["pipeline_config"]["mode"] == "quad"
    ckpt = os.path.join(out, "checkpoints", "ckpt-00000002.pt")
    state = torch.load(ckpt, weights_only=False)
    state["config"]["appearance_warmup"] = state["config"]["method"].pop("appearance_warmup")  # the old layout
    torch.save(state, ckpt)
    with pytest.raises(SystemExit, match=r"method\.beta=0\.5 differs from the run's 0\.01"):
        train.main(["--pipeline", "moquad", "--resume", ckpt, "method.beta=0.5"])
    path = train.main(["--pipeline", "moquad", "--resume", ckpt, "method.appearance_warmup=0.25"])
    assert load_checkpoint(path)["config"]["method"]["appearance_warmup"] == 0.25
    assert "loss_quadruple" in losses(out)[3]  # the warm-up now ends at step 1 of 4


@pytest.mark.slow
def test_ddp_two_processes_on_gloo_with_retrieval_at_the_end(small_demo, tmp_path):
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "train.py", "--pipeline", "simclr", "--data", small_demo, "--out", out, "split=train", "test_split=test",
           "max_steps=2"] + FAST + ["retrieval=true"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(os.path.join(out, "checkpoints"))
    assert state["step"] == 2
    rows = losses(out)
    assert sorted(rows) == [1, 2]
    assert result.stdout.count("retrieval: 16 videos of ") == 1 and "8 test videos of " in result.stdout  # rank 0
    with open(os.path.join(out, "retrieval.json")) as f:
        table = json.load(f)
    assert table["pre-trained"]["num_queries"] == 8 and table["random init"]["num_gallery"] == 16


FIRST_RUN = """
import sys
from motionssl import runtime
from motionssl.pipelines import index as index_module, probing
probed = []
real = probing.probe
probing.probe = lambda path: probed.append(path) or real(path)
rt = runtime.start("cpu")
index = runtime.local_rank_zero_first(rt, lambda: index_module.load_index(sys.argv[1]))
print(f"rank {rt.rank}: {len(probed)} probed, frames {index.num_frames.tolist()}", flush=True)
runtime.stop(rt)
"""


@pytest.mark.slow
def test_ddp_first_run_indexes_once_per_machine(tmp_path):
    """Two ranks on one machine, no index cache yet: the first demuxes every video, the other reads its cache
    (train.py and eval.py load their data through ``runtime.local_rank_zero_first``)."""
    from tests.fixtures import write_id_videos

    videos = write_id_videos(str(tmp_path / "data"), [8, 5, 6])
    script = tmp_path / "first_run.py"
    script.write_text(FIRST_RUN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
           str(script), videos]
    env = dict(os.environ, MOTIONSSL_CACHE=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("rank "))
    assert lines == ["rank 0: 3 probed, frames [8, 5, 6]", "rank 1: 0 probed, frames [8, 5, 6]"], result.stdout


@pytest.mark.slow
def test_the_default_command_runs_on_the_embedded_demo(tmp_path):
    """`python train.py --pipeline moquad` as the README says, cut to two steps (on the CPU: a CPU test)."""
    out = str(tmp_path / "default")
    path = train.main(["--pipeline", "moquad", "--out", out, "max_steps=2", "retrieval=false", "device=cpu"])
    assert load_checkpoint(path)["step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_killed_run_leaves_no_decoding_workers(small_demo, tmp_path, sig):
    """SIGTERM: checkpoint at the step reached, workers stopped, exit 143. SIGKILL: the workers notice."""
    import signal
    import time

    import psutil

    out = str(tmp_path / "run")
    cmd = [sys.executable, "train.py", "--pipeline", "simclr", "--data", small_demo, "--out", out, "split=train",
           "epochs=200"] + FAST + ["loader.num_workers=2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = os.path.join(out, "metrics.jsonl")
        give_up = time.monotonic() + 600  # a guard against a hang, not a speed claim
        while not (os.path.exists(metrics) and len(open(metrics).readlines()) >= 3):
            if proc.poll() is not None or time.monotonic() > give_up:
                pytest.fail(f"the run ended or hung before its third step: {proc.communicate()[1][-2000:]}")
            time.sleep(0.2)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2  # DALI's decoding processes
        proc.send_signal(getattr(signal, sig))
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    def alive(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    give_up = time.monotonic() + 60  # the workers check for their parent every second
    while any(alive(w) for w in workers) and time.monotonic() < give_up:
        time.sleep(0.2)
    assert not any(alive(w) for w in workers), [w.pid for w in workers if alive(w)]
    if sig == "SIGTERM":
        assert proc.returncode == 143, stderr[-2000:]
        assert "stopped by a signal after step" in stderr and "--resume" in stderr
        logged = max(losses(out))
        assert load_checkpoint(os.path.join(out, "checkpoints"))["step"] >= logged  # nothing trained is lost
    else:
        assert proc.returncode == -signal.SIGKILL


def test_overrides_are_typed_and_every_config_error_is_one_line(small_demo, tmp_path):
    assert load_config([], ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML reads 1e-3 as a string
    assert load_config([], ["epochs=3.0"]).epochs == 3
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [3\n")
    base = ["--pipeline", "simclr", "--data", small_demo, "split=train", "--out", str(tmp_path / "r")] + FAST
    cases = [(["epochs=abc"], r"epochs='abc': expected a number"),
             (["epochs=2.5"], r"epochs=2.5: expected a whole number"),
             (["optim.lr=-1"], r"optim.lr must be positive"),
             (["device=tpu"], r"device='tpu'; choose one of \['auto', 'cpu', 'gpu'\]"),
             (["method.temperature=0"], r"method.temperature must be > 0"),
             (["retrieval=maybe"], r"retrieval='maybe': expected true or false"),
             (["--config", str(bad_yaml)], r"bad.yaml: not valid YAML \(.* line \d+, column \d+\)"),
             (["pipeline_config.clip.frames=0"], r"pipeline_config.clip: need frames >= 1"),
             (["optim.name=rmsprop"], r"optim.name='rmsprop'; choose one of \['adam', 'adamw', 'lars', 'sgd'\]"),
             (["optim.name=adamw", "optim.lr=null"], r"optim.lr is needed with optim.name=adamw")]
    for extra, match in cases:
        with pytest.raises(SystemExit, match=r"^train.py: error: .*" + match):
            train.main(base + extra)
    run = subprocess.run([sys.executable, "train.py", "--pipeline", "simclr", "epochs=abc"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode != 0 and run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr


def test_deterministic_runs_repeat_bit_for_bit(small_demo, tmp_path):
    """Two runs with deterministic=true give the same weights, bit for bit, and leave torch's settings as they were."""
    before = torch.are_deterministic_algorithms_enabled()
    weights = []
    for name in ("a", "b"):
        path = train.main(["--pipeline", "mcpnet", "--data", small_demo, "--out", str(tmp_path / name), "split=train",
                           "max_steps=4", "deterministic=true"] + FAST)
        weights.append(load_checkpoint(path)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert torch.are_deterministic_algorithms_enabled() == before
