"""Where a GPU is, or is not usable: the checks that must not pass with nothing run.

No machine that builds this project has a GPU, so a GPU host is imitated: a fake
``nvidia-smi`` on ``PATH`` reports an NVIDIA driver while CUDA stays unusable — what a host
with a driver older than the CUDA 13 builds need looks like. Nothing here initialises CUDA.
"""
import json
import os
import stat
import subprocess
import sys

import pytest

from benchmarks import gpu_check
from motionssl.models import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def old_driver(tmp_path, monkeypatch):
    """A fake ``nvidia-smi`` that reports driver 550.54.15 (older than CUDA 13 needs); the new PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 550.54.15\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    return path


def test_a_gpu_that_cuda_cannot_use_is_named_with_the_driver_it_needs(old_driver, monkeypatch):
    monkeypatch.setattr(runtime.torch.version, "cuda", "13.0")
    problem = runtime.cuda_problem(available=False)
    assert "driver 550.54.15" in problem and "R580 or newer" in problem and "CUDA 12 builds" in problem
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"driver 550\.54\.15.*device=cpu"):
        runtime.resolve_device("auto")  # never a silent fall-back to the CPU on a GPU host


def test_no_nvidia_gpu_is_not_a_problem(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert runtime.cuda_problem(available=False) is None


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime.torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(runtime.torch.cuda, "set_device", lambda device: pytest.fail("bound a GPU that is not there"))
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    with pytest.raises(ValueError, match=r"8 processes on this machine but 1 GPU\(s\).*--nproc_per_node 1"):
        runtime.start("gpu")


def _pytest(args, env_path=None):
    env = dict(os.environ, PATH=env_path or os.environ["PATH"])
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_pytest_m_gpu_fails_loudly_where_cuda_cannot_be_used(old_driver):
    run = _pytest(["-m", "gpu", "tests/models/test_backbones.py"], old_driver)
    assert run.returncode != 0, run.stdout[-2000:]
    assert "GPU tests asked for, but an NVIDIA GPU is present (driver 550.54.15)" in run.stdout + run.stderr
    clean = _pytest(["-m", "gpu", "tests/models/test_backbones.py"], old_driver.split(os.pathsep, 1)[1])  # no GPU
    assert clean.returncode == 0 and "skipped" in clean.stdout


def test_a_plain_pytest_leaves_the_gpu_tests_out(pytestconfig):
    """On a GPU host they would initialise CUDA in the test process, after which CPU tests run differently."""
    run = _pytest(["--collect-only", "tests/models/test_backbones.py"])
    assert "deselected" in run.stdout and "bf16_autocast_on_cuda" not in run.stdout
    asked = _pytest(["--collect-only", "-m", "gpu and not slow", "tests/models/test_backbones.py"])
    assert "bf16_autocast_on_cuda" in asked.stdout


@pytest.mark.slow
def test_the_gpu_check_fails_where_cuda_cannot_be_used(old_driver, tmp_path):
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, env=dict(os.environ, PATH=old_driver), timeout=300)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "driver 550.54.15" in (out / "gpu_check.md").read_text()


def test_the_gpu_check_keeps_every_stage_it_ran(tmp_path, monkeypatch):
    """The report is written after each stage; a stage that crashes fails alone; the exit status says so."""
    out = tmp_path / "report"
    seen = {}

    def environment(args, limit):
        return {"gpus": ["Fake GPU"], "figure": "Fake GPU"}

    def crashes(args, limit):
        raise RuntimeError("NVDEC went away")

    def looks_back(args, limit):
        seen["stages on disk"] = [s["stage"] for s in json.load(open(out / "gpu_check.json"))["stages"]]
        return {"figure": "ok"}

    monkeypatch.setattr(gpu_check, "cuda_gate", lambda: None)
    monkeypatch.setattr(gpu_check, "RUNNERS", {"environment": environment, "pytest": crashes,
                                               "nvdec_sizes": looks_back})
    status = gpu_check.main(["--out", str(out), "--stages", "environment", "pytest", "nvdec_sizes"])
    report = json.load(open(out / "gpu_check.json"))
    assert status == 1 and report["finished"] and not report["passed"]
    assert [(s["stage"], s["status"]) for s in report["stages"]] == [("environment", "passed"), ("pytest", "failed"),
                                                                      ("nvdec_sizes", "passed")]
    assert seen["stages on disk"] == ["environment", "pytest"]
    assert "| pytest | FAIL |" in (out / "gpu_check.md").read_text() and "NVDEC went away" in report["stages"][1][
        "message"]


def test_a_stage_past_its_limit_is_stopped_and_keeps_its_output(tmp_path):
    code = "import time; print('partial result', flush=True); time.sleep(120)"
    run = gpu_check.run_child([sys.executable, "-c", code], 3, str(tmp_path / "log.txt"))
    assert run["returncode"] is None and "partial result" in run["tail"]


def test_a_gpu_test_run_with_no_test_is_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_child", lambda *a, **k: {"returncode": 0, "tail": "", "seconds": 1.0,
                                                                 "command": "pytest"})
    args = type("Args", (), {"out": str(tmp_path), "quick": True, "fail_fast": False})()
    with pytest.raises(gpu_check.StageFailed, match="0 passed"):
        gpu_check.stage_pytest(args, 60)


def test_the_paper_path_reads_what_train_and_eval_wrote(tmp_path, monkeypatch):
    """The stage's commands and its figures, with train.py and eval.py stood in for (they need a GPU here)."""
    gallery, queries = tmp_path / "gallery.txt", tmp_path / "queries.txt"
    monkeypatch.setattr(gpu_check, "paper_lists", lambda args: (str(gallery), str(queries)))
    commands = []

    def fake_child(cmd, timeout, log_path, env=None):
        commands.append(cmd)
        if "train.py" in cmd:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out)
            rows = [{"step": s, "time": 100.0 + s / 2, "loss": 5.0 - s / 10, "clips_per_s": 512.0, "data_wait": 0.015,
                     "gpu_mem_gib": 21.5} for s in (4, 8, 12, 16)]
            with open(os.path.join(out, "metrics.jsonl"), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        else:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out)
            with open(os.path.join(out, "ckpt-00000016.retrieval.json"), "w") as f:
                json.dump({"metrics": {"top1": 0.25}}, f)
        return {"returncode": 0, "tail": "", "seconds": 1.0, "command": " ".join(cmd)}

    monkeypatch.setattr(gpu_check, "run_child", fake_child)
    args = type("Args", (), {"out": str(tmp_path / "report"), "quick": True})()
    result = gpu_check.stage_paper_path(args, 200)
    train = [c for c in commands if "train.py" in c]
    assert [c[c.index("--config") + 1] for c in train] == ["configs/moquad_r3d18.yaml", "configs/mcpnet_r3d18.yaml"]
    assert all(c[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"] and "device=gpu" in c
               for c in train)
    assert result["moquad"]["steps_per_s"] == 2.0 and result["mcpnet"]["retrieval_top1"] == 25.0
    assert "2.0 steps/s, 512.0 clips/s, 2 % waiting for data, 21.5 GiB" in result["figure"]
    assert "| moquad | 2.0 | 512.0 | 1.5 % | 21.5 GiB | 25.0 |" in gpu_check.markdown(
        {"command": "c", "date": "d", "stages": [{"stage": "paper_path", "status": "passed", "seconds": 1,
                                                  "message": "", "details": result}]})
