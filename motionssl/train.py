"""Train MoQuad, MCPNet or the SimCLR baseline on DALI pipelines (``motionssl-train``, ``python train.py``).

    python train.py --pipeline moquad                      # the CPU demo: demo data, tiny backbone
    python train.py --pipeline mcpnet --config configs/mcpnet_r3d18.yaml --data data/k400 --split train
    torchrun --nproc_per_node 8 train.py --pipeline moquad --config configs/moquad_r3d18.yaml --data ...

``key=value`` arguments override the config files (``optim.lr=0.8``, ``pipeline_config.clip.frames=8``).
``--config`` takes a file, or the name of a shipped configuration (``configs/moquad_r3d18.yaml``,
``moquad_r3d18``), so the commands work from any folder after ``pip install``.
The loop is deliberately plain; the parts live in ``motionssl.pipelines``, ``motionssl.models`` and,
for the run itself (config, checkpoints, devices and ranks), ``motionssl.training`` and
``motionssl.runtime``. Where the run stands is the global step alone: epoch and batch follow
from it, so a run resumed from any checkpoint — mid-epoch, on an epoch's last step, across
the MoQuad warm-up switch — continues with exactly the batches and losses of the
uninterrupted run.
"""
import argparse
import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from types import SimpleNamespace

import torch
import yaml
from tqdm import tqdm

from motionssl import runtime
from motionssl.console import console_script
from motionssl.data import resolve_data
from motionssl.models.backbones import BACKBONES, create_backbone, to_channels_last
from motionssl.models.methods import METHODS, create_method, get_method
from motionssl.models.optim import build_optimizer, cosine_schedule
from motionssl.pipelines import demo, environment, files, load_index, make_iterator
from motionssl.pipelines.config import build, coerce_kwargs, cut, shown
from motionssl.pipelines.errors import MotionSSLError, UnlabelledError
from motionssl.pipelines.files import FolderError
from motionssl.pipelines.index import VideoIndex, load_pair
from motionssl.pipelines.sources import PipelineError
from motionssl.pipelines.video_io import VideoError
from motionssl.training import (
    Checkpointer,
    CheckpointWriteError,
    MetricsLog,
    list_checkpoints,
    load_checkpoint,
    load_config,
    rng_state,
    set_rng_state,
    to_dict,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True, choices=sorted(METHODS), help="the method (and its pipeline)")
    p.add_argument("--config", action="append", default=[],
                   help="YAML file(s) or shipped configuration names; later ones win (default: the method's demo "
                        "configuration, configs/demo/<pipeline>.yaml)")
    p.add_argument("--data", help="prepared dataset folder, class folder, folder of unlabelled videos, quoted glob "
                                  "('clips/**/*.mp4') or `path [label [num_frames]]` list (default: the demo data)")
    p.add_argument("--split", help="the training split of a prepared dataset, e.g. train_split1 (demo: train)")
    p.add_argument("--test-data", help="videos that query the training videos in the retrieval at the end, when "
                                       "they are not a split of --data (a list or folder)")
    p.add_argument("--test-split", help="their split of a prepared dataset, e.g. test_split1 (demo: test); without "
                                        "--test-split or --test-data there is no retrieval at the end")
    p.add_argument("--out", help="run folder for logs and checkpoints (default: runs/<pipeline>-<time>)")
    p.add_argument("--resume", help="checkpoint file or run folder to continue from (exactly, mid-epoch)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=5 optim.lr=0.1")
    return p.parse_intermixed_args(argv)


# Bad config, data, checkpoint or run folder, a full disk: one line, no traceback.
USER_ERRORS = (MotionSSLError, ValueError, FileNotFoundError, VideoError, FolderError, OSError)
logger = logging.getLogger("train")


def main(argv=None):
    args = parse_args(argv)
    with runtime.Termination() as term:
        try:
            run = setup(args)
        except USER_ERRORS as exc:
            if environment.debug():
                raise
            raise SystemExit(f"train.py: error: {in_config_words(exc)} (MOTIONSSL_DEBUG=1 shows where)") from None
        try:
            with runtime.deterministic(run.cfg.deterministic):
                return train(run, term)
        except (PipelineError, CheckpointWriteError, OSError) as exc:  # a file that fails mid-run, a full disk
            if environment.debug():
                raise
            raise SystemExit(f"train.py: error: {in_config_words(exc)}") from None
        finally:
            for it in run.loaders:
                it.close()  # stop the decoding workers on every way out
            run.lock.release()


