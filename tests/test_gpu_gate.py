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

from benchmarks import gpu_check, gpu_stages
from motionssl import runtime
from motionssl.training import load_config

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
    monkeypatch.setattr(gpu_stages, "run_child", lambda *a, **k: {"returncode": 0, "tail": "", "seconds": 1.0,
                                                                 "command": "pytest"})
    args = type("Args", (), {"out": str(tmp_path), "quick": True, "fail_fast": False})()
    with pytest.raises(gpu_check.StageFailed, match="0 passed"):
        gpu_check.stage_pytest(args, 60)


def _fake_smi(tmp_path, monkeypatch, rows):
    """A fake ``nvidia-smi`` answering the device query with ``rows`` (MiB used, MiB total, NVDEC %), one per call,
    then the last one again."""
    bin_dir = tmp_path / "smi"
    bin_dir.mkdir()
    (bin_dir / "rows").write_text("".join(f"{r}\n" for r in rows))
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncd {bin_dir}\nhead -n 1 rows\n[ $(wc -l < rows) -gt 1 ] && sed -i 1d rows\nexit 0\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_device_memory_is_all_of_it_at_the_peak(tmp_path, monkeypatch):
    """NVML's used memory (DALI's pools and every CUDA context, not PyTorch's peak alone), its peak over the run."""
    _fake_smi(tmp_path, monkeypatch, ["1024, 81559, 0", "62464, 81559, 71", "40960, 81559, [N/A]"])
    sampler = gpu_check.DeviceSampler()
    for _ in range(3):
        sampler.sample()
    assert sampler.summary() == {"device_mem_peak_gib": 61.0, "device_mem_total_gib": 79.6, "samples": 3,
                                 "nvdec_peak_percent": 71.0, "nvdec_mean_percent": 35.5}
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_check.DeviceSampler().summary() == {"device_memory": "not measured (no nvidia-smi)"}


def test_the_paper_path_reads_what_train_and_eval_wrote(tmp_path, monkeypatch):
    """The stage's commands and its figures, with train.py and eval.py stood in for (they need a GPU here)."""
    _fake_smi(tmp_path, monkeypatch, ["25600, 81559, 3"])
    lists = tmp_path / "train.txt", tmp_path / "gallery.txt", tmp_path / "queries.txt"
    monkeypatch.setattr(gpu_stages, "paper_lists", lambda args: tuple(map(str, lists)))
    commands = []

    def fake_child(cmd, timeout, log_path, env=None):
        commands.append(cmd)
        if "train.py" in cmd:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out)
            rows = [{"step": s, "time": 100.0 + s / 2, "loss": 5.0 - s / 10, "clips_per_s": 512.0, "data_wait": 0.015,
                     "step_s": 0.125, "gpu_mem_gib": 21.5} for s in (4, 8, 12, 16)]
            with open(os.path.join(out, "metrics.jsonl"), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        else:
            out = cmd[cmd.index("--out") + 1]
            os.makedirs(out)
            with open(os.path.join(out, "ckpt-00000016.retrieval.json"), "w") as f:
                json.dump({"metrics": {"top1": 0.25}}, f)
        return {"returncode": 0, "tail": "", "seconds": 1.0, "command": " ".join(cmd)}

    monkeypatch.setattr(gpu_stages, "run_child", fake_child)
    args = type("Args", (), {"out": str(tmp_path / "report"), "quick": True})()
    result = gpu_check.stage_paper_path(args, 200)
    train = [c for c in commands if "train.py" in c]
    assert [c[c.index("--config") + 1] for c in train] == ["configs/moquad_r3d18.yaml", "configs/mcpnet_r3d18.yaml"]
    assert all(c[:2] == [sys.executable, "train.py"] and "device=gpu" in c for c in train)  # one process
    assert all(c[c.index("--data") + 1] == str(lists[0]) for c in train)
    assert result["moquad"]["step_s"] == 0.125 and result["mcpnet"]["retrieval_top1"] == 25.0
    assert ("0.125 s/step, 512.0 clips/s, 2 % of step time waiting for data, 21.5 GiB PyTorch peak, 25.0 GiB on "
            "the device") in result["figure"]
    assert "| moquad | 0.125 | 512.0 | 1.5 % | 21.5 GiB | 25.0 GiB (25.0) | 25.0 |" in gpu_check.markdown(
        {"command": "c", "date": "d", "stages": [{"stage": "paper_path", "status": "passed", "seconds": 1,
                                                  "message": "", "details": result}]})


TORCHRUN_LIKE = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(str(worker.pid))
print("worker started", flush=True)
time.sleep(int(sys.argv[2]))
"""


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("launcher_sleeps", [120, 0], ids=["launcher-past-its-limit", "launcher-exits-first"])
def test_nothing_a_stage_started_outlives_it(tmp_path, launcher_sleeps):
    """torchrun starts each worker in a session of its own: killing the launcher's group leaves it on the GPU."""
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "launcher.py"
    script.write_text(TORCHRUN_LIKE)
    run = gpu_check.run_child([sys.executable, str(script), str(pid_file), str(launcher_sleeps)], 5,
                              str(tmp_path / "log.txt"))
    worker = int(pid_file.read_text())
    try:
        assert (run["returncode"] is None) == bool(launcher_sleeps) and "worker started" in run["tail"]
        assert not _alive(worker), "the worker outlived its stage"
    finally:
        if _alive(worker):
            os.kill(worker, 9)


@pytest.fixture
def broken_smi(tmp_path, monkeypatch):
    """A host whose NVIDIA kernel driver is loaded while ``nvidia-smi`` fails (a driver updated without a reboot)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build\n")
    monkeypatch.setattr(gpu_check, "NVIDIA_KERNEL_VERSION", str(version))
    monkeypatch.setattr(gpu_check, "NVIDIA_DEVICES", str(tmp_path / "dev" / "nvidia[0-9]*"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    return tmp_path


def _gpu_collection(monkeypatch):
    """``tests/conftest.py``'s collection hook with ``-m gpu`` asked for, one GPU test and no usable CUDA."""
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "cuda_available", lambda: False)
    config = type("Config", (), {"option": type("Option", (), {"markexpr": "gpu"})()})()
    item = type("Item", (), {"keywords": {"gpu": True}, "add_marker": lambda self, mark: None})()
    return lambda: conftest.pytest_collection_modifyitems(config, [item])


