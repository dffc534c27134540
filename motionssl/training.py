"""What the training loop needs besides the model: its config, checkpoints and logs.

* :class:`TrainConfig` — one dataclass for a run; YAML files and ``key=value`` overrides
  fill it (command line over file over defaults). It is built by the toolkit's one config
  builder (``pipelines.config.build``): unknown keys are rejected with the valid names and
  every value is converted to its field's type or refused, naming the key. Its
  ``pipeline_config`` is built there too, once, into the method's pipeline dataclass
  (``MoQuadConfig``, ...), which the run hands on as it is. The defaults are the CPU demo
  run; ``configs/`` holds the papers' settings.
* :class:`Checkpointer` — atomic checkpoints (temporary file + rename), the last N kept,
  everything needed to continue mid-epoch exactly: model, optimiser, scheduler, step,
  iterator position, RNG states, config.
* :class:`MetricsLog` — a JSONL file and, when the package is present, TensorBoard.

Part of the application (``train.py`` and ``eval.py``): it uses the config builder and the
folder helpers of ``pipelines`` and the backbones of ``models``.
"""
from __future__ import annotations

import dataclasses
import glob
import inspect
import io
import json
import logging
import os
import random
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from motionssl import configs as shipped_configs
from motionssl.pipelines import files
from motionssl.pipelines.config import ConfigError, build, coerce_kwargs, cut, read_yaml, shown

CHECKPOINT_FORMAT = "motionssl/1"
logger = logging.getLogger("train")
DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class OptimConfig:
    name: str = "sgd"  # "lars" (MoQuad), "sgd" (MCPNet), "adam" or "adamw" (small scale; momentum = beta1)
    lr: Optional[float] = None  # None: the paper's rule for the pipeline at the global batch size
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0  # linear learning-rate warm-up before the cosine decay

    def __post_init__(self):
        from motionssl.models.optim import OPTIMIZERS
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name={shown(self.name)}; choose one of {sorted(OPTIMIZERS)}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.momentum < 0 or self.warmup_epochs < 0:
            raise ValueError(f"optim.weight_decay, optim.momentum and optim.warmup_epochs must be >= 0, got "
                             f"{shown(self.weight_decay)}, {shown(self.momentum)}, {shown(self.warmup_epochs)}")


@dataclass
class TrainConfig:
    """A training run. Defaults: the small CPU demo (tiny backbone, demo data)."""

    pipeline: str = "moquad"
    data: Optional[str] = None  # prepared dataset folder, class folder or list; None = the embedded demo dataset
    split: Optional[str] = None  # the training split of a prepared dataset (demo: "train")
    test_data: Optional[str] = None  # retrieval queries after training, if not a split of `data`
    test_split: Optional[str] = None  # their split of a prepared dataset (demo: "test")
    backbone: str = "tiny"
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    method: Dict[str, Any] = field(default_factory=dict)  # the method's options: its model's and its phases'
    # The method's pipeline settings, given as a mapping and built into its dataclass (MoQuadConfig, ...) here.
    pipeline_config: Any = None
    loader: Dict[str, Any] = field(default_factory=dict)  # options of pipelines.make_iterator (loader_options)
    epochs: int = 20
    steps: int = 0  # size the run in steps instead of epochs, learning-rate schedule included (0: use epochs)
    max_steps: int = 0  # stop early after this many steps; the schedule keeps its size (0: never)
    batch_size: int = 16  # per process
    optim: OptimConfig = field(default_factory=OptimConfig)
    device: str = "auto"  # auto | cpu | gpu
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # steps between checkpoints; 0: at the end of every epoch
    keep_checkpoints: int = 3
    retrieval: bool = True  # quick retrieval on test_split vs a random-init backbone at the end
    sync_batchnorm: bool = True  # under DDP on GPUs: BatchNorm statistics over the global batch
    deterministic: bool = False  # deterministic kernels only: a run repeated on one machine gives the same bits
    sync_timing: bool = False  # on a GPU: wait for each step to finish before timing it (exact step time and data
    # wait, at the cost of the overlap between the host's next launches and the device's work; for benchmarks)
    out: Optional[str] = None  # run folder; default runs/<pipeline>-<time>

    def __post_init__(self):
        for name in ("epochs", "batch_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {shown(getattr(self, name))}")
        for name in ("steps", "max_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: off), got {shown(getattr(self, name))}")
        if not 0 <= self.seed < 2 ** 64:  # the width of torch's and numpy's seeds
            raise ValueError(f"seed must be >= 0 and < 2**64, got {shown(self.seed)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={shown(self.device)}; choose one of {list(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={shown(self.precision)}; choose one of {list(PRECISIONS)}")
        if not self.steps and self.optim.warmup_epochs > self.epochs:  # a run sized in steps: train.py checks it
            raise ValueError(f"optim.warmup_epochs={shown(self.optim.warmup_epochs)} is longer than the run "
                             f"(epochs={self.epochs}); the warm-up must end within it")
        self.loader = loader_options(self.loader)
        self.pipeline_config = pipeline_settings(self.pipeline, self.pipeline_config)