# The iterator options of the library's messages ("pass decoder='pyav'") are the loader section's keys here.
LOADER_OPTIONS = ("decoder", "num_workers", "num_threads", "short_videos", "bad_files", "last_batch", "prefetch",
                  "output_map")


def in_config_words(error: BaseException) -> str:
    """An error's message in train.py's words: the iterator option ``name='value'`` is ``loader.name=value``."""
    options = "|".join(LOADER_OPTIONS)
    return re.sub(rf"(?<![\w.])({options})=(['\"]?)([^'\"\s;,)]*)\2", r"loader.\1=\3", str(error))


def setup(args) -> SimpleNamespace:
    """Config, data, loaders, model, optimiser and run folder of a new or resumed run.

    Everything that can be checked is checked, and everything built, before anything is
    written: the config and the method's options, the backbone, the learning rate, the
    loader options, what a resumed run may change and where it may write, then the data,
    the loaders, the model, the schedule and a resumed run's state. Only then is the run
    folder locked and written; an error on the way leaves nothing behind.
    """
    spec = get_method(args.pipeline)
    cfg, state, own = run_config(args, spec)
    settings = checked_settings(spec, cfg)
    out = cfg.out or os.path.join("runs", f"{cfg.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}")
    elsewhere = state is not None and (own is None or not same_folder(out, own))
    if state is not None:
        refuse_changes(spec, cfg, state, args)
    rt = runtime.start(cfg.device)
    if rt.main:  # the other ranks would see rank 0's lock and files: rank 0 alone checks and writes the folder
        files.FolderLock(out).refuse_if_held()  # a run in progress there is named before any other objection
        may_write(out, state, own, elsewhere)  # now, to fail fast; again under the lock, where no one else writes
    setup_logging(rt)
    torch.manual_seed(cfg.seed)
    data = training_data(cfg, rt)
    loop = run_loaders(spec, cfg, settings, data.index, rt)
    parts = training_parts(spec, cfg, settings, loop, rt)
    step = 0
    if state is not None:
        load_run_state(state, parts.method, parts.optimizer, parts.scheduler, loop.main_loader, cuda=rt.kind == "gpu")
        step = state["step"]
    absolute = {k: os.path.abspath(v) for k, v in (("data", cfg.data), ("test_data", data.test_data)) if v}
    saved = dataclasses.replace(cfg, out=out, method=settings.method, **absolute)
    lock, checkpoints = write_run_folder(out, saved, rt, state, own, elsewhere, step)
    if rt.main:
        print(first_line(cfg, rt, data, loop, settings.phases, parts.lr, out))
    return SimpleNamespace(cfg=cfg, saved=saved, rt=rt, out=out, lock=lock, checkpoints=checkpoints, step=step,
                           phases=settings.phases, **vars(data), **vars(loop), **vars(parts))


def run_config(args, spec):
    """``(config, checkpoint, the checkpoint's run folder)``: a new run's config from its files and overrides (and
    no checkpoint), a resumed run's its own with what the command line changes (:func:`refuse_changes` checks it)."""
    if not args.resume:
        config_files = args.config or ([spec.demo_config] if spec.demo_config else [])  # shipped configurations
        cfg = load_config(config_files, args.overrides, pipeline=args.pipeline, data=args.data, out=args.out,
                          split=args.split, test_data=args.test_data, test_split=args.test_split)
        return cfg, None, None
    state = load_checkpoint(args.resume)
    if state["config"].get("pipeline") != args.pipeline:
        raise ValueError(f"{state['path']} is a {state['config'].get('pipeline')} run; resume it with "
                         f"--pipeline {state['config'].get('pipeline')}")
    own = own_run_folder(state["path"])
    if not (args.out or own):
        raise ValueError(f"{state['path']} is not in the checkpoints folder of a run folder: give --out with a "
                         "new or empty folder to continue that run there")
    absolute = {k: os.path.abspath(v) for k, v in (("data", args.data), ("test_data", args.test_data)) if v}
    cfg = load_config(args.config, args.overrides, base=state["config"], pipeline=args.pipeline, split=args.split,
                      test_split=args.test_split, out=args.out or own, **absolute)
    return cfg, state, own