def test_pytest_m_gpu_fails_where_the_driver_is_loaded_but_nvidia_smi_fails(broken_smi, monkeypatch):
    with pytest.raises(pytest.UsageError) as error:
        _gpu_collection(monkeypatch)()
    message = str(error.value)
    assert "\n" not in message and "570.86.15" in message and "exit 18" in message and "version mismatch" in message
    assert gpu_check.cuda_gate()[0] == 1  # the acceptance check fails too, rather than "no GPU here"


def test_pytest_m_gpu_fails_where_the_device_nodes_exist_but_nvidia_smi_is_missing(broken_smi, monkeypatch):
    os.remove(broken_smi / "version")
    (broken_smi / "dev").mkdir()
    (broken_smi / "dev" / "nvidia0").write_text("")
    monkeypatch.setenv("PATH", str(broken_smi / "empty"))  # no nvidia-smi at all
    with pytest.raises(pytest.UsageError, match=r"nvidia0.*nvidia-smi is not on PATH"):
        _gpu_collection(monkeypatch)()


def test_a_machine_with_no_nvidia_driver_skips_the_gpu_tests(broken_smi, monkeypatch):
    os.remove(broken_smi / "version")
    monkeypatch.setenv("PATH", str(broken_smi / "empty"))
    _gpu_collection(monkeypatch)()  # no error: skipped
    assert gpu_check.cuda_gate()[0] == 2


def test_a_cpu_test_that_asks_cuda_fails(cuda_guard):
    """On a GPU host the question would initialise CUDA in the test process (or train a CPU test on the GPU)."""
    import torch

    for ask in (torch.cuda.is_available, torch.cuda.device_count, torch.cuda.mem_get_info,
                lambda: torch.zeros(1).to("cuda")):
        with pytest.raises(pytest.fail.Exception, match="in a CPU test"):
            try:
                ask()
            except Exception:  # what code that probes CUDA defensively does
                pass
    assert cuda_guard == ["torch.cuda.is_available", "torch.cuda.device_count", "torch.cuda.mem_get_info",
                          "torch.cuda._lazy_init"]
    cuda_guard.clear()  # asked on purpose


