"""What the training loop needs besides the model: its config, checkpoints and logs.

* :class:`TrainConfig` — one dataclass for a run; YAML files and ``key=value`` overrides
  fill it (command line over file over defaults) and unknown keys are rejected with the
  valid names. The defaults are the CPU demo run; ``configs/`` holds the papers' settings.
* :class:`Checkpointer` — atomic checkpoints (temporary file + rename), the last N kept,
  everything needed to continue mid-epoch exactly: model, optimiser, scheduler, step,
  iterator position, RNG states, config.
* :class:`MetricsLog` — a JSONL file and, when the package is present, TensorBoard.

Pure PyTorch: nothing here imports the pipelines.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml

CHECKPOINT_FORMAT = "motionssl/1"


@dataclass
class OptimConfig:
    name: str = "sgd"  # "lars" (MoQuad) or "sgd" (MCPNet)
    lr: Optional[float] = None  # None: the paper's rule for the pipeline at the global batch size
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0  # linear learning-rate warm-up before the cosine decay


@dataclass
class TrainConfig:
    """A training run. Defaults: the small CPU demo (tiny backbone, demo data)."""

    pipeline: str = "moquad"
    data: Optional[str] = None  # index / folder / list; None = the embedded demo dataset
    split: Optional[str] = None  # split of a prepared dataset (demo: "train")
    test_split: Optional[str] = None  # retrieval queries after training (demo: "test")
    backbone: str = "tiny"
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)
    method: Dict[str, Any] = field(default_factory=dict)  # kwargs of models.methods.create_method
    pipeline_config: Dict[str, Any] = field(default_factory=dict)  # config of pipelines.make_iterator
    loader: Dict[str, Any] = field(default_factory=dict)  # options of pipelines.make_iterator
    epochs: int = 20
    max_steps: int = 0  # stop after this many steps (0: run all epochs)
    batch_size: int = 16  # per process
    optim: OptimConfig = field(default_factory=OptimConfig)
    appearance_warmup: float = 0.2  # MoQuad Algorithm 1: fraction p of epochs on the appearance task
    device: str = "auto"  # auto | cpu | gpu
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # steps between checkpoints; 0: at the end of every epoch
    keep_checkpoints: int = 3
    retrieval: bool = True  # quick retrieval on test_split vs a random-init backbone at the end
    out: Optional[str] = None  # run folder; default runs/<pipeline>-<time>


def _check_keys(cls, values: Dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {where}; valid keys: {sorted(names)}")


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build(cls, values: Dict[str, Any], where: str):
    _check_keys(cls, values, where)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if dataclasses.is_dataclass(f.default_factory() if f.default_factory is not dataclasses.MISSING else None):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {f.name} must be a mapping, got {value!r}")
            value = _build(type(f.default_factory()), value, f"{where}:{f.name}")
        kwargs[f.name] = value
    return cls(**kwargs)


def parse_override(text: str) -> Dict[str, Any]:
    """``a.b=value`` → ``{"a": {"b": value}}``; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value (e.g. optim.lr=0.1)")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(files: List[str] = (), overrides: List[str] = (), **top: Any) -> TrainConfig:
    """Defaults, then each YAML file in order, then ``top`` keys, then ``key=value`` overrides.

    Several files stack: a paper configuration followed by a small ablation file that
    changes a few keys.
    """
    values: Dict[str, Any] = {}
    for path in files:
        if not os.path.exists(path):
            raise FileNotFoundError(f"config file {path} not found")
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must be a mapping of keys to values")
        values = _merge(values, loaded)
    values = _merge(values, {k: v for k, v in top.items() if v is not None})
    for text in overrides:
        values = _merge(values, parse_override(text))
    where = ", ".join(list(files) + list(overrides)) or "defaults"
    return _build(TrainConfig, values, where)


def to_dict(cfg) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


# --- checkpoints -----------------------------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """``ckpt-<step>.pt`` files in ``folder``, written atomically, the newest ``keep`` kept."""

    def __init__(self, folder: str, keep: int = 3):
        self.folder, self.keep = folder, max(1, keep)
        os.makedirs(folder, exist_ok=True)

    def save(self, state: Dict[str, Any], step: int) -> str:
        path = os.path.join(self.folder, f"ckpt-{step:08d}.pt")
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint under the real name
        for old in self.list()[:-self.keep]:
            os.remove(old)
        return path

    def list(self) -> List[str]:
        return sorted(glob.glob(os.path.join(self.folder, "ckpt-*.pt")))

    def latest(self) -> Optional[str]:
        found = self.list()
        return found[-1] if found else None


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint written by :class:`Checkpointer`; a clear error for anything else."""
    if os.path.isdir(path):  # a run folder or its checkpoints folder: the newest checkpoint
        if os.path.isdir(os.path.join(path, "checkpoints")):
            path = os.path.join(path, "checkpoints")
        latest = Checkpointer(path).latest()
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


# --- logs ------------------------------------------------------------------------------------
class MetricsLog:
    """Scalars to ``metrics.jsonl`` (always) and TensorBoard (when installed)."""

    def __init__(self, folder: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(folder, "metrics.jsonl")
        self.board = None
        if enabled:
            os.makedirs(folder, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(os.path.join(folder, "tb"))
            except ImportError:  # TensorBoard is optional; the JSONL file has the same numbers
                self.board = None

    def write(self, step: int, scalars: Dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        if self.board is not None:
            for key, value in scalars.items():
                self.board.add_scalar(key, value, step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