def checked_settings(spec, cfg) -> SimpleNamespace:
    """What the run is built from, checked before anything is built: the method's options, its phases and the
    pipeline settings of each, the backbone's options and the learning-rate rule (the config checked the rest)."""
    method_options = method_settings(spec, cfg.method)
    phases = spec.phases(**{k: method_options[k] for k in spec.phase_options()})
    pipeline_configs = [phase_settings(cfg.pipeline_config, phase) for phase in phases]
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"backbone={shown(cfg.backbone)}; choose one of {sorted(BACKBONES)}")
    backbone_options = coerce_kwargs(BACKBONES[cfg.backbone], cfg.backbone_kwargs, "backbone_kwargs")
    if cfg.optim.lr is None and (spec.paper_lr is None or cfg.optim.name not in ("sgd", "lars")):
        raise ValueError(f"optim.lr is needed with optim.name={cfg.optim.name} for {spec.name}: the papers' "
                         "learning-rate rules are for SGD and LARS (e.g. optim.lr=1e-3 for Adam)")
    return SimpleNamespace(method=method_options, phases=phases, pipeline_configs=pipeline_configs,
                           backbone=backbone_options)


def phase_settings(config, phase):
    """The run's pipeline settings (a config dataclass) in ``phase``: the phase's ``pipeline_config`` keys laid over
    them and checked as a config file's are; the run's own where the phase changes nothing."""
    if not phase.pipeline_config:
        return config
    return build(type(config), phase.pipeline_config, "pipeline_config", base=config)


def training_data(cfg, rt) -> SimpleNamespace:
    """The training videos' index, their data and split and the test videos', and whether the run ends with a
    retrieval (its test videos are checked now, not after hours of training)."""
    choice = resolve_data(cfg.data, cfg.split, cfg.test_data, cfg.test_split)
    # The embedded demo: generated once into the cache (rank 0 first).
    data = runtime.rank_zero_first(rt, demo.generate) if choice.demo else choice.data
    split, test_data, test_split = choice.split, choice.test_data, choice.test_split
    retrieval = cfg.retrieval and bool(test_split or test_data)

    def index_data() -> VideoIndex:
        index = load_index(data, split=split)
        if retrieval:
            try:
                load_pair(data, split, test_data, test_split)
            except UnlabelledError as exc:
                raise UnlabelledError(f"{exc}; or train without the retrieval at the end (retrieval=false)") from None
        return index

    # A first run demuxes every video: once per machine; the machine's other ranks read its index cache.
    index = runtime.local_rank_zero_first(rt, index_data)
    if cfg.retrieval and not retrieval:
        logger.info("no retrieval at the end: give --test-split (a split of --data) or --test-data")
    return SimpleNamespace(data=data, split=split, test_data=test_data, test_split=test_split, retrieval=retrieval,
                           index=index)


def run_loaders(spec, cfg, settings, index, rt) -> SimpleNamespace:
    """One loader per phase (no decoding starts before the first batch), the batches per epoch they share, the
    run's length and learning-rate warm-up in steps and the step at which each phase ends."""
    loaders = [make_iterator(spec.pipeline, index, cfg.batch_size, device=rt.kind, seed=cfg.seed, shard_id=rt.rank,
                             num_shards=rt.world, config=config, device_id=rt.local_rank, **cfg.loader)
               for config in settings.pipeline_configs]
    steps_per_epoch = len(loaders[-1])
    if any(len(it) != steps_per_epoch for it in loaders):
        raise ValueError(f"the phases of {spec.name} ({', '.join(p.name for p in settings.phases)}) see different "
                         "numbers of batches per epoch")
    total = cfg.steps or cfg.epochs * steps_per_epoch
    warmup = cfg.optim.warmup_epochs * steps_per_epoch
    if warmup > total:  # a run sized in epochs: TrainConfig checks this
        raise ValueError(f"optim.warmup_epochs={shown(cfg.optim.warmup_epochs)} ({warmup:.0f} steps of "
                         f"{steps_per_epoch} per epoch) is longer than the run (steps={cfg.steps})")
    phase_ends = phase_boundaries(settings.phases, total, steps_per_epoch, cfg.epochs if not cfg.steps else None)
    return SimpleNamespace(loaders=loaders, main_loader=loaders[-1], steps_per_epoch=steps_per_epoch, total=total,
                           warmup=warmup, phase_ends=phase_ends)