class _Clock:
    """A simulated clock for the check's bookkeeping: stages "take" seconds without taking them."""

    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now

    def strftime(self, *args):
        import time

        return time.strftime(*args)


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_the_plan_adds_up_to_its_budget(tmp_path, monkeypatch, quick):
    """Every stage using all of its time still leaves each later stage its own: the plan fits the budget."""
    plan = gpu_check.PLAN[quick]
    assert sum(plan.values()) == gpu_check.BUDGET[quick]
    assert list(plan) == list(gpu_check.QUICK_STAGES if quick else gpu_check.STAGES)
    paper = gpu_check.PAPER_PATH[quick]
    assert len(gpu_check.paper_methods()) * (paper["train"] + paper["eval"]) == plan["paper_path"]
    clock = _Clock()
    given = {}

    def uses_all_of_it(name):
        def runner(args, limit):
            given[name] = limit
            clock.now += limit
            return {"figure": "ok"}

        return runner

    monkeypatch.setattr(gpu_check, "time", clock)
    monkeypatch.setattr(gpu_check, "cuda_gate", lambda: None)
    monkeypatch.setattr(gpu_check, "RUNNERS", {name: uses_all_of_it(name) for name in gpu_check.STAGES})
    assert gpu_check.main(["--out", str(tmp_path)] + ["--quick"] * quick) == 0
    assert given == pytest.approx(plan) and clock.now - 1000.0 == pytest.approx(gpu_check.BUDGET[quick])


def test_a_stage_that_ran_out_of_time_says_so_apart_from_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_stages, "run_child", lambda *a, **k: {"returncode": None, "tail": "", "seconds": 75.0,
                                                                 "command": "pytest"})
    args = type("Args", (), {"out": str(tmp_path), "quick": True, "fail_fast": False})()
    stage = gpu_check.run_stage("pytest", args, 75)
    assert stage["status"] == "out of time" and "ran past 75 s" in stage["message"]
    report = {"command": "c", "date": "d", "stages": [stage]}
    assert "| pytest | OUT OF TIME |" in gpu_check.markdown(report)


def test_the_paper_path_keeps_to_its_plan_and_a_late_run_is_out_of_time(tmp_path, monkeypatch):
    """Each command that uses all of its time leaves the later ones theirs; one cut short makes the stage
    "out of time", not "failed"."""
    clock = _Clock()
    plan = gpu_check.PAPER_PATH[True]
    limits = []

    def lists(args):
        return str(tmp_path / "train.txt"), str(tmp_path / "gallery.txt"), str(tmp_path / "queries.txt")

    def uses_all_of_it(cmd, timeout, log_path, env=None):
        limits.append((cmd[1], timeout))
        clock.now += timeout
        return {"returncode": None, "tail": "", "seconds": timeout, "command": " ".join(cmd)}

    monkeypatch.setattr(gpu_stages, "time", clock)
    monkeypatch.setattr(gpu_stages, "paper_lists", lists)
    monkeypatch.setattr(gpu_stages, "run_child", uses_all_of_it)
    args = type("Args", (), {"out": str(tmp_path / "report"), "quick": True})()
    with pytest.raises(gpu_check.StageFailed, match=f"moquad: train.py ran past its {plan['train']} s") as late:
        gpu_check.stage_paper_path(args, gpu_check.PLAN[True]["paper_path"])
    assert late.value.out_of_time
    # no eval.py after a run cut short: its time goes to the next method
    assert limits == [("train.py", pytest.approx(plan["train"])), ("train.py", pytest.approx(plan["train"] + plan["eval"]))]


def test_the_step_meter_leaves_out_the_start_up_and_times_synchronised_steps(monkeypatch):
    """3 s of start-up (pipeline build, worker start, first prefetch), then 16 steps of 0.1 s with the batches
    always ready: no data wait, and the clips/s of the steps alone. The device is synchronised before a step's
    end is taken, so a backward pass still running counts as the step, not as waiting for the next batch."""
    from motionssl import train

    clock = _Clock()
    monkeypatch.setattr(train.time, "perf_counter", clock.time)
    synced = []

    def sync():  # the device finishes the step's last 0.06 s after the host has queued it
        synced.append(clock.now)
        clock.now += 0.06

    meter = train.ClipRate(sync=sync)
    clock.now += 3.0  # the iterator builds its pipeline, starts its workers, fetches the first batch
    for _ in range(16):
        meter.arrived()  # ready at once
        clock.now += 0.04  # the host queues forward, backward and the optimizer step
        meter.step(8)
    assert len(synced) == 16
    assert meter.wait_share == pytest.approx(0.0, abs=1e-9) and meter.rate == pytest.approx(80.0)
    assert meter.step_seconds == pytest.approx(0.1)
    for _ in range(8):  # now each batch is late by 0.1 s: half of each synchronised step is the data stall
        clock.now += 0.1
        meter.arrived()
        clock.now += 0.04
        meter.step(8)
    meter.restart()  # a new phase (MoQuad's switch to quadruples): its start-up is not a stall either
    clock.now += 2.0
    for _ in range(16):
        meter.arrived()
        clock.now += 0.04
        meter.step(8)
    assert meter.wait_share == pytest.approx(0.0, abs=1e-9) and meter.rate == pytest.approx(80.0)


