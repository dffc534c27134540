"""The public iterator API as a user of another project meets it: unlabelled data, one vocabulary
for both iterators, devices, errors, documentation and DALIGenericIterator's conventions."""
import os

import pytest

from motionssl.pipelines import VideoIndex, make_eval_iterator, make_iterator
from tests.fixtures import write_id_videos

B, SIZE = 2, [24, 32]
CLIP = {"clip": {"frames": 4, "speeds": [1], "augment": {"size": SIZE}}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five unlabelled videos loose in one folder (no classes, no list)."""
    root = tmp_path_factory.mktemp("loose")
    write_id_videos(str(root), [12, 10, 14, 11, 13], height=32, width=48)
    return str(root / "videos")


def test_both_iterators_read_unlabelled_folders_lists_and_globs(folder):
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    for data in (folder, paths, tuple(paths), os.path.join(folder, "*.webm"), VideoIndex(paths)):
        loader = make_iterator("clip", data, B, config=CLIP, num_workers=0)
        batch = next(iter(loader))
        assert batch["label"].tolist() == [-1, -1] and batch["clip"].shape == (B, 3, 4, *SIZE)
        loader.close()
    views = make_eval_iterator(paths[:2], 2, config=CLIP, num_clips=1, num_workers=0)
    assert [b["label"].tolist() for b in views] == [[-1, -1]]


# --- one vocabulary for both iterators ---------------------------------------------------------------
def test_both_iterators_take_the_same_names_as_train_py(folder):
    """``data``, ``batch_size``, a nested ``config`` whose ``clip`` gives frames, speeds and size, ``bad_files``."""
    import torch

    train = make_iterator("clip", folder, B, config=CLIP, num_workers=0, bad_files="error")
    views = make_eval_iterator(data=folder, batch_size=B, config=train.config, num_clips=1, num_workers=0,
                               bad_files="error")
    batch = next(iter(views))
    assert batch["clips"].shape == (B, 3, 4, *SIZE)
    same = make_eval_iterator(folder, B, config={"clip": {"frames": 4, "speeds": [1], "augment": {"size": SIZE}},
                                                 "appearance": {"op": "be"}}, num_clips=1, num_workers=0)
    assert torch.equal(next(iter(same))["clips"], batch["clips"])  # keys other than clip are not the views'
    strided = make_eval_iterator(folder, B, config={"clip": {"frames": 4, "speeds": [2], "augment": {"size": SIZE}}},
                                 num_clips=1, num_workers=0)
    assert strided.planner.stride == 2 and strided.planner.window == 7
    train.close()


def test_the_old_keyword_names_still_work_and_name_the_new_ones(folder):
    import torch

    new = make_eval_iterator(folder, B, config={"clip": {"frames": 4, "speeds": [2], "augment": {"size": SIZE}}},
                             num_clips=1, num_workers=0)
    with pytest.deprecated_call(match=r"index=.*data=") as record:
        old = make_eval_iterator(index=folder, frames=4, size=SIZE, stride=2, batch_size=B, num_clips=1,
                                 num_workers=0)
    named = " ".join(str(w.message) for w in record)
    assert "config={'clip': {'frames': 4}}" in named and "config={'clip': {'speeds': [2]}}" in named
    assert torch.equal(next(iter(old))["clips"], next(iter(new))["clips"])
    with pytest.deprecated_call(match=r"bad_files='raise'.*bad_files='error'"):
        make_iterator("clip", folder, B, config=CLIP, num_workers=0, bad_files="raise")
    from motionssl.pipelines import load_index

    with pytest.deprecated_call(match=r"source=.*data="):
        assert len(load_index(source=folder)) == 5
    with pytest.raises(TypeError, match="both data= and its old name index="):
        make_eval_iterator(data=folder, index=folder)


# --- devices and errors ------------------------------------------------------------------------------
def test_pytorch_device_spellings_map_to_dali(folder, monkeypatch):
    import torch

    import motionssl.pipelines.iterators as iterators
    from motionssl.pipelines import ConfigError, MotionSSLError

    asked = []

    def decoder_for(index, decoder, device, bad_files="skip", device_id=0):
        asked.append((device, device_id))
        raise RuntimeError("stop here: a CPU test builds no GPU pipeline")

    monkeypatch.setattr(iterators, "choose_decoder", decoder_for)
    for device in ("gpu", "cuda", "cuda:1", torch.device("cuda", 1), "cpu", torch.device("cpu")):
        with pytest.raises(RuntimeError, match="stop here"):
            make_iterator("clip", folder, B, config=CLIP, device=device)
    assert asked == [("gpu", 0), ("gpu", 0), ("gpu", 1), ("gpu", 1), ("cpu", 0), ("cpu", 0)]
    for device in ("tpu", "cuda:x", "cpu:1", 3):
        with pytest.raises(ConfigError, match=r"device=.*choose 'cpu', 'gpu', 'cuda' or 'cuda:N'") as caught:
            make_iterator("clip", folder, B, config=CLIP, device=device)
        assert isinstance(caught.value, (MotionSSLError, ValueError))
    with pytest.raises(ConfigError, match="name different GPUs"):
        make_iterator("clip", folder, B, config=CLIP, device="cuda:1", device_id=2)


def test_every_error_of_the_package_is_a_motionssl_error_and_keeps_its_old_class(folder, tmp_path):
    from motionssl import pipelines
    from motionssl.pipelines import MotionSSLError, load_index

    olds = {"VideoError": RuntimeError, "PipelineError": RuntimeError, "ConfigError": ValueError,
            "ProbeError": RuntimeError, "DataError": ValueError, "DataNotFoundError": FileNotFoundError,
            "OptionError": ValueError, "UnlabelledError": ValueError}
    for name, old in olds.items():
        error = getattr(pipelines, name)
        assert issubclass(error, MotionSSLError) and issubclass(error, old), name
    from motionssl.pipelines.files import FolderError

    assert issubclass(FolderError, MotionSSLError) and issubclass(FolderError, RuntimeError)
    (tmp_path / "empty").mkdir()
    misuses = [lambda: load_index(str(tmp_path / "nowhere")), lambda: load_index(str(tmp_path / "empty")),
               lambda: load_index(folder, bad_files="maybe"), lambda: make_iterator("byol", folder, B),
               lambda: make_iterator("clip", folder, B, workers=3), lambda: make_iterator("clip", folder, 64),
               lambda: make_iterator("clip", folder, B, config={"clip": {"frames": 0}}),
               lambda: make_eval_iterator(folder, num_crops=5), lambda: make_eval_iterator(folder, decoder="ffmpeg")]
    for misuse in misuses:
        with pytest.raises(MotionSSLError):
            misuse()


def test_the_probe_error_speaks_the_api_and_train_py_speaks_its_config(media_list, tmp_path, monkeypatch, capsys):
    """No GPU to ask: the probe's pipeline fails as a driver would, and the advice is in the caller's words."""
    import nvidia.dali

    from motionssl import train
    from motionssl.pipelines import ProbeError
    from motionssl.pipelines.decoders import dali

    def broken(*args, **kwargs):  # @pipeline_def(...): the pipeline fails when it is made, as without a GPU
        def pipeline(*a, **k):
            raise RuntimeError("CUDA driver API error cudaErrorNoDevice (100): no CUDA-capable device is detected")
        return lambda graph: pipeline

    monkeypatch.setattr(nvidia.dali, "pipeline_def", broken)
    with pytest.raises(ProbeError) as caught:
        dali.nvdec_probe(media_list[1][0])
    assert "decoder='pyav'" in str(caught.value) and "loader." not in str(caught.value)

    import motionssl.pipelines.iterators as iterators

    def refuse(*args, **kwargs):
        raise caught.value

    monkeypatch.setattr(iterators, "choose_decoder", refuse)
    with pytest.raises(SystemExit) as stop:
        train.main(["--pipeline", "simclr", "--data", media_list[0], "--out", str(tmp_path / "run"), "device=cpu",
                    "batch_size=2", "max_steps=1", "retrieval=false", "loader.num_workers=0"])
    line = str(stop.value.code)
    assert "loader.decoder=pyav" in line and "decoder='pyav'" not in line and "\n" not in line, line


@pytest.fixture
def media_list(folder, tmp_path):
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    (tmp_path / "list.txt").write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(paths)))
    return str(tmp_path / "list.txt"), paths


# --- every parameter documented at the call ----------------------------------------------------------
def documented(obj):
    """The names in the ``Parameters`` section of a numpy-style docstring (``a, b : int`` names two)."""
    import inspect
    import re

    doc = inspect.getdoc(obj) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    if not section:
        return set()
    names = set()
    for line in section.group(1).splitlines():
        if line and not line[0].isspace():
            names |= {n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")}
    return names


def public_callables():
    import inspect

    from motionssl import pipelines

    for name in pipelines.__all__:
        obj = getattr(pipelines, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue  # an error's one argument is its message
        if inspect.isclass(obj):
            init = obj.__dict__.get("__init__")
            yield name, (init if init is not None else obj)
        elif callable(obj):
            yield name, obj


@pytest.mark.parametrize("name,obj", list(public_callables()), ids=[n for n, _ in public_callables()])
def test_every_parameter_of_every_public_callable_is_documented(name, obj):
    import inspect

    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    doc_owner = obj
    if obj.__name__ == "__init__":  # a class documents its constructor in the class docstring (numpy style)
        doc_owner = getattr(__import__("motionssl.pipelines", fromlist=[name]), name)
    missing = [p for p in params if p not in documented(doc_owner)]
    assert not missing, f"{name}: parameters {missing} are not in its docstring's Parameters section"


# --- DALIGenericIterator's conventions ---------------------------------------------------------------
def test_last_batch_policies_as_dali_names_them(folder):
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy

    sizes = {}
    for policy in ("DROP", "fill", LastBatchPolicy.PARTIAL):
        loader = make_iterator("clip", folder, B, config=CLIP, num_workers=0, last_batch=policy,
                               output_map=["index"])
        sizes[str(getattr(policy, "name", policy)).upper()] = [len(b["index"]) for b in loader], len(loader)
    assert sizes == {"DROP": ([2, 2], 2), "FILL": ([2, 2, 2], 3), "PARTIAL": ([2, 2, 1], 3)}
    with pytest.deprecated_call(match=r"last_batch='pad'.*last_batch='FILL'"):
        assert make_iterator("clip", folder, B, config=CLIP, last_batch="pad").last_batch == "FILL"
    from motionssl.pipelines import ConfigError

    with pytest.raises(ConfigError, match=r"last_batch='keep'.*DROP.*FILL.*PARTIAL"):
        make_iterator("clip", folder, B, config=CLIP, last_batch="keep")


def test_output_map_reset_epoch_and_state_dict(folder):
    import torch

    from motionssl.pipelines import ConfigError

    loader = make_iterator("clip", folder, B, config=CLIP, num_workers=0, output_map={"clip": "x", "label": "y"})
    first = next(iter(loader))
    assert sorted(first) == ["x", "y"] and first["x"].shape == (B, 3, 4, *SIZE)
    assert (loader.epoch, loader.iteration) == (0, 1)
    loader.reset()  # the rest of epoch 0 skipped
    assert (loader.epoch, loader.iteration) == (1, 0)
    state = loader.state_dict()
    whole = [b["x"].clone() for b in loader]
    assert len(whole) == len(loader) == 2 and loader.epoch == 2
    again = make_iterator("clip", folder, B, config=CLIP, num_workers=0, output_map={"clip": "x", "label": "y"})
    again.load_state_dict(state)
    assert all(torch.equal(a["x"], b) for a, b in zip(again, whole))
    loader.reset()  # at an epoch's end: nothing to skip
    assert (loader.epoch, loader.iteration) == (2, 0)
    with pytest.raises(ConfigError, match=r"output_map names \['clips'\].*\['clip', 'label', 'index'\]"):
        make_iterator("clip", folder, B, config=CLIP, output_map=["clips"])


# --- the first batch: compilation said in one line ---------------------------------------------------
def test_compiling_the_cpu_operators_is_said_once_and_only_when_the_cache_is_cold(tmp_path, monkeypatch, caplog):
    import logging
    import sys

    import motionssl.pipelines.pipeline as pipeline

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert not pipeline.kernels_cached()
    monkeypatch.delitem(sys.modules, pipeline.KERNELS, raising=False)  # as in a fresh process
    monkeypatch.setattr(pipeline, "_announced", False)
    with caplog.at_level(logging.INFO):
        pipeline.announce_compilation()
        pipeline.announce_compilation()
    said = [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()]
    assert said == [f"compiling the CPU clip operators once, about {pipeline.COMPILE_SECONDS} s; cached for later "
                    "runs"]
    (tmp_path / "numba" / "ops").mkdir(parents=True)
    (tmp_path / "numba" / "ops" / "_kernels._clamp-57.py311.nbi").write_bytes(b"")
    assert pipeline.kernels_cached()
    monkeypatch.setattr(pipeline, "_announced", False)
    caplog.clear()
    pipeline.announce_compilation()
    assert "compiling" not in caplog.text


@pytest.mark.parametrize("option,value", [("num_workers", -1), ("num_workers", 1.5), ("num_workers", True),
                                          ("num_threads", 0), ("num_threads", "2"), ("prefetch", 0)])
def test_worker_thread_and_prefetch_counts_are_checked_by_the_library(folder, option, value):
    """From Python, as from train.py's config: a count the pipeline cannot use is a ValueError naming it, not a
    silent fallback (num_workers=-1 used to decode in-process) or a DALI traceback at the first batch."""
    for make in (make_iterator, make_eval_iterator):
        with pytest.raises(ValueError, match=f"{option}={value!r}; expected a whole number"):
            make(*(("simclr",) if make is make_iterator else ()), folder, 2, **{"num_workers": 0, option: value})
