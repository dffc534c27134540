"""Do the methods learn motion where appearance misleads? Controls, supervised, random, SimCLR, MoQuad, MCPNet, ablations.

Each row is pre-trained with ``train.py`` on the train split of the fidelity videos
(:mod:`benchmarks.fidelity_data`: every scene in every motion class, in both splits) at the
same budget — steps × batch — for every seed, then evaluated with ``eval.py retrieval`` and
``eval.py linear`` (test videos query / are classified against the train videos). A test
video's look-alikes are its own scene's videos of every class, so appearance scores at
chance and only motion above it. The table carries its own calibration: a hand-made
motion descriptor (it must score high: the task is solvable from motion), the colours of
one frame (at chance: appearance does not decide), and the tiny network trained on the
labels (:mod:`benchmarks.controls`).

    python -m benchmarks.fidelity                        # main rows and controls, 3 seeds (about an hour on 2 cores)
    python -m benchmarks.fidelity --rows moquad_ablations --seeds 0
    python -m benchmarks.fidelity --rows all --markdown benchmarks/FIDELITY.md
    python -m benchmarks.fidelity --list                 # the rows and what each changes

Every run lives in ``--out/<row>/seed<k>/`` with its log (``train/`` is train.py's run folder); a run whose ``result.json``
exists is not run again, so an interrupted benchmark continues where it stopped and
rows can be added later. The table (mean ± sample standard deviation over seeds) is
printed and written to ``--out/fidelity.json`` and ``fidelity.md`` (and ``--markdown``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from motionssl.pipelines import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = {m: os.path.join("configs", "small", f"{m}.yaml") for m in ("simclr", "moquad", "mcpnet")}
ABLATION = os.path.join("configs", "ablations")
PAPER_PAIRS = (os.path.join(ABLATION, "mcpnet_paper_negatives.yaml"),)


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, the config files on top of its base config, overrides."""

    name: str
    method: str  # a train.py pipeline, or "random", "supervised" or a control (CONTROLS): no pre-training
    group: str
    what: str
    configs: tuple = ()
    overrides: tuple = ()
    base: str = ""  # an ablation: the row it changes
    paper: str = ""  # what the paper found the change does to accuracy: "worse", "better", or "" (not in it)