# The iterator's options that train.py sets itself, and from what: the loader section may not give them.
SET_BY_TRAIN = {"batch_size": "batch_size", "device": "device", "seed": "seed", "shard_id": "(the rank)",
                "num_shards": "(the world size)", "config": "pipeline_config", "device_id": "(the local rank)",
                "name": "--pipeline", "index": "--data"}
# The loader section's counts: the least each may be, and what it counts (or what null means).
LOADER_COUNTS = {"num_workers": (0, " (0: decoding in the training process)"),
                 "num_threads": (1, ", or null (the default for the device)"),
                 "prefetch": (1, " (batches prepared ahead)")}


def loader_options(section: Dict[str, Any]) -> Dict[str, Any]:
    """The ``loader`` section as keyword arguments of the training iterator (``pipelines.VideoIterator``): each value
    converted to its option's type, the counts checked (:data:`LOADER_COUNTS`), the options that train.py sets itself
    refused; errors name ``loader.<key>``."""
    from motionssl.pipelines.iterators import VideoIterator

    taken = sorted(set(section) & set(SET_BY_TRAIN))
    if taken:
        key, source = taken[0], SET_BY_TRAIN[taken[0]]
        allowed = sorted(set(inspect.signature(VideoIterator).parameters) - set(SET_BY_TRAIN))
        raise ConfigError(f"loader.{key} is set by train.py from {source}"
                          + (f"; write {key}=... instead" if source == key else "") + f" (the loader section takes "
                          f"{allowed})")
    options = coerce_kwargs(VideoIterator, section, "loader")
    for key, (least, meaning) in LOADER_COUNTS.items():
        if options.get(key) is not None and options[key] < least:
            raise ConfigError(f"loader.{key}={shown(options[key])}: expected a whole number >= {least}{meaning}")
    return options


def pipeline_settings(method: str, section: Any):
    """The ``pipeline_config`` section as the config dataclass of ``method``'s pipeline (``MoQuadConfig``, ...), built
    and checked, errors naming ``pipeline_config.<key>``; an instance of that dataclass is returned as it is."""
    from motionssl.models.methods import get_method
    from motionssl.pipelines.planners import pipeline_spec  # loads the planners, and DALI: not on import

    return build(pipeline_spec(get_method(method).pipeline).config, section, "pipeline_config")


