"""The fidelity table (:mod:`benchmarks.fidelity`): cells over seeds, the papers' directions, the Markdown report.

A cell is the mean ± sample standard deviation of a metric over a row's finished seeds.
An ablation's direction is judged on paired seeds: the runs of the ablation and of the row it
changes share seed and data order, so the per-seed differences carry the effect without the
seed-to-seed spread both rows share; the verdict reads their mean and its 95 % confidence
interval (Student's t).
"""
from __future__ import annotations

import os
import platform
import statistics
from typing import Dict, List, Sequence

from benchmarks.fidelity_rows import GROUPS, ROWS, Row
from benchmarks.fidelity_runs import cell, split_size, stale_line

METRICS = (("retrieval_top1", "retrieval top-1"), ("retrieval_top5", "top-5"), ("linear_top1", "linear top-1"))


def summarise(results: Sequence[Dict]) -> Dict[str, Dict[str, float]]:
    """Per metric: mean, sample standard deviation (0 for one seed), min, max, n, and the value of each seed
    (``by_seed``; a result without its seed is keyed by its place in ``results``)."""
    ok = [(r.get("seed", i), r) for i, r in enumerate(results) if r and "failed" not in r]
    out: Dict[str, Dict[str, float]] = {}
    for key, _ in METRICS + (("train_seconds", ""),):
        by_seed = {seed: r[key] for seed, r in ok if r.get(key) is not None}
        values = list(by_seed.values())
        if values:
            out[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "min": min(values), "max": max(values), "n": len(values), "by_seed": by_seed}
    return out


# Student's t, two-sided 95 %, by degrees of freedom (1..10); beyond, the normal's 1.96 is within 12 %.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def paired(a: Dict[str, float], b: Dict[str, float]) -> Dict:
    """The paired differences ``a − b`` over the seeds both have: n, mean, and the 95 % interval's half-width."""
    seeds = sorted(set(a.get("by_seed", {})) & set(b.get("by_seed", {})), key=str)
    diffs = [a["by_seed"][s] - b["by_seed"][s] for s in seeds]
    n = len(diffs)
    if n < 2:
        return {"n": n, "mean": diffs[0] if diffs else None, "half": None}
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return {"n": n, "mean": statistics.fmean(diffs), "half": t * statistics.stdev(diffs) / n ** 0.5}


def _cell(stats: Dict[str, float]) -> str:
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}" if stats else "–"


def table(rows: Sequence[Row], summary: Dict[str, Dict], markdown: bool = False) -> str:
    """The rows' cells; the Markdown report also says what each row is evidence for."""
    evidence = ["evidence for"] if markdown else []
    head = ["row", "seeds", *[label for _, label in METRICS], "train s", *evidence, "what it changes"]
    lines = []
    for r in rows:
        s = summary.get(r.name, {})
        seeds = max((s.get(k, {}).get("n", 0) for k, _ in METRICS), default=0)
        train_s = f"{s['train_seconds']['mean']:.0f}" if s.get("train_seconds") else "–"
        lines.append([r.name, str(seeds), *[_cell(s.get(k, {})) for k, _ in METRICS], train_s,
                      *([r.evidence_for()] if markdown else []), r.what])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head) - 1)]
    fmt = lambda cols: "  ".join(c.ljust(w) for c, w in zip(cols, widths)) + "  " + cols[-1]  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(line) for line in lines])

def _cached_base_results(args, rows: Sequence[Row], results: Dict[str, List[Dict]],
                         data: str) -> Dict[str, List[Dict]]:
    """The finished runs of the ablations' base rows not selected this time, so that their directions show; those
    made with another setting than the base row's now are left out, and named."""
    out: Dict[str, List[Dict]] = {}
    for base in sorted({r.base for r in rows if r.base and r.base not in results}):
        cells = {seed: cell(ROWS[base], seed, args, data) for seed in args.seeds}
        out[base] = [done for done, why in cells.values() if done is not None and why is None]
        stale = {seed: why for seed, (_, why) in cells.items() if why is not None}
        if stale:
            print(stale_line(base, stale), flush=True)
    return out


