"""Smoke tests of the benchmark scripts: they run end to end on tiny data and write what they promise.

No timing assertions: speed claims belong in benchmarks/RESULTS.md, never in unit tests.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import data_stall, throughput
from benchmarks.common import close
from benchmarks.decode_only import build_iterator
from benchmarks.make_data import SMALL
from benchmarks.cost_split import decode_window_one_thread
from motionssl.pipelines import PIPELINES
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.decoders.torchcodec import torchcodec_available
from motionssl.pipelines.index import load_index
from motionssl.pipelines.reference_loader import reference_loader
from motionssl.pipelines.video_io import frame_timestamps, probe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny settings: 4-frame clips at 32², batches of 2; the small videos hold 40 frames,
# more than the longest window (MCPNet: 3·2 + 4·2 + 1 = 15 frames).
TINY = ["--frames", "4", "--size", "32", "--batch-size", "2", "--batches", "1", "--repeats", "2", "--warmup", "1",
        "--workers", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """``make_data.py --small`` run as the command a user types; returns the output folder."""
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, "-m", "benchmarks.make_data", "--small", "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True, text=True)
    return out


@pytest.mark.slow
def test_make_data_small_writes_readable_videos(small):
    for codec in ("vp9", "h264"):
        index = load_index(str(small / codec / "list.txt"))
        assert len(index) == SMALL["videos"]
        assert sorted(set(index.labels.tolist())) == list(range(SMALL["videos"]))
        for path in index.paths:
            info = probe(path)
            assert info.codec == codec
            assert (info.width, info.height) == (SMALL["width"], SMALL["height"])
            assert info.num_frames == round(SMALL["seconds"] * SMALL["fps"])
        frames = read_window(index.paths[0], 5, 8)
        assert frames.shape == (8, SMALL["height"], SMALL["width"], 3)
        assert frames.std() > 10  # textured and moving, not flat frames
        assert np.abs(np.diff(frames.astype(np.float32), axis=0)).mean() > 1
        manifest = json.loads((small / codec / "manifest.json").read_text())
        assert manifest["gop"] == 16 and manifest["codec"] == codec


@pytest.mark.slow
def test_make_data_rerun_keeps_files(small):
    before = os.path.getmtime(small / "vp9" / "videos" / "v0000.webm")
    subprocess.run([sys.executable, "-m", "benchmarks.make_data", "--small", "--out", str(small), "--codecs", "vp9"],
                   cwd=ROOT, check=True, capture_output=True)
    assert os.path.getmtime(small / "vp9" / "videos" / "v0000.webm") == before


def test_one_thread_decode_matches_read_window(small):
    path = load_index(str(small / "vp9" / "list.txt")).paths[1]
    stamps = frame_timestamps(path)
    np.testing.assert_array_equal(decode_window_one_thread(path, 20, 30, stamps),
                                  read_window(path, 20, 30, timestamps=stamps))  # padded past the end too


def test_decode_only_pipeline_outputs_the_window(small):
    index = load_index(str(small / "vp9" / "list.txt"))
    it = build_iterator("decode", index, 2, "cpu", 0, {"window": 6}, num_workers=0)
    assert "decode" not in PIPELINES  # a spec of its own: the registry is never modified
    batch = next(iter(it))
    assert batch["window"].shape == (2, 6, SMALL["height"], SMALL["width"], 3)
    assert batch["window"].dtype == torch.uint8
    want = next(iter(reference_loader(it, num_workers=0)))  # the same windows, decoded by the baseline
    assert torch.equal(batch["window"], want["window"]) and torch.equal(batch["index"], want["index"])
    close(it)


@pytest.mark.slow
def test_throughput_end_to_end_writes_json(small, tmp_path):
    out = tmp_path / "throughput.json"
    result = throughput.main(["--data", str(small / "vp9" / "list.txt"), "--pipelines", "decode", "mcpnet",
                              "--decoders", "pyav", "dali", "--peer-decoders", "pyav",
                              "--operators", "--profile", "--out", str(out)] + TINY)
    saved = json.loads(out.read_text())
    assert saved["pipelines"].keys() == result["pipelines"].keys() == {"decode", "mcpnet"}
    env = saved["environment"]
    for key in ("device", "cpu_model", "cpu_count", "torch", "dali", "pyav", "numpy"):
        assert env[key]
    assert saved["resolution"] == [SMALL["width"], SMALL["height"]] and saved["codec"] == "vp9"
    assert saved["batch_size"] == 2 and saved["workers"] == 1 and "window length" in saved["definition"]
    mcpnet = saved["pipelines"]["mcpnet"]
    assert mcpnet["frames_per_clip"] == 4 and mcpnet["window"] == 15 and mcpnet["size"] == 32
    producers = {r["producer"] for r in mcpnet["results"]}
    assert producers == {"peer[pyav]", "pipeline[pyav]", "pipeline[dali]", "reference", "ceiling[pyav]",
                         "ceiling[pyav; read]"}  # the whole window's decode, and the frames the clips read
    by = {r["producer"]: r for r in mcpnet["results"]}
    for row in mcpnet["results"]:  # "vs ceil" against the frames read, "vs win" against the whole window
        assert row["vs_ceiling"] == pytest.approx(row["windows_per_s"] / by["ceiling[pyav; read]"]["windows_per_s"])
        assert row["vs_window_ceiling"] == pytest.approx(row["windows_per_s"] / by["ceiling[pyav]"]["windows_per_s"])
    decode = {r["producer"] for r in saved["pipelines"]["decode"]["results"]}
    assert "ceiling[pyav]" in decode and "ceiling[pyav; read]" not in decode  # decode-only reads every frame
    assert mcpnet["results"][0]["producer"] == "peer[pyav]"  # the table leads with what users would pick instead
    for row in mcpnet["results"]:
        assert len(row["seconds"]) == 2
        assert row["windows_per_s"] > 0 and row["decoded_frames_per_s"] == pytest.approx(15 * row["windows_per_s"])
        assert row["vs_reference"] > 0 and row["vs_ceiling"] > 0 and row["vs_peer"] > 0
        assert len(row["other_load"]) == 2  # the other processes' CPU share, shown next to each figure
    peer = next(r for r in mcpnet["results"] if r["producer"] == "peer[pyav]")
    assert peer["vs_peer"] == pytest.approx(1.0)
    loaders = [r for r in mcpnet["results"] if not r["producer"].startswith("ceiling")]
    assert {r["clips_per_sample"] for r in loaders} == {3}
    ops = mcpnet["operators_per_batch"]
    assert ops["NumbaFuncImpl"] == 3  # one fused operator per clip on the CPU
    assert set(mcpnet["profile"]) >= {"decode_1thread", "decode_read_window", "draw", "graph_1thread", "handoff",
                                      "graph_1thread_unfused", "peer_1thread"}
    assert mcpnet["profile"]["graph_1thread_unfused"] > 0 and mcpnet["profile"]["peer_1thread"] > 0
    assert set(mcpnet["profile"]["cpu"]) == {"decode_1thread", "graph_1thread", "graph_1thread_unfused",
                                             "peer_1thread"}
    assert mcpnet["profile"]["graph_per_decode_cpu"] > 0 and mcpnet["profile"]["graph_per_ceiling_decode"] > 0


def test_throughput_skips_dali_cpu_decoder_on_h264(small, tmp_path):
    result = throughput.main(["--data", str(small / "h264" / "list.txt"), "--pipelines", "decode", "--no-reference",
                              "--decoders", "pyav", "dali", "--no-peer", "--out", str(tmp_path / "t.json")] + TINY)
    rows = result["pipelines"]["decode"]["results"]
    assert [r["producer"] for r in rows] == ["pipeline[pyav]", "ceiling[pyav]"]
    assert result["codec"] == "h264"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simclr", "moquad"])
def test_throughput_every_method(small, tmp_path, name):
    result = throughput.main(["--data", str(small / "vp9" / "list.txt"), "--pipelines", name, "--decoders", "pyav",
                              "--out", str(tmp_path / "t.json")] + TINY)
    assert result["pipelines"][name]["results"][0]["clips_per_sample"] == {"simclr": 2, "moquad": 4}[name]


def test_throughput_torchcodec_rows(small, tmp_path):
    reason = torchcodec_available()  # asked inside the test, never while collecting
    if reason:
        pytest.skip(f"torchcodec unusable: {reason}")
    result = throughput.main(["--data", str(small / "vp9" / "list.txt"), "--pipelines", "simclr", "--no-reference",
                              "--decoders", "torchcodec", "--peer-decoders", "torchcodec", "pyav",
                              "--out", str(tmp_path / "t.json")] + TINY)
    rows = {r["producer"]: r for r in result["pipelines"]["simclr"]["results"]}
    assert set(rows) == {"peer[torchcodec]", "peer[pyav]", "pipeline[torchcodec]", "ceiling[pyav]",
                         "ceiling[torchcodec]"}
    pipeline = rows["pipeline[torchcodec]"]  # compared with the peer and the ceiling of its own decoder
    assert pipeline["vs_peer"] == pytest.approx(pipeline["windows_per_s"] / rows["peer[torchcodec]"]["windows_per_s"])
    assert pipeline["vs_ceiling"] == pytest.approx(
        pipeline["windows_per_s"] / rows["ceiling[torchcodec]"]["windows_per_s"])


def test_throughput_refuses_torchcodec_when_unusable(monkeypatch, capsys):
    monkeypatch.setattr(throughput, "torchcodec_available", lambda: "torchcodec is not installed; pip install ...")
    with pytest.raises(SystemExit):
        throughput.parse_args(["--decoders", "torchcodec"])
    assert "torchcodec is not installed" in capsys.readouterr().err
    args = throughput.parse_args([])  # the default quietly leaves the torchcodec rows out
    assert "torchcodec" not in args.decoders + args.peer_decoders and args.ceilings == ["pyav"]


def test_throughput_gpu_only_peer_decoder_is_refused_on_cpu(capsys):
    with pytest.raises(SystemExit):
        throughput.parse_args(["--device", "cpu", "--peer-decoders", "torchcodec-cuda"])
    assert "needs --device gpu" in capsys.readouterr().err


@pytest.mark.slow
def test_data_stall_end_to_end_writes_json(small, tmp_path):
    out = tmp_path / "stall.json"
    data_stall.main(["--data", str(small / "vp9" / "list.txt"), "--pipeline", "mcpnet", "--frames", "4", "--size",
                     "32", "--batch-size", "2", "--steps", "1", "--repeats", "1", "--warmup", "1", "--workers", "1",
                     "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["backbone"] == "tiny" and saved["pipeline"] == "mcpnet"
    assert saved["steps_per_s_real"] > 0 and saved["steps_per_s_synthetic"] > 0
    assert saved["stall_percent"] == pytest.approx(
        100 * (1 - saved["steps_per_s_real"] / saved["steps_per_s_synthetic"]))
    assert saved["batch"]["rgb"][0] == [2, 3, 4, 32, 32] and saved["batch"]["rgb"][1] == "torch.float32"
    assert saved["environment"]["cpu_model"]


def test_gpu_check_without_a_gpu_reports_and_exits_2(tmp_path, monkeypatch):
    import torch

    from benchmarks import gpu_check

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi, no NVIDIA kernel driver, no CUDA: no NVIDIA GPU at all
    monkeypatch.setattr(gpu_check, "NVIDIA_KERNEL_VERSION", str(tmp_path / "version"))
    monkeypatch.setattr(gpu_check, "NVIDIA_DEVICES", str(tmp_path / "nvidia[0-9]*"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(s["stage"], s["status"]) for s in report["stages"]] == [("cuda", "failed")] and not report["passed"]
    assert "no NVIDIA GPU on this machine" in (tmp_path / "gpu_check.md").read_text()


def test_gpu_check_measures_the_nvdec_size_table(tmp_path, monkeypatch):
    """The stage writes a video per codec at the assumed minimum and below it; the decoder is faked here, and the
    stage's child process is run in this one."""
    from benchmarks import gpu_check, gpu_stages
    from motionssl.pipelines.decoders import dali as decoding
    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE
    from motionssl.pipelines.video_io import header

    seen = {}

    def fake_decode(path, device_id=0):
        codec, size = os.path.splitext(os.path.basename(path))[0].split("-")
        width, height = map(int, size.split("x"))
        if codec != "av1":  # the file is what its name says (PyAV here reads no AV1 header)
            media = header(path)
            assert (media.codec, media.width, media.height) == (codec, width, height)
        seen[codec, width, height] = True
        w, h = NVDEC_MIN_SIZE[codec]
        return None if width >= w and height >= h else "Video is too small in at least one dimension"

    def in_process(cmd, timeout, log_path, env=None):
        gpu_check.probe_sizes(os.path.join(str(tmp_path), "nvdec_sizes.jsonl"))
        return {"returncode": 0, "tail": "", "seconds": 0.0, "command": "probe_sizes"}

    monkeypatch.setattr(decoding, "nvdec_probe", fake_decode)
    monkeypatch.setattr(gpu_stages, "run_child", in_process)
    args = gpu_check.argparse.Namespace(out=str(tmp_path))
    result = gpu_check.run_stage("nvdec_sizes", args, 60)
    assert result["status"] == "passed" and {c for c, _, _ in seen} == set(NVDEC_MIN_SIZE)
    assert ("vp9", 128, 128) in seen and ("vp9", 64, 64) in seen
    monkeypatch.setattr(decoding, "nvdec_probe", lambda path, device_id=0: None)  # a GPU that decodes everything
    failed = gpu_check.run_stage("nvdec_sizes", args, 60)
    assert failed["status"] == "failed" and "below the assumed minimum" in failed["message"]
    assert "| nvdec_sizes | FAIL |" in gpu_check.markdown({"command": "x", "date": "d", "seconds": 1.0,
                                                          "stages": [failed]})