def training_parts(spec, cfg, settings, loop, rt) -> SimpleNamespace:
    """The method's model on the run's device, its optimiser at the run's learning rate and the schedule."""
    backbone = create_backbone(cfg.backbone, **settings.backbone)
    if rt.kind == "gpu":
        # Fixed clip shapes: let cuDNN pick the fastest 3D convolutions (unless the run must be deterministic).
        torch.backends.cudnn.benchmark = not cfg.deterministic
        to_channels_last(backbone)
    model_options = {k: v for k, v in settings.method.items() if k in spec.model_options()}
    method = create_method(spec.name, backbone=backbone, **model_options).to(rt.device)
    if rt.distributed and rt.kind == "gpu" and cfg.sync_batchnorm:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # BN over the global batch, as SimCLR
    lr = cfg.optim.lr if cfg.optim.lr is not None else spec.paper_lr(cfg.batch_size * rt.world)
    optimizer = build_optimizer(cfg.optim.name, method, lr, cfg.optim.weight_decay, cfg.optim.momentum)
    scheduler = cosine_schedule(optimizer, loop.total, round(loop.warmup))
    return SimpleNamespace(method=method, optimizer=optimizer, scheduler=scheduler, lr=lr)


def write_run_folder(out: str, saved, rt, state, own, elsewhere: bool, step: int):
    """Lock the run folder and write it: a resumed run's history where it goes on in a new folder, the checkpoints
    after ``step`` set aside, ``config.yaml``. ``(lock, checkpointer)``; a failure leaves a folder that was new or
    empty as it was."""
    created = not os.path.isdir(out)
    lock = open_run_folder(out, main=rt.main)
    with undone_on_error(lock, out, rt.main, created):
        if rt.main:
            may_write(out, state, own, elsewhere)
        checkpoints = Checkpointer(os.path.join(out, "checkpoints"), saved.keep_checkpoints, writer=rt.main)
        if elsewhere:
            copy_history(own, out, checkpoints, state, rt.main)
        for later in checkpoints.supersede_after(step):  # a resumed run writes its own future
            logger.warning("resuming from step %d: the later checkpoint %s is kept as %s.superseded", step, later,
                           later)
        if rt.main:
            write_config(out, saved)
    return lock, checkpoints


CONFIG_FILE = "config.yaml"  # in a run folder: the config the run trains with, resolved


def write_config(out: str, saved) -> None:
    """``<out>/config.yaml``: the run's config as it resolved it — every key, the method's options with their
    defaults, the data's path absolute."""
    files.write_text(os.path.join(out, CONFIG_FILE), yaml.safe_dump(to_dict(saved), sort_keys=False))


def first_line(cfg, rt, data, loop, phases, lr: float, out: str) -> str:
    """What the run does, in one line: the data, its length and phases, batch, learning rate, backbone, device,
    decoder and run folder."""
    total, steps_per_epoch = loop.total, loop.steps_per_epoch
    budget = (f"{total} steps (steps={cfg.steps}: {total / steps_per_epoch:.1f} epochs of {steps_per_epoch})"
              if cfg.steps else f"{total} steps ({cfg.epochs} epochs x {steps_per_epoch})")
    if cfg.max_steps and cfg.max_steps < total:
        budget += f", stopping early at max_steps={cfg.max_steps}"
    stages = "" if len(phases) == 1 else " (" + ", then ".join(
        f"{p.name} to step {end}" for p, end in zip(phases, loop.phase_ends)) + ")"
    index = loop.main_loader.index
    return (f"{cfg.pipeline}: {len(index)} videos ({describe_data(data.data, data.split, index.stats)}), "
            f"{budget}{stages}, batch {cfg.batch_size}x{rt.world}, lr {lr:g}, {cfg.backbone} on {rt.kind}, "
            f"{loop.main_loader.decoder} decoding; run folder {out}")


# What a resumed run may change: its length (and the options of its method's phases, MoQuad's appearance_warmup),
# how it logs and checkpoints, where it runs and the retrieval at the end. The rest — the data, the model, the
# optimiser, the pipeline, batch and seed — is what its checkpoint holds.
RESUME_MAY_CHANGE = {"out", "epochs", "steps", "max_steps", "device", "precision", "log_every", "checkpoint_every",
                     "keep_checkpoints", "retrieval", "test_data", "test_split", "sync_batchnorm", "deterministic",
                     "sync_timing", "loader"}
RESUME_OPTIONS = {"data": "--data", "split": "--split"}