def merged(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` with ``update`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> Dict[str, Any]:
    """``a.b=value`` → ``{"a": {"b": value}}``; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {shown(text)} must look like key=value (e.g. optim.lr=0.1)")
    key, raw = text.split("=", 1)
    if not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"override {shown(text)}: the key before '=' is empty or has an empty part")
    value: Any = read_yaml(raw, f"override {shown(text)}") if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def read_config_file(given: str) -> Dict[str, Any]:
    """The mapping of keys to values in a config file: ``given`` is a file, or the name of a shipped configuration
    (``configs/moquad_r3d18.yaml``, ``moquad_r3d18``: :mod:`motionssl.configs`)."""
    path = shipped_configs.resolve(given)
    if not os.path.exists(path):
        raise ConfigError(f"config file {cut(given)} not found (nor a shipped configuration of that name: "
                          f"{', '.join(shipped_configs.shipped()[:6])} ...)")
    with open(path) as f:
        loaded = read_yaml(f, path) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return loaded


def load_config(files: List[str] = (), overrides: List[str] = (), base: Optional[Dict[str, Any]] = None,
                **top: Any) -> TrainConfig:
    """Defaults, then ``base`` (a saved run's config), then each YAML file in order, then ``top`` keys, then
    ``key=value`` overrides.

    Several files stack: a paper configuration followed by a small ablation file that
    changes a few keys. A file that does not exist is looked up among the shipped
    configurations (:func:`read_config_file`).
    """
    sources = ([(base, None)] if base else []) + [(read_config_file(given), given) for given in files]
    sources += [({k: v for k, v in top.items() if v is not None}, None)]
    sources += [(parse_override(text), text) for text in overrides]
    method = next((values["pipeline"] for values, _ in reversed(sources) if "pipeline" in values), TrainConfig.pipeline)
    values: Dict[str, Any] = {}
    for source, where in sources:
        values = merged(values, moved_to_method(source, method, where))
    origins = (["the run's saved config"] if base else []) + list(files) + list(overrides)
    return build(TrainConfig, values, origin=", ".join(cut(text) for text in origins) or "defaults")


# Top-level keys of older configs that are a method's options now (``method.<key>``), and that method.
MOVED_TO_METHOD = {"appearance_warmup": "MoQuad"}


def moved_to_method(values: Dict[str, Any], method: Any, where: Optional[str]) -> Dict[str, Any]:
    """One source's ``values`` with the top-level keys that moved into the ``method`` section put there; where the
    run's ``method`` has no such option (it never read it) the key is left out. A source the user gives (``where``:
    a file, an override) gets a one-line warning naming the new key; a saved run's config moves silently."""
    from motionssl.models.methods import METHODS

    found = [key for key in MOVED_TO_METHOD if key in values]
    if not found:
        return values
    values = dict(values)
    taken = METHODS[method].options() if isinstance(method, str) and method in METHODS else None
    for key in found:
        value = values.pop(key)
        if isinstance(values.get("method"), dict) and key in values["method"]:
            raise ConfigError(f"{key} and method.{key} are both given{f' in {cut(where)}' if where else ''}; "
                              f"keep method.{key}")
        kept = taken is None or key in taken  # an unknown method is refused where the config is built
        if where is not None:
            logger.warning("%s: %s is deprecated; write method.%s (an option of %s)%s", cut(where), key, key,
                           MOVED_TO_METHOD[key], "" if kept else f", which {method} does not take: ignored")
        if kept:
            values = merged(values, {"method": {key: value}})
    return values


def to_dict(cfg) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


# --- checkpoints -----------------------------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    """Every RNG a run draws from; on GPU the current device's only (a run may resume on a
    machine with fewer GPUs). CUDA's only where this process uses CUDA already: asking
    ``torch.cuda.is_available()`` would initialise the driver in a CPU run, after which its
    decoding workers could no longer be forked."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any], cuda: bool = False) -> None:
    """Restore :func:`rng_state`; the current CUDA device's generator too when ``cuda`` (a GPU run)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if cuda and isinstance(state.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(state["cuda"])


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, a read-only folder); the message says which."""