def _rows() -> List[Row]:
    ab = lambda f: (os.path.join(ABLATION, f + ".yaml"),)  # noqa: E731
    # MCPNet's ablations vary the paper's method, not the small config's reversed MIP negative.
    mcp = lambda f: PAPER_PAIRS + ab(f)  # noqa: E731
    rows = [
        Row("motion-control", "motion_descriptor", "main",
            "control: hand-made motion features (affine flow of what changes), no appearance, no learning"),
        Row("appearance-control", "still_appearance", "main",
            "control: the colours of one frame, no motion, no learning"),
        Row("supervised", "supervised", "main",
            "labelled reference: the tiny network trained from scratch on the labels (eval.py finetune, "
            "linear column: its top-1)"),
        Row("random", "random", "main", "randomly initialised backbone, no pre-training"),
        Row("simclr", "simclr", "main", "SimCLR, two clips of a video at speed 1"),
        Row("moquad", "moquad", "main", "MoQuad: RAD positive, reversed intra negatives, mining, warm-up"),
        Row("mcpnet", "mcpnet", "main",
            "MCPNet: MIP + CIP, residual clips with their own BatchNorm; MIP's negative the clip played backwards, "
            "CIP with l1 (the small config)"),
        Row("mcpnet-paper", "mcpnet", "main", "MCPNet with the paper's pairs: MIP's negative at the other speed, "
            "CIP with it (the ablations' base)", PAPER_PAIRS),
        # MoQuad Tab. 4: quadruple members
        Row("moquad-no-intra-neg", "moquad", "moquad_ablations", "Tab. 4: without N", ab("moquad_tab4_no_intra_neg"),
            base="moquad", paper="worse"),
        Row("moquad-no-intra-neg-ad", "moquad", "moquad_ablations", "Tab. 4: without N̄",
            ab("moquad_tab4_no_intra_neg_ad"), base="moquad", paper="worse"),
        Row("moquad-no-intra", "moquad", "moquad_ablations", "Tab. 4: anchor + RAD positive only (no N, N̄)",
            ab("moquad_tab4_no_intra_neg") + ab("moquad_tab4_no_intra_neg_ad"), base="moquad", paper="worse"),
        Row("moquad-no-positive-ad", "moquad", "moquad_ablations", "Tab. 4: positive without RAD",
            ab("moquad_tab4_no_positive_ad"), base="moquad", paper="worse"),
        # Tab. 5: appearance and motion disturbance
        Row("moquad-rad-intra", "moquad", "moquad_ablations", "Tab. 5: RAD noise from the same video",
            ab("moquad_tab5_rad_intra"), base="moquad", paper="worse"),
        Row("moquad-be", "moquad", "moquad_ablations", "Tab. 5: BE (a frame of the clip) instead of RAD",
            ab("moquad_tab5_be"), base="moquad", paper="worse"),
        Row("moquad-speed", "moquad", "moquad_ablations",
            "Tab. 5: intra negatives sped up (the paper's op) instead of reversed",
            overrides=("pipeline_config.motion=speed",), base="moquad", paper="better"),
        Row("moquad-shuffle", "moquad", "moquad_ablations", "Tab. 5: intra negatives shuffled", ab("moquad_tab5_shuffle"),
            base="moquad", paper="better"),
        # Tab. 6: mining and warm-up
        Row("moquad-no-mining", "moquad", "moquad_ablations", "Tab. 6: β = 0 (Eq. 1)", ab("moquad_tab6_no_mining"),
            base="moquad", paper="worse"),
        Row("moquad-alpha1", "moquad", "moquad_ablations",
            "α = 1: the mined negatives weighted 1 is Eq. 1 (a check: the same as moquad-no-mining)",
            overrides=("method.alpha=1.0",), base="moquad", paper=""),
        Row("moquad-no-warmup", "moquad", "moquad_ablations", "Tab. 6: no appearance warm-up",
            ab("moquad_tab6_no_warmup"), base="moquad", paper="worse"),
        # MCPNet Tab. 1: gap t; Tab. 2: branches and CIP speed; Tab. 3: the view
        Row("mcpnet-gap1", "mcpnet", "mcpnet_ablations", "Tab. 1: t = 1", mcp("mcpnet_tab1_gap1"),
            base="mcpnet-paper", paper="worse"),
        Row("mcpnet-gap4", "mcpnet", "mcpnet_ablations", "Tab. 1: t = 4 (the paper's; the small config's is 2)",
            PAPER_PAIRS, overrides=("pipeline_config.gap=4",), base="mcpnet-paper", paper="better"),
        Row("mcpnet-cip-only", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP only (α = 0)", mcp("mcpnet_tab2_cip_only"),
            base="mcpnet-paper", paper="worse"),
        Row("mcpnet-mip-only", "mcpnet", "mcpnet_ablations", "Tab. 2: MIP only (α = 1)", mcp("mcpnet_tab2_mip_only"),
            base="mcpnet-paper", paper="worse"),
        Row("mcpnet-cip-same", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP at the same speed",
            mcp("mcpnet_tab2_cip_same_speed"), base="mcpnet-paper", paper="worse"),
        Row("mcpnet-cip-random", "mcpnet", "mcpnet_ablations", "Tab. 2: CIP at a random speed",
            mcp("mcpnet_tab2_cip_random_speed"), base="mcpnet-paper", paper="worse"),
        Row("mcpnet-residual", "mcpnet", "mcpnet_ablations",
            "Tab. 3: residual view (t = 1: the clips of mcpnet-gap1)", mcp("mcpnet_tab3_residual"),
            base="mcpnet-paper", paper="worse"),
        Row("mcpnet-rgb", "mcpnet", "mcpnet_ablations", "Tab. 3: RGB view instead of residual", mcp("mcpnet_tab3_rgb"),
            base="mcpnet-paper", paper=""),
        # What the investigation switched: each against the main row it changes
        *[Row(f"{m}-no-jitter", m, "diagnostics", "no colour jitter or grayscale (the demo configs' setting)",
              overrides=("pipeline_config.clip.augment.jitter_prob=0.0",
                         "pipeline_config.clip.augment.grayscale_prob=0.0")) for m in ("simclr", "moquad", "mcpnet")],
        *[Row(f"{m}-sgd", m, "diagnostics", f"SGD lr {lr} (the demo configs' optimiser) instead of AdamW 1e-3",
              overrides=("optim.name=sgd", f"optim.lr={lr}")) for m, lr in (("simclr", 0.1), ("moquad", 0.1),
                                                                             ("mcpnet", 0.05))],
        Row("mcpnet-bn-joint", "mcpnet", "diagnostics", "RGB and residual clips in one BatchNorm batch",
            overrides=("method.residual_bn=joint",)),
        Row("mcpnet-bn-split", "mcpnet", "diagnostics", "separate batches through shared BatchNorm layers",
            overrides=("method.residual_bn=split",)),
        Row("mcpnet-tau0.2", "mcpnet", "diagnostics", "MCPNet's temperature 0.2 instead of 0.07 (MIP's and CIP's)",
            overrides=("method.temperature=0.2",)),
        Row("mcpnet-alpha0.8", "mcpnet", "diagnostics", "α = 0.8 instead of 0.5: more weight on MIP (Eq. 5)",
            overrides=("method.alpha=0.8",)),
        Row("moquad-plain", "moquad", "diagnostics", "speed negatives, no warm-up, no mining",
            overrides=("pipeline_config.motion=speed", "appearance_warmup=0", "method.beta=0")),
        Row("moquad-window32", "moquad", "diagnostics", "clips drawn from 32-frame windows (further apart)",
            overrides=("pipeline_config.clip.window=32",)),
    ]
    return rows