def refuse_changes(spec, cfg, state, args) -> None:
    """A ValueError naming the first setting that a resumed run changes but may not (``RESUME_MAY_CHANGE``).

    Settings are compared as the run resolves them (types converted, defaults filled in), the
    data by its resolved path: the same value written another way is no change.
    """
    def resolved(c):
        fixed = {k: v for k, v in to_dict(c).items() if k not in RESUME_MAY_CHANGE}
        model = {k: v for k, v in method_settings(spec, c.method).items() if k not in spec.phase_options()}
        return dict(fixed, data=os.path.realpath(c.data) if c.data else None, method=model)

    saved = load_config([], [], base=state["config"])
    new, old = resolved(cfg), resolved(saved)
    key = first_difference(new, old)
    if key is None:
        return
    option = RESUME_OPTIONS.get(key)
    if option and getattr(args, key) is not None:
        raise ValueError(f"{option} {shown(getattr(args, key))} is not the {key} of the run in {state['path']} "
                         f"({shown(getattr(saved, key))}): a resumed run goes on with its own; leave out {option}, or "
                         "start a new run")
    raise ValueError(f"{key}={shown(lookup(new, key))} differs from the run's {shown(lookup(old, key))} (in "
                     f"{state['path']}): a resumed run keeps its data, model, optimiser and pipeline settings; leave "
                     f"{key} out, or start a new run")


def first_difference(new, old, prefix: str = ""):
    """The dotted key of the first value that differs between two nested mappings, or ``None``."""
    if isinstance(new, dict) and isinstance(old, dict):
        for key in list(new) + [k for k in old if k not in new]:
            found = first_difference(new.get(key), old.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return prefix[:-1] if new != old else None


def lookup(mapping: dict, key: str):
    for part in key.split("."):
        mapping = mapping.get(part) if isinstance(mapping, dict) else None
    return mapping


def own_run_folder(checkpoint: str):
    """The run folder a checkpoint belongs to (``<run>/checkpoints/ckpt-*.pt``), or ``None`` for one elsewhere."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    return os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else None


def same_folder(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_resume_into(out: str, own, checkpoint: str) -> None:
    """A :class:`FolderError` unless ``out``, where a resumed run would go on outside its own folder, is new or
    empty (the run's lock file aside): another run's folder or a user's files are never written into."""
    found = [name for name in files.entries(out) if name != files.LOCK_FILE]
    if found:
        where = f"its own run folder {own}, or " if own else ""
        raise FolderError(f"--out {out} already holds files ({files.listing(found)}) and is not the folder of the run in "
                          f"{checkpoint}; resume into {where}a new or empty --out (the run's history is copied there "
                          "first); nothing was written")


def copy_history(own: str, out: str, checkpoints: Checkpointer, state, main: bool) -> None:
    """A resumed run's new folder starts as the run up to its checkpoint: the logs and TensorBoard events of the run
    folder ``own`` (none for a checkpoint found elsewhere) and the checkpoint itself; ``config.yaml`` follows."""
    if not main:
        return
    for name in ("metrics.jsonl", "metrics-superseded.jsonl", "tb"):
        source = os.path.join(own, name) if own else ""
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(out, name))
        elif os.path.isfile(source):
            shutil.copyfile(source, os.path.join(out, name))
    checkpoints.copy_in(state["path"], state["step"])


def load_run_state(state, method, optimizer, scheduler, loader, cuda: bool) -> None:
    """A checkpoint's model, optimiser, schedule, RNG and iterator state; a ValueError naming it if they do not fit."""
    try:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{state['path']}: its saved state does not fit this run's model and optimiser "
                         f"({cut(' '.join(str(exc).split()), 200)})") from None
    set_rng_state(state["rng"], cuda=cuda)
    loader.load_state_dict(state["iterator"])  # same data, seed, batch and world size, or a clear error


@contextlib.contextmanager
def undone_on_error(lock, out: str, main: bool, created: bool):
    """Inside the block the locked run folder is written; if that fails, a folder that was new (``created``) or
    empty is left as it was — everything in it was this run's — and the lock is released."""
    fresh = main and not [name for name in files.entries(out) if name != files.LOCK_FILE]
    try:
        yield
    except BaseException:
        if fresh:
            for name in files.entries(out):
                path = os.path.join(out, name)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
            if created:
                os.rmdir(out)
        lock.release()
        raise