def list_checkpoints(folder: str) -> List[str]:
    """The ``ckpt-<step>.pt`` files of ``folder``, oldest first. Reading never changes the folder."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), "ckpt-*.pt")))


def _step_of(path: str) -> int:
    return int(os.path.basename(path)[5:-3])


class Checkpointer:
    """``ckpt-<step>.pt`` files in ``folder``, written atomically and durably, the newest ``keep`` kept.

    A checkpoint is written to a temporary file, flushed to disk (``fsync``), renamed over
    its final name and the folder entry flushed too: a crash or power loss leaves either the
    complete new checkpoint or none, never a truncated one under the real name. The
    temporary file's name carries the writer's host and process id; when the writer opens
    the folder it removes the temporaries of writers of this host that are gone (a save
    killed midway), and never those of a live process. Readers (:func:`load_checkpoint`,
    ``eval.py``) never delete anything. Only the ``writer`` process (rank 0) writes; the
    others get the path it writes. A save that fails (a full disk) raises a
    :class:`CheckpointWriteError` and leaves no temporary behind.
    """

    def __init__(self, folder: str, keep: int = 3, writer: bool = True):
        self.folder, self.keep, self.writer = folder, max(1, keep), writer
        if writer:
            os.makedirs(folder, exist_ok=True)
            for stale in glob.glob(os.path.join(glob.escape(folder), "ckpt-*.pt.tmp*")):
                if _abandoned(stale):
                    os.remove(stale)

    def path(self, step: int) -> str:
        return os.path.join(self.folder, f"ckpt-{step:08d}.pt")

    def save(self, state: Dict[str, Any], step: int) -> str:
        if not self.writer:
            return self.path(step)
        # Serialised in memory first: torch's file writer reports a full disk as an opaque
        # RuntimeError ("unexpected pos"), a plain write says "No space left on device".
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
        path = self._write(step, lambda f: f.write(buffer.getbuffer()))
        for old in self.list()[:-self.keep]:
            os.remove(old)
        return path

    def copy_in(self, source: str, step: int) -> str:
        """Copy the checkpoint file ``source`` (of step ``step``) into this folder, as :meth:`save` writes one."""
        def copy(f):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f)

        return self._write(step, copy)

    def _write(self, step: int, write) -> str:
        """``write(file)`` into a temporary file, flushed, renamed to the checkpoint of ``step``; the folder entry
        flushed too. A :class:`CheckpointWriteError` names the checkpoint and leaves no temporary behind."""
        path = self.path(step)
        if not self.writer:
            return path
        tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise CheckpointWriteError(f"could not write checkpoint {path} ({exc.strerror or exc}; "
                                       f"{_free_space(self.folder)}); the last complete one is "
                                       f"{self.latest() or 'none'}") from exc
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        _fsync_dir(self.folder)
        return path

    def list(self) -> List[str]:
        return list_checkpoints(self.folder)

    def supersede_after(self, step: int) -> List[str]:
        """Rename the checkpoints of steps after ``step`` to ``*.superseded`` (a run resumed from an
        earlier one writes its own); returns their former paths. Nothing is deleted."""
        later = [p for p in self.list() if _step_of(p) > step]
        if self.writer:
            for path in later:
                os.replace(path, path + ".superseded")
        return later

    def latest(self) -> Optional[str]:
        found = self.list()
        return found[-1] if found else None

    def latest_step(self) -> Optional[int]:
        """The step of the newest checkpoint, or ``None``."""
        latest = self.latest()
        return _step_of(latest) if latest else None


def _abandoned(tmp: str) -> bool:
    """Whether a checkpoint temporary was left by a writer of this host that is gone."""
    tail = tmp.rsplit(".tmp", 1)[1]
    host, _, pid = tail.lstrip("-").rpartition("-")  # "-<host>-<pid>", or "<pid>" from older versions
    if not pid.isdigit() or (host and host != socket.gethostname()):
        return False
    return not files.pid_alive(int(pid))


def _free_space(folder: str) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2 ** 20:.0f} MiB free there"
    except OSError:
        return "free space unknown"


def _fsync_dir(folder: str) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint written by :class:`Checkpointer`; a clear error for anything else."""
    if os.path.isdir(path):  # a run folder or its checkpoints folder: the newest checkpoint
        if os.path.isdir(os.path.join(path, "checkpoints")):
            path = os.path.join(path, "checkpoints")
        found = list_checkpoints(path)
        latest = found[-1] if found else None
        if latest is None:
            raise FileNotFoundError(f"{path}: no ckpt-*.pt checkpoint in this folder")
        path = latest
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read ({exc.__class__.__name__}: {exc}); "
                         "it is corrupt or not a torch file") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint written by train.py")
    state["path"] = path
    return state


class CheckpointError(ValueError):
    """A checkpoint that cannot give a backbone; the message names the file and the mismatch."""


def _listing(items, limit: int = 8) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{items[:limit]}{more}"


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint dict (``path`` is a file or a run's folder) with what evaluation needs checked."""
    try:
        state = load_checkpoint(path)
    except (ValueError, FileNotFoundError) as exc:  # missing, corrupt file or another format
        raise CheckpointError(str(exc)) from exc
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{state['path']}: no 'config' dict; a {CHECKPOINT_FORMAT} checkpoint stores the "
                              "run's config")
    missing = [k for k in ("backbone", "backbone_kwargs", "pipeline_config") if k not in config]
    if missing or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{state['path']}: the checkpoint lacks {missing or ['model']} "
                              f"(config keys: {sorted(config)})")
    return state


