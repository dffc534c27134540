"""The runs of the fidelity table (:mod:`benchmarks.fidelity`): one folder per row and seed, cached by its result.

Each run lives in ``<out>/<row>/seed<k>/``: ``log.txt`` (the commands and their output),
``train/`` (train.py's run folder), eval.py's JSON and, once every command succeeded,
``result.json`` — the cached cell. A run whose ``result.json`` exists is read, never run again.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from benchmarks.fidelity_rows import BASE, CONTROLS, Row
from motionssl.pipelines import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = "train"  # the train.py run folder inside a (row, seed) folder


def supervised_epochs(steps: int, batch_size: int, train_videos: int) -> int:
    """Epochs of the supervised row: as many training clips as a pre-training run sees."""
    return max(1, round(steps * batch_size / max(train_videos, 1)))


def commands(row: Row, seed: int, data: str, run: str, steps: int, batch_size: int, num_clips: int,
             extra: Sequence[str] = (), train_videos: int = 0) -> List[List[str]]:
    """The train.py / eval.py command lines of one (row, seed), in order."""
    py = sys.executable
    split = ["--data", data, "--split", "train", "--test-split", "test"]
    views = ["--num-clips", str(num_clips), "--seed", str(seed)]
    if row.method in ("random", *CONTROLS):
        backbone = [] if row.method == "random" else ["--backbone", row.method]
        base = ["--random-init", *backbone, "--config", BASE["simclr"], *split, "--out", run, *views]
        entry = ["eval.py"] if row.method == "random" else ["-m", "benchmarks.controls"]
        return [[py, *entry, "retrieval", *base], [py, *entry, "linear", *base]]
    if row.method in ("supervised", "finetune"):
        # The small configs' clip shape and optimiser, trained on the labels with the fine-tuning augmentation
        # (crop, no flip — it swaps left and right — and no colour jitter); as many epochs over the labelled
        # videos as a pre-training run sees clips of every video.
        epochs = supervised_epochs(steps, batch_size, train_videos)
        if row.same_steps:  # the share's epochs are that much shorter: as many optimiser steps as with every label
            epochs = max(1, round(epochs / row.labels))
        start = ["--random-init", "--backbone", "tiny"]
        if row.pretrained:
            start = ["--checkpoint", pretrained_run(run, row)]
        elif row.method == "finetune":  # the checkpoints' clips (the small configs share them), from scratch
            start += ["--config", BASE["simclr"]]
        labels = ["--labels", f"{row.labels:g}"] if row.labels < 1.0 else []
        # --augment papers: the papers' fine-tuning augmentation instead of the checkpoint's (or --config's),
        # at the same clip size and normalisation; all else stays.
        augment = ["--augment", row.augment] if row.augment != "checkpoint" else []
        return [[py, "eval.py", "finetune", *start, "--frames", "8", "--size", "32", "--flip-prob", "0", *split,
                 "--out", run, "--epochs", str(epochs), "--batch-size", str(batch_size), "--optimizer", "adamw",
                 "--lr", "1e-3", *labels, *augment, *views]]
    steps = row.steps or steps
    configs = [a for c in (BASE[row.method], *row.configs) for a in ("--config", c)]
    # train.py writes its own run folder (it refuses one holding files it did not write, such as log.txt).
    train = [py, "train.py", "--pipeline", row.method, *configs, *split, "--out", os.path.join(run, TRAIN),
             f"seed={seed}", f"steps={steps}", f"batch_size={batch_size}", "retrieval=false", *row.overrides, *extra]
    ckpt = ["--checkpoint", os.path.join(run, TRAIN), "--out", run, *views]
    return [train, [py, "eval.py", "retrieval", *ckpt], [py, "eval.py", "linear", *ckpt]]


def pretrained_run(run: str, row: Row) -> str:
    """The train.py run folder a fine-tuning row starts from: its ``pretrained`` row's, of the same seed."""
    return os.path.join(os.path.dirname(os.path.dirname(run)), row.pretrained, os.path.basename(run), TRAIN)


def _read_json(folder: str, suffix: str) -> Dict:
    found = [f for f in os.listdir(folder) if f.endswith(suffix)]
    if not found:
        raise FileNotFoundError(f"no *{suffix} in {folder}")
    with open(os.path.join(folder, sorted(found)[-1])) as f:
        return json.load(f)