def method_settings(spec, given) -> dict:
    """The ``method`` section resolved: every option of the method — its model's and its phases' — the given ones
    converted and checked (an unknown key names the valid ones), the rest at their defaults, so that the saved
    config holds them all."""
    valid = spec.options()
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown method key(s) {shown(unknown)}; valid keys: {sorted(valid)}")
    phase_keys = spec.phase_options()
    model = coerce_kwargs(spec.model.__init__, {k: v for k, v in given.items() if k not in phase_keys}, "method")
    phases = coerce_kwargs(spec.phases, {k: v for k, v in given.items() if k in phase_keys}, "method")
    return {**valid, **model, **phases}


def phase_boundaries(phases, total: int, steps_per_epoch: int, epochs=None) -> list:
    """The step at which each phase ends (the last: ``total``). Whole epochs when the run is sized in epochs."""
    ends, done = [], 0.0
    for phase in phases[:-1]:
        done += phase.fraction
        ends.append(round(done * epochs) * steps_per_epoch if epochs else round(done * total))
    return ends + [total]


# What a run folder holds; a fresh run refuses a folder with anything else in it.
RUN_FOLDER_ENTRIES = {CONFIG_FILE, "metrics.jsonl", "metrics-superseded.jsonl", "tb", "checkpoints",
                      "retrieval.json", files.LOCK_FILE}


def may_write(out: str, state, own, elsewhere: bool) -> None:
    """A :class:`FolderError` unless the run may write ``out``: a resumed run its own folder or a new or empty one,
    a new run a folder that holds nothing but an earlier run's files without checkpoints."""
    if elsewhere:  # a new or empty --out, where the run's history is copied first
        refuse_resume_into(out, own, state["path"])
    elif state is None:
        refuse_for_a_new_run(out)


def refuse_for_a_new_run(out: str) -> None:
    """A :class:`FolderError` if a fresh run may not write ``out``: it holds files that are not a run's (nothing
    of the user's is overwritten), or a run's checkpoints (that run is continued with ``--resume``)."""
    foreign = [name for name in files.entries(out) if name not in RUN_FOLDER_ENTRIES]
    if foreign:
        raise FolderError(f"--out {out} already holds files that are not a run's ({', '.join(foreign[:3])}"
                          f"{' ...' if len(foreign) > 3 else ''}); choose a new or empty folder")
    if list_checkpoints(os.path.join(out, "checkpoints")):
        raise FolderError(f"{out} already holds checkpoints: continue that run with --resume {out}, or choose "
                          "another --out")


def open_run_folder(out: str, main: bool):
    """Create ``out`` and lock it for this run (rank 0); a :class:`FolderError` if it is busy or cannot be written.

    Two runs writing one folder would interleave their logs and overwrite each other's
    checkpoints, so the second fails at once and names the first.
    """
    lock = files.FolderLock(out, "train.py")
    if not main:
        return lock
    try:
        return lock.acquire()
    except OSError as exc:
        raise FolderError(f"cannot write the run folder {out} ({exc.strerror or exc}); choose another --out") from None


def describe_data(data, split, stats) -> str:
    """One line of what the index holds and what its policies did, so nothing happens silently."""
    split = stats.get("split", split)
    parts = [f"{data}" + (f", split {split}" if split else "")]
    if stats.get("short_videos"):
        verb = {"pad": "padded", "skip": "skipped"}.get(stats.get("short_policy"), "short")
        parts.append(f"{stats['short_videos']} {verb} (shorter than the {stats['window']}-frame window)")
    if stats.get("skipped_unreadable"):
        parts.append(f"{stats['skipped_unreadable']} unreadable skipped")
    return "; ".join(parts)