def report(args, rows: Sequence[Row], results: Dict[str, List[Dict]], data: str, seconds: float) -> str:
    results = {**_cached_base_results(args, rows, results, data), **results}
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
                  "Each ablation against the row it changes, seed by seed (the same seeds and data order): the "
                  "mean of the paired differences ± the half-width of its 95 % confidence interval (Student's "
                  "t). Reproduced: the whole interval on the paper's side of 0; not reproduced: on the other "
                  "side; no verdict while it crosses 0 (run more seeds) or under 3 paired seeds. A change the "
                  "papers did not test (the sweeps) is higher or lower where the interval excludes 0.", "",
                  directions_table(ablations, summary), ""]
    return "\n".join(lines)


def direction(row: Row, summary: Dict[str, Dict], metric: str = "linear_top1") -> Dict:
    """An ablation row against its base on one metric, on paired seeds: the mean difference, its 95 %
    interval's half-width and the verdict on the paper's direction.

    ``reproduced``: the whole interval lies on the paper's side of 0; ``not reproduced``: on the other side;
    ``interval crosses 0`` otherwise (more seeds may decide it); no verdict under 3 paired seeds (``n < 3``). A
    change the paper did not test (a sweep) is ``higher`` or ``lower`` where the interval excludes 0."""
    a, b = summary.get(row.name, {}).get(metric), summary.get(row.base, {}).get(metric)
    if not a or not b:
        return {"delta": None, "half": None, "n": 0, "verdict": "not run"}
    d = paired(a, b)
    delta, half, n = d["mean"], d["half"], d["n"]
    if n < 3:
        verdict = "n < 3"
    elif abs(delta) <= half:
        verdict = "interval crosses 0"
    elif not row.paper:
        verdict = "lower" if delta < 0 else "higher"
    else:
        verdict = "reproduced" if (delta < 0) == (row.paper == "worse") else "not reproduced"
    return {"delta": delta, "half": half, "n": n, "verdict": verdict}


def _delta(d: Dict) -> str:
    if d["delta"] is None:
        return "–"
    return f"{d['delta']:+.1f}" + (f" ± {d['half']:.1f}" if d["half"] is not None else "")


def directions_table(rows: Sequence[Row], summary: Dict[str, Dict]) -> str:
    """Markdown: each ablation row's change against its base (paired seeds), and the verdict on the paper's
    direction."""
    head = ["row", "against", "the paper: the change makes it", "paired seeds", "Δ linear top-1 (95 % CI)",
            "verdict", "Δ retrieval top-1 (95 % CI)", "verdict"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if not r.base:
            continue
        cells = [r.name, r.base, r.paper or "not in the paper"]
        lin, ret = direction(r, summary, "linear_top1"), direction(r, summary, "retrieval_top1")
        if r.method in ("supervised", "finetune"):  # a classifier's rows: no retrieval to compare
            ret = dict(ret, verdict="no retrieval")
        cells.append(str(lin["n"]))
        for d in (lin, ret):
            cells += [_delta(d), d["verdict"]]
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
    variant = "".join(f" {flag}" for flag in _variant(args))
    return (f"`python -m benchmarks.fidelity_data --scenes {args.scenes} --per-class {args.per_class}{variant}` "
            "(48×48 VP9, 32 frames, seed 0)")


def _variant(args) -> List[str]:
    """The data variant's flags, as the commands take them."""
    flags = (("--one-speed", "one_speed"), ("--unpaired", "unpaired"))
    return [flag for flag, key in flags if getattr(args, key, False)]


def _argv_of(args) -> List[str]:
    out = ["--rows", *args.rows, "--seeds", *map(str, args.seeds), "--steps", str(args.steps), *_variant(args)]
    if args.batch_size != 32:
        out += ["--batch-size", str(args.batch_size)]
    if args.set:
        out += ["--set", *args.set]
    if args.cached:
        out.append("--cached")
    return out

def _describe(data: str) -> str:
    counts = {split: n for split in ("train", "test") if (n := split_size(data, split))}
    scenes = os.path.join(data, "scenes.txt")
    n_scenes = None
    if os.path.exists(scenes):
        with open(scenes) as f:
            n_scenes = len({line.split()[-1] for line in f if line.strip()})
    parts = [f"{n} {split} videos" for split, n in counts.items()]
    if n_scenes:
        parts.append(f"{n_scenes} scenes")
    return ", ".join(parts)