ROWS: Dict[str, Row] = {r.name: r for r in _rows()}
GROUPS = ("main", "moquad_ablations", "mcpnet_ablations", "diagnostics")


def select(spec: Sequence[str]) -> List[Row]:
    """Rows by group or row name (``all`` = every row), in table order, without repeats."""
    names: List[str] = []
    for item in spec:
        for part in filter(None, item.split(",")):
            if part == "all":
                names += list(ROWS)
            elif part in GROUPS:
                names += [r.name for r in ROWS.values() if r.group == part]
            elif part in ROWS:
                names.append(part)
            else:
                raise SystemExit(f"fidelity: unknown row or group {part!r}; groups: {', '.join(GROUPS)}, all; "
                                 f"rows: see --list")
    wanted = set(names)
    return [r for r in ROWS.values() if r.name in wanted]


CONTROLS = ("motion_descriptor", "still_appearance")
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
    if row.method == "supervised":
        # The small configs' clip shape and optimiser, trained on the labels with the fine-tuning augmentation
        # (crop, no flip — it swaps left and right — and no colour jitter).
        epochs = supervised_epochs(steps, batch_size, train_videos)
        return [[py, "eval.py", "finetune", "--random-init", "--backbone", "tiny", "--frames", "8", "--size", "32",
                 "--flip-prob", "0", *split, "--out", run, "--epochs", str(epochs), "--batch-size", str(batch_size),
                 "--optimizer", "adamw", "--lr", "1e-3", *views]]
    configs = [a for c in (BASE[row.method], *row.configs) for a in ("--config", c)]
    # train.py writes its own run folder (it refuses one holding files it did not write, such as log.txt).
    train = [py, "train.py", "--pipeline", row.method, *configs, *split, "--out", os.path.join(run, TRAIN),
             f"seed={seed}", f"steps={steps}", f"batch_size={batch_size}", "retrieval=false", *row.overrides, *extra]
    ckpt = ["--checkpoint", os.path.join(run, TRAIN), "--out", run, *views]
    return [train, [py, "eval.py", "retrieval", *ckpt], [py, "eval.py", "linear", *ckpt]]


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