def setup_logging(rt) -> None:
    """Warnings and the data summary on rank 0; only errors from the other ranks."""
    logging.basicConfig(level=logging.INFO if rt.main else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")


def train(run, term) -> str:
    """The loop. Returns the last checkpoint's path."""
    cfg, rt, step = run.cfg, run.rt, run.step
    model = torch.nn.parallel.DistributedDataParallel(
        run.method, device_ids=[rt.local_rank] if rt.kind == "gpu" else None) if rt.distributed else run.method
    log = MetricsLog(run.out, rt.main, resume_step=step)  # a resumed run's log holds no replayed steps
    autocast = torch.autocast("cuda", torch.bfloat16) if rt.kind == "gpu" and cfg.precision != "fp32" else contextlib.nullcontext()
    last_step = run.total if not cfg.max_steps else min(run.total, cfg.max_steps)
    bar = tqdm(total=last_step, initial=step, disable=not rt.main, dynamic_ncols=True)
    speed = ClipRate(sync=torch.cuda.synchronize if rt.kind == "gpu" and cfg.sync_timing else None)
    metered = None  # the phase the meter measures
    model.train()
    with term.deferred():  # a signal stops the loop after its step, with a checkpoint
        while step < last_step:
            epoch, iteration = divmod(step, run.steps_per_epoch)
            phase = next(i for i, end in enumerate(run.phase_ends) if step < end)
            for earlier in run.loaders[:phase]:
                earlier.close()  # a phase is over: stop its graph's worker processes
            it = run.loaders[phase]
            if phase != metered:  # a new phase's pipeline starts up: no data stall
                speed.restart()
                metered = phase
            it.seek(epoch, iteration)
            for batch in it:
                speed.arrived()
                with autocast:
                    result = model(batch)
                terminate = optimise(run, term, result["loss"], step)
                step += 1
                speed.step(sum(v.shape[0] for v in batch.values() if v.ndim == 5) * rt.world)
                if step % cfg.log_every == 0 or step == last_step or terminate:
                    log_step(run, log, bar, result, speed, step, epoch)
                bar.update(1)
                if terminate:
                    stop_after(run, term, step, bar, log)
                if step % (cfg.checkpoint_every or run.steps_per_epoch) == 0:
                    save(run, step)  # every checkpoint_every steps, or at the end of every epoch
                if step >= last_step or step >= run.phase_ends[phase]:
                    break  # the end, or the next phase (MoQuad's warm-up → quadruples; mid-epoch in a run sized in steps)
        bar.close()
        path = run.checkpoints.latest() if run.checkpoints.latest_step() == step else save(run, step)
        log.close()
    return finish(run, term, step, path)


def optimise(run, term, loss, step: int) -> bool:
    """One optimiser step on ``loss``, the loss of step ``step``; whether a termination signal stops the run after it.

    One host sync per step, decided on every rank at once (a rank stopping alone would hang
    the others): a non-finite loss must stop before it touches the weights; a termination
    signal stops after this step, whose forward pass already moved the BatchNorm statistics,
    so the checkpoint is the state after ``step + 1`` steps.
    """
    nonfinite, terminate = runtime.agree(run.rt, not torch.isfinite(loss), term.requested)
    if nonfinite:
        epoch, batch = divmod(step, run.steps_per_epoch)
        raise SystemExit(f"non-finite loss at step {step} (epoch {epoch}, batch {batch}) on at least one rank; last "
                         f"good checkpoint: {run.checkpoints.latest()}. Lower optim.lr or check the data.")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return terminate


def log_step(run, log: MetricsLog, bar, result: dict, speed: "ClipRate", step: int, epoch: int) -> None:
    """The scalars of the step's result, the learning rate and the meter's figures to the log and the progress bar."""
    scalars = {k: float(v.detach()) for k, v in result.items() if v.numel() == 1}
    scalars.update(lr=run.scheduler.get_last_lr()[0], clips_per_s=speed.rate, data_wait=speed.wait_share,
                   step_s=speed.step_seconds, epoch=epoch)
    if run.rt.kind == "gpu":
        scalars["gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    try:
        log.write(step, scalars)
    except OSError as exc:  # a full disk: the log, and what the run has kept
        raise OSError(f"could not append to {exc.filename} ({exc.strerror}); the last checkpoint "
                      f"written is {run.checkpoints.latest() or 'none: none was written yet'}") from exc
    bar.set_postfix(loss=f"{scalars['loss']:.3f}", clips_s=f"{scalars['clips_per_s']:.0f}")


def save(run, step: int) -> str:
    """The checkpoint of the run after ``step`` steps (its path): everything it needs to go on exactly."""
    return run.checkpoints.save({"config": to_dict(run.saved), "model": run.method.state_dict(),
                                 "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                                 "step": step, "epoch": step // run.steps_per_epoch, "rng": rng_state(),
                                 "iterator": run.main_loader.state_dict()}, step)


def stop_after(run, term, step: int, bar, log: MetricsLog) -> None:
    """A termination signal: the checkpoint of step ``step``, which every rank waits for, then exit (128 + signal)."""
    path = save(run, step)
    runtime.barrier(run.rt)  # every rank waits until rank 0 has written the checkpoint
    bar.close()
    log.close()
    if run.rt.main:
        print(f"\nstopped by a signal after step {step}; checkpoint {path}; continue with --resume {run.out}",
              file=sys.stderr)
    raise SystemExit(128 + (term.signal or signal.SIGTERM))


def finish(run, term, step: int, path: str) -> str:
    """After the last step: what was done, the decoding workers stopped, the retrieval at the end (every rank
    extracts its shard of the views) and the process group left. Returns the last checkpoint's path."""
    if run.rt.main:
        print(f"done: {step} steps; checkpoint {path}; logs {os.path.join(run.out, 'metrics.jsonl')}")
    term.check()  # a signal while the last checkpoint was written: it is on disk, stop now
    for it in run.loaders:
        it.close()
    term.check()
    if run.retrieval:
        report_retrieval(run.method.backbone, run, run.cfg.pipeline_config.clip, term)
    runtime.stop(run.rt)
    return path


class ClipRate:
    """Clips per second, and the share of the time spent waiting for batches, over the last ``window``
    steps, across epoch boundaries: steady-state figures.

    The first ``warmup`` steps after a start (:meth:`restart`: the run's, a new phase's) are left
    out once they are over: pipeline build, worker start, the first prefetch and cuDNN's autotuning
    are no data stall. The wait is the time from the end of a step to the arrival of the next batch;
    with ``sync`` (``torch.cuda.synchronize`` on a GPU) a step ends when the device has finished it,
    so the wait is time in which the device had nothing to do, and its share is of synchronised step
    time. Until the warm-up is over the figures are those so far, start-up included.
    """

    def __init__(self, window: int = 50, warmup: int = 5, sync=None):
        self.window, self.warmup, self.sync = window, warmup, sync
        self.clips, self.waited = 0, 0.0
        self.restart()

    def restart(self) -> None:
        """A start: the next ``warmup`` steps are a warm-up."""
        self.last = time.perf_counter()
        self.marks = collections.deque([(self.last, self.clips, self.waited)], maxlen=self.window + 1)
        self.skip = self.warmup  # (time, clips so far, seconds waited so far) per step in ``marks``

    def arrived(self) -> None:
        """A batch arrived: the time since the last step ended was spent waiting for it."""
        self.waited += time.perf_counter() - self.last

    def step(self, clips: int) -> None:
        if self.sync is not None:
            self.sync()
        self.clips += clips
        self.last = time.perf_counter()
        if self.skip:
            self.skip -= 1
            if not self.skip:
                self.marks.clear()  # the warm-up is over: the window starts here
        self.marks.append((self.last, self.clips, self.waited))

    @property
    def rate(self) -> float:
        (t0, c0, _), (t1, c1, _) = self.marks[0], self.marks[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def step_seconds(self) -> float:
        (t0, _, _), (t1, _, _) = self.marks[0], self.marks[-1]
        return (t1 - t0) / (len(self.marks) - 1) if len(self.marks) > 1 else 0.0

    @property
    def wait_share(self) -> float:
        (t0, _, w0), (t1, _, w1) = self.marks[0], self.marks[-1]
        return (w1 - w0) / (t1 - t0) if t1 > t0 else 0.0


def report_retrieval(backbone, run, clip, term):
    """Retrieval of the test videos (queries) against the training videos, trained vs random init.

    Runs on every rank (each extracts its shard of the views); rank 0 prints and writes.
    """
    from motionssl.protocols import run_retrieval

    cfg, rt = run.cfg, run.rt
    train_index, test_index, describe = load_pair(run.data, run.split, run.test_data, run.test_split)
    aug = clip.augment
    args = dict(frames=clip.frames, size=aug.size, mean=aug.mean, std=aug.std, device=rt.kind)
    torch.manual_seed(cfg.seed)
    random_init = create_backbone(cfg.backbone, **cfg.backbone_kwargs)
    rows = {}
    for name, network in (("pre-trained", backbone), ("random init", random_init)):
        rows[name] = run_retrieval(network.eval(), train_index, test_index, **args)
        term.check()  # a signal during the pass's pipeline teardown
    if not rt.main:
        return
    print(f"\nretrieval: {describe}")
    print(f"{'':>12}  {'top-1':>6}  {'top-5':>6}")
    for name, r in rows.items():
        print(f"{name:>12}  {100 * r['top1']:6.1f}  {100 * r['top5']:6.1f}")
    with open(os.path.join(run.out, "retrieval.json"), "w") as f:
        json.dump({"data": describe, **rows}, f, indent=2)


cli = console_script(__name__)  # ``motionssl-train``


if __name__ == "__main__":
    main()