def build_backbone(name: str, kwargs: Dict[str, Any], where: str):
    """``create_backbone(name, **kwargs)``; a :class:`CheckpointError` naming ``where`` if it cannot be built."""
    from motionssl.models.backbones import create_backbone

    try:
        return create_backbone(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: cannot build backbone {name!r} with {kwargs}: {exc}") from exc


def backbone_from_state(state: Dict[str, Any]):
    """The checkpoint's backbone with its weights (the ``backbone.*`` entries of ``model``).

    Any mismatch between the weights and the architecture the config names — missing or
    unexpected keys, other shapes — is a :class:`CheckpointError` listing them.
    """
    path, config = state["path"], state["config"]
    name, kwargs = config["backbone"], dict(config["backbone_kwargs"])
    backbone = build_backbone(name, kwargs, path)
    weights = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    if not weights:
        raise CheckpointError(f"{path}: the model state holds no 'backbone.*' entries "
                              f"(its keys start {_listing(sorted(state['model']), 5)})")
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [f"{k}: {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}"
              for k in sorted(set(weights) & set(expected)) if weights[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{what} {_listing(keys)}" for what, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches (checkpoint vs model)", shapes)) if keys]
        raise CheckpointError(f"{path}: the backbone weights do not match backbone {name!r} with {kwargs}: "
                              + "; ".join(problems))
    backbone.load_state_dict(weights)
    return backbone


def load_backbone(path: str):
    """``(backbone with the checkpoint's weights, the run's config)``; :class:`CheckpointError` names any mismatch."""
    state = read_checkpoint(path)
    return backbone_from_state(state), state["config"]


def clip_settings(config: Dict[str, Any], where: str):
    """``(frames per clip, augmentation dict)`` of a run's saved ``pipeline_config``, its contract keys checked."""
    clip = config.get("pipeline_config", {}).get("clip", {})
    augment = dict(clip.get("augment", {}))
    missing = [k for k in ("frames",) if k not in clip] + [f"augment.{k}" for k in ("size", "mean", "std")
                                                          if k not in augment]
    if missing:
        raise CheckpointError(f"{where}: pipeline_config.clip lacks {missing}; cannot rebuild the training clips")
    return int(clip["frames"]), augment


# --- logs ------------------------------------------------------------------------------------
class MetricsLog:
    """Scalars to ``metrics.jsonl`` (always) and TensorBoard.

    ``resume_step``: a run resumed from the checkpoint of that step replays the steps after
    it, so their rows (written before the interruption) move to ``metrics-superseded.jsonl``
    first — the log then holds every step once, as the uninterrupted run's would.
    """

    def __init__(self, folder: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self.path = os.path.join(folder, "metrics.jsonl")
        self.board = None
        if not enabled:
            return
        os.makedirs(folder, exist_ok=True)
        self._truncate(resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(os.path.join(folder, "tb"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # the JSONL file has the same numbers
            self.board = None

    def _truncate(self, step: int) -> None:
        """Keep the rows of steps <= ``step`` (all of them for a fresh run's empty log)."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            rows = f.readlines()
        kept, later = [], []
        for row in rows:
            try:
                (kept if json.loads(row)["step"] <= step else later).append(row)
            except (ValueError, KeyError, TypeError):  # a line cut short by a kill: drop it
                continue
        if len(kept) != len(rows):
            if later:
                with open(os.path.join(os.path.dirname(self.path), "metrics-superseded.jsonl"), "a") as f:
                    f.writelines(later)
            tmp = f"{self.path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, self.path)

    def write(self, step: int, scalars: Dict[str, float]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        except OSError as exc:  # a full disk: name the file (a failed write's own error does not)
            raise OSError(exc.errno, exc.strerror or str(exc), self.path) from exc
        if self.board is not None:
            for key, value in scalars.items():
                self.board.add_scalar(key, value, step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