def test_the_step_meter_reports_a_steady_data_stall(monkeypatch):
    from motionssl import train

    clock = _Clock()
    monkeypatch.setattr(train.time, "perf_counter", clock.time)
    meter = train.ClipRate()
    clock.now += 3.0
    for _ in range(30):
        meter.arrived()
        clock.now += 0.1
        meter.step(8)
        clock.now += 0.1  # the next batch is 0.1 s late every step
    assert meter.wait_share == pytest.approx(0.5) and meter.rate == pytest.approx(40.0)


def test_the_paper_path_trains_on_at_least_50_batches_per_epoch(tmp_path, monkeypatch):
    """With 2 batches per epoch DALI's prefetch restarts every step or two: no steady-state figure."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "list.txt").write_text("".join(f"videos/v{v:04d}.mp4 {v % 10}\n" for v in range(96)))
    monkeypatch.setattr(gpu_stages, "bench_data", lambda args: str(data / "list.txt"))
    train, gallery, queries = gpu_check.paper_lists(None)
    train_lines, gallery_lines = open(train).readlines(), open(gallery).readlines()
    biggest = max(load_config([os.path.join(ROOT, c)], pipeline=n).batch_size for n, c in gpu_check.paper_methods().items())
    assert len(train_lines) >= 50 * biggest and set(train_lines) == set(gallery_lines)
    assert len(gallery_lines) == 72 and len(open(queries).readlines()) == 24  # evaluation: each video once


def _nvdec_sizes(tmp_path, monkeypatch, decode):
    """The ``nvdec_sizes`` stage with NVDEC faked by ``decode`` and its child process run in this one."""
    from motionssl.pipelines.decoders import dali as decoding

    def in_process(cmd, timeout, log_path, env=None):
        gpu_check.probe_sizes(str(tmp_path / "nvdec_sizes.jsonl"))
        return {"returncode": 0, "tail": "", "seconds": 0.0, "command": "probe_sizes"}

    monkeypatch.setattr(decoding, "nvdec_probe", decode)
    monkeypatch.setattr(gpu_stages, "run_child", in_process)
    return gpu_check.run_stage("nvdec_sizes", gpu_check.argparse.Namespace(out=str(tmp_path)), 60)


def _by_size(path, device_id=0):
    """NVDEC as the table assumes it: the probe's file is named ``<codec>-<w>x<h>.<ext>``."""
    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE

    codec, size = os.path.splitext(os.path.basename(path))[0].split("-")
    width, height = map(int, size.split("x"))
    w, h = NVDEC_MIN_SIZE[codec]
    return None if width >= w and height >= h else "Video is too small in at least one dimension"


def test_the_nvdec_size_verdict_claims_only_what_it_measured(tmp_path, monkeypatch):
    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE

    stage = _nvdec_sizes(tmp_path, monkeypatch, _by_size)
    assert stage["status"] == "passed", stage["message"]
    measured = {r["codec"] for r in stage["details"]["rows"] if r["outcome"] in ("decoded", "refused")}
    assert measured == set(NVDEC_MIN_SIZE)  # HEVC and AV1 too: PyAV's libx265 and libsvtav1 write them
    monkeypatch.setitem(gpu_check.ENCODERS, "av1", ("no-such-encoder", ".mkv"))
    stage = _nvdec_sizes(tmp_path, monkeypatch, _by_size)
    assert "not measured: av1" in stage["figure"] and "av1" not in stage["figure"].split("not measured")[0]


