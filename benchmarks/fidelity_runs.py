"""The runs of the fidelity table (:mod:`benchmarks.fidelity`): one folder per row and seed, cached by its result.

Each run lives in ``<out>/<row>/seed<k>/``: ``log.txt`` (the commands and their output),
``train/`` (train.py's run folder), eval.py's JSON and, once every command succeeded,
``result.json`` — the cached cell. A run whose ``result.json`` exists is read, never run again, and served only
while its row still runs what made it (:func:`stale`): a cell made with another setting is left out of the
table, and a run refuses to go on in its folder.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.fidelity_rows import BASE, CONTROLS, ROWS, Row
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
    steps = row.steps or steps  # a row's own budget (the -stepsN rows), else the table's
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
    done, why = cell(row, seed, args, data)
    if why is not None:  # made with another setting: never served as this row's, never run over
        if args.cached:
            return {"row": row.name, "seed": seed, "stale": why}
        raise SystemExit(refusal(row.name, {seed: why}, args.out))
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
    if row.pretrained:
        start, why = cell(ROWS[row.pretrained], seed, args, data)
        if start is None:  # a finished run, not a partial one
            print(f"  {row.name} seed {seed}: no finished {row.pretrained} run of seed {seed} in {args.out} to start "
                  f"from; run that row first (--rows {row.pretrained} {row.name})", flush=True)
            return {"row": row.name, "seed": seed, "failed": f"no {row.pretrained} checkpoint"}
        if why is not None:
            raise SystemExit(refusal(row.pretrained, {seed: why}, args.out))
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


# --- whether a cached cell is its row's setting now -------------------------------------------------------------
# A trained row's cell is compared by its training config: the one train.py recorded, resolved, in
# <run>/train/config.yaml against the one the row's train.py command resolves to now (so a config file edited
# since, or other overrides, show up); its evaluations, and every row without training (fine-tuning, the random
# and control rows), by their command lines recorded in result.json. A fine-tuning row also needs the checkpoint
# it started from to be its pre-training row's setting now. Left out of the comparison, as not the setting:
#   out, data, test_data       where the run and the dataset lie: given on the command line (--out, --data),
#                              absolute in the record, elsewhere when --out or the dataset moved
#   log_every, checkpoint_every, keep_checkpoints
#                              what is logged and kept, not what is trained
#   sync_timing                how steps are timed
#   retrieval                  the quick retrieval after training (the checkpoint is written before it; the
#                              table reads eval.py's)
#   loader.num_workers, loader.num_threads, loader.prefetch
#                              throughput only: the samples are a pure function of the seed whatever the worker
#                              or thread count
# The rest — the method's options (with their defaults), the pipeline settings, the optimiser, steps, batch,
# seed, device, precision, the loader's decoder and its policies on short and bad videos — is the setting.
NOT_THE_SETTING = ("out", "data", "test_data", "log_every", "checkpoint_every", "keep_checkpoints", "sync_timing",
                   "retrieval", "loader.num_workers", "loader.num_threads", "loader.prefetch")
DATA_OPTIONS = ("--data", "--test-data")  # command-line options whose value is a dataset's path


def cell(row: Row, seed: int, args, data: str) -> Tuple[Optional[Dict], Optional[str]]:
    """The finished result of ``(row, seed)`` in ``args.out`` (None if it has not finished) and why it is not the
    row's setting now (None while it is)."""
    done = finished(args.out, row.name, seed)
    return done, (None if done is None else stale(row, seed, args, data, done))


def stale(row: Row, seed: int, args, data: str, result: Dict) -> Optional[str]:
    """Why the finished ``result`` of ``(row, seed)`` in ``args.out`` is not what the row's commands would make now:
    a clause such as "was trained with method.temperature=0.07, the row now has 0.1"; None if it is."""
    run = _run_dir(args.out, row.name, seed)
    now = commands(row, seed, data, run, args.steps, args.batch_size, args.num_clips, args.set,
                   train_videos=split_size(data, "train"))
    trained = now[0][1] == "train.py"
    if trained:
        why = _training_difference(row.name, now[0], os.path.join(run, TRAIN), "the row")
        if why:
            return why
    recorded = result.get("commands")
    if not isinstance(recorded, list) or not all(isinstance(c, str) for c in recorded):
        return "has no record of its commands"
    now_lines = [" ".join(c[1:]) for c in now]
    # A trained row's train.py line is compared by the config it resolves to (above), not word for word.
    why = _command_difference(_portable(recorded[trained:], _recorded_run(recorded)),
                              _portable(now_lines[trained:], run))
    if why or not row.pretrained:
        return why
    start = ROWS[row.pretrained]
    start_run = _run_dir(args.out, start.name, seed)
    train = commands(start, seed, data, start_run, args.steps, args.batch_size, args.num_clips, args.set)[0]
    why = _training_difference(start.name, train, os.path.join(start_run, TRAIN), start.name)
    return f"started from {start.name}'s checkpoint, which {why}" if why else None


def _training_difference(name: str, train: List[str], folder: str, whose: str) -> Optional[str]:
    """How the config recorded in the train.py run folder ``folder`` differs from the one the train.py command
    line ``train`` resolves to (as train.py resolves it); None if they are the same setting."""
    import yaml

    from motionssl import train as train_cli
    from motionssl.training import load_config

    path = os.path.join(folder, train_cli.CONFIG_FILE)
    if not os.path.exists(path):
        return "has no record of its config"
    try:
        with open(path) as f:
            saved = yaml.safe_load(f)
        if not isinstance(saved, dict):
            raise ValueError(f"{path} is not a mapping of keys to values")
        old = _setting(load_config([], [], base=saved))
    except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        return f"has a config that no longer loads ({' '.join(str(exc).split())})"
    args = train_cli.parse_args(train[2:])
    args.config = [os.path.join(ROOT, c) for c in args.config]  # as train.py reads them: from the repository root
    try:
        new = _setting(train_cli.run_config(args, _method(args.pipeline))[0])
    except (OSError, ValueError) as exc:  # a config file of the row edited into a broken one
        raise SystemExit(f"fidelity: row {name}: {' '.join(str(exc).split())}") from None
    key = train_cli.first_difference(new, old)
    if key is None:
        return None
    return (f"was trained with {key}={_value(train_cli.lookup(old, key))}, {whose} now has "
            f"{_value(train_cli.lookup(new, key))}")