def _finished(out: str, name: str, seed: int) -> Optional[Dict]:
    """The result.json of a finished run of row ``name``, seed ``seed``, in ``out``; None if it has not finished."""
    path = os.path.join(_run_dir(out, name, seed), RESULT)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_one(row: Row, seed: int, args, data: str) -> Dict:
    """Train (unless random) and evaluate one seed of one row; the result, also written to result.json."""
    run = _run_dir(args.out, row.name, seed)
    done = _finished(args.out, row.name, seed)
    if done is not None:
        return done
    if args.cached:
        return {}
    cmds = commands(row, seed, data, run, args.steps, args.batch_size, args.num_clips, args.set,
                    train_videos=_count(data, "train"))
    if args.dry_run:
        for c in cmds:
            print(" ".join(c))
        return {}
    seconds = _run_commands(row, seed, run, cmds)
    if isinstance(seconds, dict):  # a failure
        return seconds
    if row.method == "supervised":  # classification by the trained network: the linear columns
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
              "eval_seconds": round(sum(seconds[-2:]), 1) if row.method != "supervised" else 0.0,
              "final": last_scalars(os.path.join(run, TRAIN)), "commands": [" ".join(c[1:]) for c in cmds]}
    with open(os.path.join(run, RESULT), "w") as f:
        json.dump(result, f, indent=2)
    return result


METRICS = (("retrieval_top1", "retrieval top-1"), ("retrieval_top5", "top-5"), ("linear_top1", "linear top-1"))


def summarise(results: Sequence[Dict]) -> Dict[str, Dict[str, float]]:
    """Per metric: mean, sample standard deviation (0 for one seed), min, max, n."""
    ok = [r for r in results if r and "failed" not in r]
    out: Dict[str, Dict[str, float]] = {}
    for key, _ in METRICS + (("train_seconds", ""),):
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "min": min(values), "max": max(values), "n": len(values)}
    return out


def _cell(stats: Dict[str, float]) -> str:
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}" if stats else "–"