def test_a_probe_error_below_the_minimum_is_no_refusal(tmp_path, monkeypatch):
    """Only NVDEC's own refusal shows the minimum; a failure unrelated to size (out of memory, a driver error) does
    not."""
    from motionssl.pipelines.decoders.dali import ProbeError

    def out_of_memory_below(path, device_id=0):
        if _by_size(path) is None:
            return None
        raise ProbeError(f"decoding {path} with NVDEC on GPU 0 failed: CUDA error: out of memory")

    stage = _nvdec_sizes(tmp_path, monkeypatch, out_of_memory_below)
    assert stage["status"] == "failed" and "out of memory" in stage["message"]


def test_the_paper_mcpnet_configs_treat_batchnorm_as_every_fidelity_row_did():
    """The paper is silent on BatchNorm for residual clips; every MCPNet row of benchmarks/FIDELITY.md (the small
    config and the ablations on it) trained with the residual clips' own BatchNorm, and the one-batch setting
    (`joint`) never trained there. The paper configurations, and the GPU check that runs them, say the same."""
    small = load_config([os.path.join(ROOT, "configs", "small", "mcpnet.yaml")], pipeline="mcpnet")
    for name in ("mcpnet_r3d18.yaml", "mcpnet_s3dg.yaml"):
        paper = load_config([os.path.join(ROOT, "configs", name)], pipeline="mcpnet")
        assert paper.method["residual_bn"] == small.method["residual_bn"] == "own", name
    assert "residual_bn: own" in gpu_check.__doc__


def test_the_decode_rate_is_written_as_it_goes(tmp_path):
    """The NVDEC stage's child, run here on the CPU with PyAV: one line per block of batches, frames counted."""
    from benchmarks.make_data import generate

    videos = generate(str(tmp_path / "data"), codecs=("h264",), videos=4, width=64, height=48, seconds=1.0)["h264"]
    out = tmp_path / "rate.jsonl"
    gpu_check.decode_rate(videos, str(out), seconds=0.0, device="cpu", decoder="pyav", batch_size=2, block=2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["frames"] == 2 * 2 * 16 and rows[0]["frames_per_s"] > 0


def test_an_nvdec_rate_cut_short_keeps_what_it_measured(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, ["2048, 81559, 0", "3072, 81559, 64"])
    monkeypatch.setattr(gpu_stages, "bench_data", lambda args: str(tmp_path / "list.txt"))

    def writes_then_hangs(cmd, timeout, log_path, env=None):
        with open(tmp_path / "nvdec_rate.jsonl", "w") as f:
            f.writelines(json.dumps({"frames": 512, "seconds": 0.25, "frames_per_s": 2048.0}) + "\n" for _ in range(2))
        return {"returncode": None, "tail": "", "seconds": timeout, "command": " ".join(cmd)}

    monkeypatch.setattr(gpu_stages, "run_child", writes_then_hangs)
    stage = gpu_check.run_stage("nvdec_rate", gpu_check.argparse.Namespace(out=str(tmp_path)), 15)
    assert stage["status"] == "out of time" and stage["details"]["frames_per_s"] == 2048
    assert "2048 frames/s" in stage["figure"] and "NVDEC: 2048 frames/s" in gpu_check.markdown(
        {"command": "c", "date": "d", "stages": [stage]})


def test_the_data_stage_writes_and_indexes_the_lists(tmp_path, monkeypatch):
    """Indexed before train.py and eval.py start, which then read the cache instead of probing within their time."""
    from benchmarks.make_data import generate

    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gpu_stages, "STEADY_BATCHES", 1)  # a short training list: indexing it here costs seconds
    monkeypatch.setattr(gpu_stages, "bench_data", lambda args: generate(
        os.path.join(args.out, "data"), codecs=("h264",), videos=args.videos, width=64, height=48, seconds=1.0)["h264"])

    def in_process(cmd, timeout, log_path, env=None):
        gpu_check.prepare_data(str(tmp_path), 8)
        return {"returncode": 0, "tail": "", "seconds": 0.0, "command": "prepare_data"}

    monkeypatch.setattr(gpu_stages, "run_child", in_process)
    stage = gpu_check.run_stage("data", gpu_check.argparse.Namespace(out=str(tmp_path), videos=8), 20)
    assert stage["status"] == "passed", stage["message"]
    assert stage["details"]["videos"] == {"train": 66, "gallery": 6, "queries": 2}  # 64 clips: 11 times the gallery
    assert len(os.listdir(tmp_path / "cache" / "index")) == 3