def last_scalars(run: str) -> Dict[str, float]:
    """The last logged training scalars of a run (loss and its parts, mip_acc, ranks)."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    if not lines:
        return {}
    row = json.loads(lines[-1])
    return {k: round(v, 4) for k, v in row.items()
            if k not in ("time", "lr", "epoch", "clips_per_s", "data_wait", "gpu_mem_gib", "step")}


def _run_commands(row: Row, seed: int, run: str, cmds: List[List[str]]):
    """Run the commands of one (row, seed) into ``run``; their durations, or a failure record."""
    if os.path.exists(os.path.join(run, "log.txt")):  # an interrupted run of ours (log.txt comes first): again
        shutil.rmtree(run)
    files.refuse_foreign(run, "a fidelity run (its log.txt is missing)")
    os.makedirs(run, exist_ok=True)
    env = dict(os.environ, TQDM_DISABLE="1")
    seconds = []
    with open(os.path.join(run, "log.txt"), "w") as log:
        for c in cmds:
            log.write("$ " + " ".join(c) + "\n")
            log.flush()
            start = time.time()
            code = subprocess.call(c, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            seconds.append(time.time() - start)
            if code != 0:
                print(f"  {row.name} seed {seed}: `{' '.join(c[1:3])}` failed (exit {code}); see "
                      f"{os.path.join(run, 'log.txt')}", flush=True)
                return {"row": row.name, "seed": seed, "failed": " ".join(c[1:3]), "exit": code}
    return seconds


def _run_dir(out: str, name: str, seed: int) -> str:
    """The folder of one seed of row ``name`` in ``out``."""
    return os.path.join(out, name, f"seed{seed}")


RESULT = "result.json"  # in a run's folder once the run has finished


def finished(out: str, name: str, seed: int) -> Optional[Dict]:
    """The result.json of a finished run of row ``name``, seed ``seed``, in ``out``; None if it has not finished."""
    path = os.path.join(_run_dir(out, name, seed), RESULT)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_one(row: Row, seed: int, args, data: str) -> Dict:
    """Train (unless random) and evaluate one seed of one row; the result, also written to result.json."""
    run = _run_dir(args.out, row.name, seed)
    done = finished(args.out, row.name, seed)
    if done is not None:
        return done
    if args.cached:
        return {}
    cmds = commands(row, seed, data, run, args.steps, args.batch_size, args.num_clips, args.set,
                    train_videos=split_size(data, "train"))
    if args.dry_run:
        for c in cmds:
            print(" ".join(c))
        return {}
    if row.pretrained and finished(args.out, row.pretrained, seed) is None:  # a finished run, not a partial one
        print(f"  {row.name} seed {seed}: no finished {row.pretrained} run of seed {seed} in {args.out} to start "
              f"from; run that row first (--rows {row.pretrained} {row.name})", flush=True)
        return {"row": row.name, "seed": seed, "failed": f"no {row.pretrained} checkpoint"}
    seconds = _run_commands(row, seed, run, cmds)
    if isinstance(seconds, dict):  # a failure
        return seconds
    if row.method in ("supervised", "finetune"):  # classification by the trained network: the linear columns
        retrieval, linear = None, _read_json(run, ".finetune.json")["metrics"]
    else:
        retrieval = _read_json(run, ".retrieval.json")["metrics"]  # eval.py --out run writes its JSON there
        linear = _read_json(run, ".linear.json")["metrics"]
    trained = row.method not in ("random", *CONTROLS)
    result = {"row": row.name, "seed": seed,
              "retrieval_top1": 100 * retrieval["top1"] if retrieval else None,
              "retrieval_top5": 100 * retrieval["top5"] if retrieval else None, "linear_top1": 100 * linear["top1"],
              "linear_top5": 100 * linear["top5"],
              "train_seconds": round(seconds[0], 1) if trained else 0.0,
              "eval_seconds": round(sum(seconds[-2:]), 1) if row.method not in ("supervised", "finetune") else 0.0,
              "final": last_scalars(os.path.join(run, TRAIN)), "commands": [" ".join(c[1:]) for c in cmds]}
    with open(os.path.join(run, RESULT), "w") as f:
        json.dump(result, f, indent=2)
    return result


def split_size(data: str, split: str) -> int:
    """The videos of ``split`` in the dataset folder ``data`` (0 without its list)."""
    path = os.path.join(data, f"{split}.txt")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())