# --- every benchmark runs both ways: python benchmarks/X.py and python -m benchmarks.X ----------------------
SCRIPTS = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "benchmarks")) if name.endswith(".py")
                 and '__name__ == "__main__"' in open(os.path.join(ROOT, "benchmarks", name)).read())


def test_no_benchmark_module_shadows_the_standard_library():
    """Run as a file, a script's folder comes first on sys.path: a benchmarks/profile.py hid the standard
    library's ``profile``, which cProfile imports."""
    modules = {name[:-3] for name in os.listdir(os.path.join(ROOT, "benchmarks")) if name.endswith(".py")}
    assert not modules & set(sys.stdlib_module_names)


@pytest.mark.slow
def test_every_benchmark_prints_its_help_both_ways():
    """``--help`` as a file and as a module: the usage, or one line that says how to run it (no traceback)."""
    assert "throughput" in SCRIPTS and len(SCRIPTS) > 5
    runs = {(name, way): subprocess.Popen([sys.executable, *args, "--help"], cwd=ROOT, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name in SCRIPTS for way, args in (("file", [f"benchmarks/{name}.py"]),
                                                  ("module", ["-m", f"benchmarks.{name}"]))}
    for (name, way), proc in runs.items():
        out, err = proc.communicate(timeout=300)
        said = (out + err).strip().splitlines()
        usage = proc.returncode == 0 and out.startswith("usage:")
        assert usage or (len(said) == 1 and "-m benchmarks." in said[0]), (name, way, proc.returncode, err[-2000:])


# --- one benchmark, stated once: clip sizes, the commit, --quick ------------------------------------------
def test_clip_sizes_are_the_papers_and_simclr_also_at_112():
    from benchmarks.common import clip_sizes, paper_settings

    for name in ("simclr", "mcpnet", "moquad"):
        assert clip_sizes(name)[0] == paper_settings(name)["size"]  # the paper configuration's first
    assert clip_sizes("simclr") == [224, 112] and clip_sizes("mcpnet") == [112] and clip_sizes("moquad") == [224]
    assert clip_sizes("decode") == [None]


@pytest.mark.slow
def test_throughput_measures_simclr_at_both_sizes_and_says_so(small, tmp_path, capsys):
    args = [a for a in TINY if a not in ("--size", "32")]
    result = throughput.main(["--data", str(small / "vp9" / "list.txt"), "--pipelines", "simclr", "--decoders",
                              "pyav", "--no-peer", "--no-reference", "--out", str(tmp_path / "t.json")] + args)
    assert result["clip_sizes"] == {"simclr": 224, "simclr@112": 112}
    assert [result["pipelines"][k]["size"] for k in ("simclr", "simclr@112")] == [224, 112]
    assert "clip sizes: simclr 224x224, simclr@112 112x112" in capsys.readouterr().out


@pytest.mark.slow
def test_throughput_quick_prints_each_methods_ratios_and_the_commit(small, tmp_path, capsys):
    out = tmp_path / "quick.json"
    result = throughput.main(["--quick", "--data", str(small / "vp9" / "list.txt"), "--out", str(out)] + TINY)
    saved = json.loads(out.read_text())
    assert saved["quick"] and set(saved["pipelines"]) == {"simclr", "mcpnet", "moquad"}
    for entry in result["pipelines"].values():  # a method whose clips skip frames is judged by their decode too
        assert {r["producer"] for r in entry["results"]} - {"ceiling[pyav; read]"} == {"peer[pyav]", "pipeline[pyav]",
                                                                                       "ceiling[pyav]"}
    assert "ceiling[pyav; read]" in {r["producer"] for r in result["pipelines"]["moquad"]["results"]}
    env = saved["environment"]
    assert len(env["commit"]) == 40 and isinstance(env["dirty"], bool)  # the checkout the figures describe
    printed = capsys.readouterr().out
    assert f"commit {env['commit'][:12]}" in printed
    table = printed[printed.index("method "):printed.index("wrote ")].splitlines()
    assert table[0].split() == ["method", "size", "vs", "ceil", "vs", "win", "vs", "peer", "cpu", "ms/w", "others"]
    assert sorted(line.split()[0] for line in table[1:]) == ["mcpnet", "moquad", "simclr"]
    assert all("%" in line and "x" in line for line in table[1:])


def test_kernel_benchmark_times_every_kernel_against_a_checkout(capsys):
    """`benchmarks.kernels --against ROOT` loads that checkout's kernels apart from these and times both."""
    from benchmarks import kernels

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = kernels.main(["--sizes", "16", "--repeats", "1", "--against", root])
    assert set(result) == {("rgb", 16), ("rad", 16), ("residual", 16)}
    assert all(set(best) == {"this", "against"} and min(best.values()) >= 0 for best in result.values())
    assert kernels.load(root) is not kernels.load() and "speed-up" in capsys.readouterr().out
    # the other checkout's kernels compile into a cache of their own: the checkout's own cache,
    # written under its module name, rebuilt them against that module and crashed the run
    other, own = kernels.load(root)._rgb_kernel._cache._cache_path, kernels.load()._rgb_kernel._cache._cache_path
    assert "kernels-against-" in other and not other.startswith(os.path.dirname(own))
    with pytest.raises(SystemExit, match="no pipelines/ops/_kernels.py"):
        kernels.load(os.path.join(root, "docs"))


def test_every_timed_benchmark_starts_past_the_loaders_start_up(monkeypatch):
    """The full run, --quick and the CPU split time their batches after the same warm-up, long enough that the
    batches prefetched during the build and the process's first-touch growth stay out of the figures (with 1
    warm-up batch MoQuad's ratio to the ceiling moved from 58 to 73 % with what had run before it)."""
    from benchmarks import common, cpu_split

    assert common.WARMUP_BATCHES >= 8
    for argv in ([], ["--quick"]):
        assert throughput.parse_args(argv + ["--no-peer"]).warmup == common.WARMUP_BATCHES
    assert throughput.parse_args(["--quick", "--warmup", "3", "--no-peer"]).warmup == 3  # still the user's choice

    class Reached(Exception):
        pass

    def split(name, size, batches, warmup, **options):
        raise Reached(warmup)

    monkeypatch.setattr(cpu_split, "split", split)
    with pytest.raises(Reached) as reached:
        cpu_split.main([])
    assert reached.value.args == (common.WARMUP_BATCHES,)


def test_cpu_split_sums_the_workers_and_the_graph_threads(small, capsys):
    """``benchmarks.cpu_split``: the decoding workers' CPU and each main-process thread's, per window, with the
    ceiling's decode of the same frames; the graph runs on DALI's threads, not on the Python thread."""
    from benchmarks import cpu_split

    r = cpu_split.main(["--pipeline", "mcpnet", "--size", "32", "--frames", "4", "--batches", "2", "--warmup", "1",
                        "--data", str(small / "vp9" / "list.txt")])
    assert r["windows"] == 16 and r["workers_ms"] > 0 and r["ceiling_ms"] > 0
    dali = sum(ms for thread, ms in r["threads_ms"].items() if "DALI" in thread)
    assert dali > 0 and r["main_ms"] == pytest.approx(sum(r["threads_ms"].values()))
    assert "decoding workers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cpu_split.main(["--batches", "0"])