def test_the_sync_batchnorm_conversion_is_reported_once(monkeypatch, capsys):
    import torch

    from benchmarks import shared_gpu

    monkeypatch.setattr(torch.nn.SyncBatchNorm, "convert_sync_batchnorm", torch.nn.SyncBatchNorm.convert_sync_batchnorm)
    monkeypatch.setenv("RANK", "0")
    shared_gpu.report_sync_batchnorm()
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4),
                              torch.nn.Sequential(torch.nn.BatchNorm3d(4)))
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert isinstance(converted[1], torch.nn.SyncBatchNorm)
    assert capsys.readouterr().out == f"{shared_gpu.SYNC_BN} 2\n"


@pytest.mark.parametrize("resumed_loss_shift", [0.0, 0.01], ids=["repeats", "departs"])
def test_the_ddp_stage_compares_the_resumed_run_step_for_step(tmp_path, monkeypatch, resumed_loss_shift):
    """Two ranks on the one GPU, SyncBatchNorm counted, a resume from the mid-epoch checkpoint compared with the
    uninterrupted run (train.py stood in for: it needs a GPU here)."""
    monkeypatch.setattr(gpu_stages, "paper_lists", lambda args: tuple(str(tmp_path / n) for n in ("t", "g", "q")))
    commands = []

    def fake_child(cmd, timeout, log_path, env=None):
        commands.append(cmd)
        resume = "--resume" in cmd
        out = os.path.dirname(os.path.dirname(cmd[cmd.index("--resume") + 1])) if resume else cmd[cmd.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        steps = range(5, 9) if resume else range(1, 9)
        with open(os.path.join(out, "metrics.jsonl"), "w" if not resume else "a") as f:
            f.writelines(json.dumps({"step": s, "epoch": 0, "loss": 5.0 - s / 10 + resume * resumed_loss_shift}) + "\n"
                         for s in steps)
        with open(log_path, "w") as log:
            log.write("" if resume else "SyncBatchNorm layers: 42\n" + "a progress bar\n" * 1000)
        return {"returncode": 0, "tail": "", "seconds": 1.0, "command": " ".join(cmd)}

    monkeypatch.setattr(gpu_stages, "run_child", fake_child)
    args = type("Args", (), {"out": str(tmp_path / "report"), "quick": True})()
    stage = gpu_check.run_stage("ddp", args, 35)
    first, second = commands
    assert first[:9] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                         "benchmarks.shared_gpu", "--pipeline"] and "configs/mcpnet_r3d18.yaml" in first
    assert "device=gpu" in first and "deterministic=true" in first and "checkpoint_every=4" in first
    assert second[-1].endswith(os.path.join("ddp-resumed", "checkpoints", "ckpt-00000004.pt"))
    if resumed_loss_shift:
        assert stage["status"] == "failed" and "step 8's loss 4.210000 against 4.200000" in stage["message"]
    else:
        assert stage["status"] == "passed", stage["message"]
        assert "42 SyncBatchNorm layers" in stage["figure"] and "within 0.0e+00" in stage["figure"]


@pytest.mark.slow
def test_two_ranks_share_one_device_and_resume_mid_epoch(tmp_path):
    """The ddp stage's commands on the CPU: two torchrun ranks, each told it is local rank 0, over gloo, then the
    run resumed from its mid-epoch checkpoint repeats the uninterrupted run's losses."""
    from motionssl.pipelines import demo

    data = demo.generate(str(tmp_path / "demo"), per_class=3, test_per_class=1, workers=1)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "benchmarks.shared_gpu", "--pipeline", "simclr"]
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    run = subprocess.run(torchrun + ["--data", data, "--out", full, "split=train", "max_steps=4", "checkpoint_every=2",
                                     "device=cpu", "batch_size=2", "log_every=1", "retrieval=false",
                                     "loader.num_workers=0", "pipeline_config.clip.augment.size=[32,32]",
                                     "pipeline_config.clip.frames=4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "batch 2x2" in run.stdout + run.stderr  # one run of two ranks
    import shutil

    shutil.copytree(full, resumed)
    again = subprocess.run(torchrun + ["--resume", os.path.join(resumed, "checkpoints", "ckpt-00000002.pt")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    want, got = gpu_check.metrics(full), gpu_check.metrics(resumed)
    assert sorted(got) == [1, 2, 3, 4] and all(abs(got[s]["loss"] - want[s]["loss"]) < 1e-6 for s in (3, 4))