def table(rows: Sequence[Row], summary: Dict[str, Dict], markdown: bool = False) -> str:
    head = ["row", "seeds", *[label for _, label in METRICS], "train s", "what it changes"]
    lines = []
    for r in rows:
        s = summary.get(r.name, {})
        seeds = max((s.get(k, {}).get("n", 0) for k, _ in METRICS), default=0)
        train_s = f"{s['train_seconds']['mean']:.0f}" if s.get("train_seconds") else "–"
        lines.append([r.name, str(seeds), *[_cell(s.get(k, {})) for k, _ in METRICS], train_s, r.what])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head) - 1)]
    fmt = lambda cols: "  ".join(c.ljust(w) for c, w in zip(cols, widths)) + "  " + cols[-1]  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(line) for line in lines])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=["main"],
                   help=f"groups ({', '.join(GROUPS)}, all) or row names, comma- or space-separated (default: main)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps per run (default 1200)")
    p.add_argument("--batch-size", type=int, default=32, help="videos per step (default 32)")
    p.add_argument("--num-clips", type=int, default=5, help="evaluation clips per video (default 5)")
    p.add_argument("--data", help="fidelity dataset folder (default: generated into the cache)")
    p.add_argument("--scenes", type=int, default=16, help="scenes when generating (default 16)")
    p.add_argument("--per-class", type=int, default=4,
                   help="videos per scene and class when generating, three in four of them train (default 4)")
    p.add_argument("--out", default=os.path.join("runs", "fidelity"), help="folder of the runs and the table")
    p.add_argument("--markdown", help="also write the Markdown report here (e.g. benchmarks/FIDELITY.md)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="train.py overrides applied to every trained row (kept apart in --out by the caller)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--cached", action="store_true",
                   help="run nothing: tabulate the runs already in --out (rows without any are shown empty)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.num_clips < 1 or not args.seeds:
        p.error("--steps, --batch-size and --num-clips must be >= 1, and --seeds needs at least one seed")
    return args


def _cached_base_results(args, rows: Sequence[Row], results: Dict[str, List[Dict]]) -> Dict[str, List[Dict]]:
    """The finished runs of the ablations' base rows not selected this time, so that their directions show."""
    out: Dict[str, List[Dict]] = {}
    for base in {r.base for r in rows if r.base and r.base not in results}:
        out[base] = [r for seed in args.seeds if (r := _finished(args.out, base, seed)) is not None]
    return out


def report(args, rows: Sequence[Row], results: Dict[str, List[Dict]], data: str, seconds: float) -> str:
    results = {**_cached_base_results(args, rows, results), **results}
    summary = {name: summarise(rs) for name, rs in results.items()}
    import torch
    lines = [
        "# Fidelity: motion where appearance misleads",
        "",
        f"Data: {_origin(args, data)} ({_describe(data)}). Budget per trained row: {args.steps} steps × batch "
        f"{args.batch_size} = {args.steps * args.batch_size} videos; seeds among {' '.join(map(str, args.seeds))}. "
        f"Evaluation: `eval.py retrieval` and `eval.py linear`, {args.num_clips} clips per video. "
        f"Cells: mean ± sample standard deviation over seeds, in %.",
        "",
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, Python {platform.python_version()}"
        + ("." if args.cached else f"; {seconds / 60:.0f} min for the runs not cached."),
        "",
        ("Tabulated from the runs already made (each row's seeds column says how many) with: "
         if args.cached else "Command: ") + "`python -m benchmarks.fidelity " + " ".join(_argv_of(args)) + "`",
        "",
    ]
    for group in GROUPS:
        group_rows = [r for r in rows if r.group == group]
        if group_rows:
            lines += [f"## {group}", "", table(group_rows, summary, markdown=True), ""]
    ablations = [r for r in rows if r.base]
    if ablations:
        lines += ["## The papers' directions", "",
                  "Each ablation against the row it changes: the difference of means, in brackets the larger "
                  "of the two rows' seed standard deviations. Reproduced: the paper's way by more than that; "
                  "not reproduced: the other way by more than that; no verdict under 3 seeds.", "",
                  directions_table(ablations, summary), ""]
    return "\n".join(lines)


def direction(row: Row, summary: Dict[str, Dict], metric: str = "linear_top1") -> Dict:
    """An ablation row against its base on one metric: the difference of means, the larger of the two seed
    spreads, and the verdict on the paper's direction.

    ``reproduced``: the row moved the paper's way by more than the spread; ``not reproduced``: the other way by
    more than the spread; ``within the spread`` otherwise. Under 3 seeds on either side, or where the paper
    did not test the change, there is no verdict (``n < 3``, ``not in the paper``)."""
    a, b = summary.get(row.name, {}).get(metric), summary.get(row.base, {}).get(metric)
    if not a or not b:
        return {"delta": None, "spread": None, "n": 0, "verdict": "not run"}
    delta, spread, n = a["mean"] - b["mean"], max(a["std"], b["std"]), min(a["n"], b["n"])
    if n < 3:
        verdict = "n < 3"
    elif not row.paper:
        verdict = "not in the paper"
    elif abs(delta) <= spread:
        verdict = "within the spread"
    else:
        verdict = "reproduced" if (delta < 0) == (row.paper == "worse") else "not reproduced"
    return {"delta": delta, "spread": spread, "n": n, "verdict": verdict}


def directions_table(rows: Sequence[Row], summary: Dict[str, Dict]) -> str:
    """Markdown: each ablation row's change against its base, and the verdict on the paper's direction."""
    head = ["row", "against", "the paper: the change makes it", "seeds", "Δ linear top-1 (spread)", "verdict",
            "Δ retrieval top-1 (spread)", "verdict"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if not r.base:
            continue
        cells = [r.name, r.base, r.paper or "not in the paper"]
        lin, ret = direction(r, summary, "linear_top1"), direction(r, summary, "retrieval_top1")
        cells.append(str(lin["n"]))
        for d in (lin, ret):
            cells += ["–" if d["delta"] is None else f"{d['delta']:+.1f} ({d['spread']:.1f})", d["verdict"]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


KEEP = "<!-- Written by hand below this line; rewriting the tables above keeps it. -->"


def write_report(path: str, text: str) -> None:
    """Write the tables to ``path``, keeping whatever follows the ``KEEP`` line of the file there."""
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if KEEP in old:
            kept = old[old.index(KEEP):]
    with open(path, "w") as f:
        f.write(text + "\n" + (("\n" + kept) if kept else ""))


def _origin(args, data: str) -> str:
    if args.data:
        return f"`{args.data}`"
    return (f"`python -m benchmarks.fidelity_data --scenes {args.scenes} --per-class {args.per_class}` "
            "(48×48 VP9, 32 frames, seed 0)")


def _argv_of(args) -> List[str]:
    out = ["--rows", *args.rows, "--seeds", *map(str, args.seeds), "--steps", str(args.steps)]
    if args.batch_size != 32:
        out += ["--batch-size", str(args.batch_size)]
    if args.set:
        out += ["--set", *args.set]
    if args.cached:
        out.append("--cached")
    return out


def _count(data: str, split: str) -> int:
    path = os.path.join(data, f"{split}.txt")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def _describe(data: str) -> str:
    counts = {split: n for split in ("train", "test") if (n := _count(data, split))}
    scenes = os.path.join(data, "scenes.txt")
    n_scenes = None
    if os.path.exists(scenes):
        with open(scenes) as f:
            n_scenes = len({line.split()[-1] for line in f if line.strip()})
    parts = [f"{n} {split} videos" for split, n in counts.items()]
    if n_scenes:
        parts.append(f"{n_scenes} scenes")
    return ", ".join(parts)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    rows = select(args.rows)
    if args.list:
        for r in ROWS.values():
            print(f"{r.name:26s} {r.group:17s} {r.what}")
        return {}
    from benchmarks import fidelity_data
    data = args.data or fidelity_data.generate(scenes=args.scenes, per_class=args.per_class)
    data = os.path.abspath(data)
    if not os.path.exists(os.path.join(data, "train.txt")):
        raise SystemExit(f"fidelity: {data} has no train.txt; give a folder written by benchmarks.fidelity_data")
    args.out = os.path.abspath(args.out)
    start = time.time()
    results: Dict[str, List[Dict]] = {}
    for r in rows:
        results[r.name] = []
        for seed in args.seeds:
            if not args.cached:
                print(f"{r.name} seed {seed} ...", flush=True)
            res = run_one(r, seed, args, data)
            if res or not args.cached:
                results[r.name].append(res)
            if res and "failed" not in res:
                got = (f"retrieval {res['retrieval_top1']:.1f}/{res['retrieval_top5']:.1f}  "
                       if res.get("retrieval_top1") is not None else "")
                print(f"  {got}linear {res['linear_top1']:.1f}  ({res['train_seconds']:.0f} s training)", flush=True)
    if args.dry_run:
        return {}
    summary = {name: summarise(rs) for name, rs in results.items()}
    print()
    print(table(rows, summary))
    record = {"data": data, "steps": args.steps, "batch_size": args.batch_size, "seeds": args.seeds,
              "num_clips": args.num_clips, "set": args.set, "summary": summary, "runs": results}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fidelity.json"), "w") as f:
        json.dump(record, f, indent=2)
    text = report(args, rows, results, data, time.time() - start)
    for path in filter(None, (os.path.join(args.out, "fidelity.md"), args.markdown)):
        write_report(path, text)
    print(f"\nwrote {os.path.join(args.out, 'fidelity.json')} and fidelity.md" +
          (f" and {args.markdown}" if args.markdown else ""))
    return record


if __name__ == "__main__":
    main()