def _method(pipeline: str):
    from motionssl.models.methods import get_method

    return get_method(pipeline)


def _setting(cfg) -> Dict:
    """A resolved training config as a nested mapping, the method's options with their defaults, without
    ``NOT_THE_SETTING``."""
    from motionssl.train import method_settings
    from motionssl.training import to_dict

    values = dict(to_dict(cfg), method=method_settings(_method(cfg.pipeline), cfg.method))
    for key in NOT_THE_SETTING:
        *parents, last = key.split(".")
        holder = values
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(last, None)
    return values


def _value(value) -> str:
    from motionssl.pipelines.config import shown

    return "nothing" if value is None else value if isinstance(value, str) else shown(value)


def _recorded_run(lines: Sequence[str]) -> str:
    """The run folder recorded commands ran into: the --out of the last (the evaluation's, or the only one)."""
    words = lines[-1].split() if lines else []
    at = [i for i, w in enumerate(words[:-1]) if w == "--out"]
    return words[at[-1] + 1] if at else ""


def _portable(lines: Sequence[str], run: str) -> List[List[str]]:
    """Command lines, word by word, with the folder of the runs (``run``'s grandparent) and the dataset's path as
    placeholders: the same commands from a moved --out or on a dataset elsewhere compare equal."""
    root = os.path.dirname(os.path.dirname(run)) + os.sep if run else None
    out = []
    for line in lines:
        words = (line.replace(root, "<out>" + os.sep) if root else line).split()
        out.append(["<data>" if i and words[i - 1] in DATA_OPTIONS else w for i, w in enumerate(words)])
    return out


def _command_difference(old: List[List[str]], new: List[List[str]]) -> Optional[str]:
    """The first difference between recorded command lines and the row's now (each a list of words), or None."""
    if len(old) != len(new):
        return f"was run with {len(old)} commands, the row now runs {len(new)}"
    for was, now in zip(old, new):
        if was == now:
            continue
        tag, i1, i2, j1, j2 = next(op for op in difflib.SequenceMatcher(a=was, b=now, autojunk=False).get_opcodes()
                                   if op[0] != "equal")
        if tag == "replace" and i1 and was[i1 - 1].startswith("--") and not was[i1].startswith("--"):
            i1, j1 = i1 - 1, j1 - 1  # a changed value: name its option
        gone, added = " ".join(was[i1:i2]), " ".join(now[j1:j2])
        if tag == "delete":
            return f"was run with {gone}, the row now leaves it out"
        if tag == "insert":
            return f"was run without {added}, the row now has it"
        return f"was run with {gone}, the row now has {added}"
    return None


def _seeds(seeds: Sequence[int]) -> str:
    return ("seeds " if len(seeds) > 1 else "seed ") + " ".join(map(str, seeds))


def _described(stale_seeds: Dict[int, str]) -> str:
    """Stale seeds and why, seeds with the same reason together: "seeds 0 1 were trained with ..., seed 2 ..."."""
    by_reason: Dict[str, List[int]] = {}
    for seed, why in stale_seeds.items():
        by_reason.setdefault(why, []).append(seed)
    parts = []
    for why, seeds in by_reason.items():
        verb, _, rest = why.partition(" ")
        if len(seeds) > 1 and verb in ("was", "has"):  # the reasons are written for one seed
            why = {"was": "were", "has": "have"}[verb] + " " + rest.replace(" its ", " their ")
        parts.append(f"{_seeds(seeds)} {why}")
    return ", ".join(parts)


def stale_line(name: str, stale_seeds: Dict[int, str]) -> str:
    """What --cached says of a row whose finished seeds ``stale_seeds`` (seed: why) are another setting."""
    return (f"{name}: {_described(stale_seeds)}: not tabulated; run {'them' if len(stale_seeds) > 1 else 'it'} "
            "again into a new --out")


def refusal(name: str, stale_seeds: Dict[int, str], out: str) -> str:
    """Why a run does not go on where finished seeds ``stale_seeds`` of row ``name`` are another setting."""
    return (f"fidelity: {name}: {_described(stale_seeds)}, in {out}: a run there would mix settings in the row; "
            "give a new --out to run the row as it is now (the results there stay as they are)")


def refuse_stale(rows: Sequence[Row], args, data: str) -> None:
    """Exit in one line, before anything runs, where a finished seed of a row — or of the row a fine-tuning row
    starts from — is another setting than its row's now."""
    found = {}
    for name in dict.fromkeys(n for r in rows for n in (r.name, r.pretrained) if n):
        stale_seeds = {seed: why for seed in args.seeds if (why := cell(ROWS[name], seed, args, data)[1])}
        if stale_seeds:
            found[name] = stale_seeds
    if found:
        name, stale_seeds = next(iter(found.items()))
        more = f" ({len(found) - 1} more rows like it: --cached names them)" if len(found) > 1 else ""
        raise SystemExit(refusal(name, stale_seeds, args.out) + more)


def split_size(data: str, split: str) -> int:
    """The videos of ``split`` in the dataset folder ``data`` (0 without its list)."""
    path = os.path.join(data, f"{split}.txt")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())
